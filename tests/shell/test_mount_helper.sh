#!/usr/bin/env bash
# mount(8) integration through the mount helper (mount.fuse.minigcs):
#   - `mount -t fuse.minigcs DIR MNT`: /proc/mounts shows type fuse.minigcs
#     and the folder as source; write through the mount, read over the API;
#     `umount` stops the daemon cleanly (its pid gone, "stopped cleanly"),
#     the file is there after a remount; `fusermount3 -u` does the same;
#   - two stores mounted at once, told apart by `findmnt -S SOURCE`;
#   - the line of contrib/fstab.example in a scratch fstab: `mount -T FILE -a`
#     mounts it, a second run leaves it alone;
#   - `-o ro`: EROFS from touch and from writing a file, reads work, API PUT
#     and DELETE answer 403 while GET works;
#   - a bad config, an unknown option, and a daemon that fails at start (its
#     API port taken): non-zero exit, the error on stderr, no mount and no
#     daemon left.
# mount(8) finds helpers only in /sbin: the test links them there and puts
# back what was there before (or removes them) at exit.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_fuse

[ "$(id -u)" = 0 ] || {
    [ "${MINIGCS_REQUIRE_FUSE:-0}" = 1 ] && fail "needs root (mount(8) and /sbin)"
    skip "needs root (mount(8) and /sbin)"
}
for cmd in mount umount findmnt fusermount3; do
    command -v "$cmd" >/dev/null || fail "$cmd is missing"
done

SBIN=/sbin
HELPERS=(mount.fuse.minigcs mount.minigcs)
declare -A HELPER_BEFORE=()
HELPERS_INSTALLED=0
STORES=("$WORK")      # every store folder whose daemon the cleanup stops

stop_store_daemons() {
    local s pid n
    for s in "${STORES[@]}"; do
        pid=$(cat "$s/metadata.db.lock" 2>/dev/null) || continue
        # Only a daemon of this test: its command line names $WORK.
        { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF "$WORK/" || continue
        kill -TERM "$pid" 2>/dev/null || true
        n=0
        while pid_alive "$pid" && ((n < 100)); do sleep 0.1; n=$((n + 1)); done
        kill -KILL "$pid" 2>/dev/null || true
    done
}
restore_helpers() {
    local h
    [ "$HELPERS_INSTALLED" = 1 ] || return 0
    for h in "${HELPERS[@]}"; do
        if [ -n "${HELPER_BEFORE[$h]:-}" ]; then
            ln -sfn "${HELPER_BEFORE[$h]}" "$SBIN/$h"
        else
            rm -f "$SBIN/$h"
        fi
    done
}
CLEANUP_FIRST=stop_store_daemons
CLEANUP_LAST=restore_helpers

for h in "${HELPERS[@]}"; do
    if [ -e "$SBIN/$h" ] && [ ! -L "$SBIN/$h" ]; then
        fail "$SBIN/$h exists and is not a symbolic link; not replacing it"
    fi
    if [ -L "$SBIN/$h" ]; then HELPER_BEFORE[$h]=$(readlink "$SBIN/$h"); fi
done
HELPERS_INSTALLED=1
"$MINIGCS_BIN" install-helper --dir "$SBIN" >/dev/null
for h in "${HELPERS[@]}"; do
    assert_eq "$(readlink -f "$MINIGCS_BIN")" "$(readlink -f "$SBIN/$h")" "$SBIN/$h"
done

REAL_WORK=$(realpath "$WORK")
HELPER_LOG=$WORK/minigcs-mount.log

# A second store in $WORK/b with its own nodes, socket and API port.
B=$WORK/b
MNT_B=$WORK/mnt-b
PORT_B=$(pick_port)
mkdir -p "$B"
(CFG_PORT=$PORT_B config_yaml && printf 'mount:\n  allow_other: true\n') >"$B/config.yaml"
STORES+=("$B")
EXTRA_MNTS+=("$MNT_B" "$WORK/mnt-bad")

mounted_at() { awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/mounts; }
daemon_of() { cat "$1/metadata.db.lock"; }   # daemon_of STORE_DIR: its pid
# wait_gone PID: the daemon exits within 20 s of its unmount
wait_gone() { wait_until 20 bash -c "! { s=\$(cat /proc/$1/stat 2>/dev/null) && s=\${s##*) } && [ \"\${s%% *}\" != Z ]; }" ||
    fail "daemon $1 still running 20 s after its unmount"; }
stopped_cleanly_count() { grep -c "stopped cleanly" "$1" || true; }

# ---- 1. mount -t fuse.minigcs DIR MNT, write, read, umount ----------------
say "mount -t fuse.minigcs $WORK $MNT"
mount -t fuse.minigcs "$WORK" "$MNT" || fail "mount exited $?"
assert_eq "fuse.minigcs $REAL_WORK" "$(findmnt -n -o FSTYPE,SOURCE --mountpoint "$MNT")" "type and source in /proc/mounts"
PID=$(daemon_of "$WORK")
pid_alive "$PID" || fail "no daemon behind the mount"
mkrand "$WORK/one.bin" 3000000
cp "$WORK/one.bin" "$MNT/one.bin"
api /objects/one.bin -o "$WORK/one.api"
assert_eq "$(sha_of "$WORK/one.bin")" "$(sha_of "$WORK/one.api")" "file written through the helper's mount, read over the API"
ctl health >/dev/null || fail "ctl health not healthy"
clean_before=$(stopped_cleanly_count "$HELPER_LOG")
umount "$MNT" || fail "umount exited $?"
wait_gone "$PID"
mounted_at "$MNT" && fail "$MNT still mounted after umount"
assert_eq "$((clean_before + 1))" "$(stopped_cleanly_count "$HELPER_LOG")" "'stopped cleanly' lines in $HELPER_LOG after umount"
if grep -E '^\[[^]]* (WARN|ERROR) ' "$HELPER_LOG"; then fail "warnings or errors in the daemon's log"; fi

say "mount the config file; the file is still there; fusermount3 -u stops the daemon too"
mount -t fuse.minigcs "$CONFIG" "$MNT" || fail "mount exited $?"
assert_eq "$REAL_WORK/config.yaml" "$(findmnt -n -o SOURCE --mountpoint "$MNT")" "source when mounting the config file"
assert_eq "$(sha_of "$WORK/one.bin")" "$(sha_of "$MNT/one.bin")" "file after a remount"
PID=$(daemon_of "$WORK")
fusermount3 -u "$MNT" || fail "fusermount3 -u exited $?"
wait_gone "$PID"
mounted_at "$MNT" && fail "$MNT still mounted after fusermount3 -u"

say "minigcs mount in the foreground, then umount: exit 0, API closed"
start_daemon mount
assert_eq "fuse.minigcs $REAL_WORK/config.yaml" "$(findmnt -n -o FSTYPE,SOURCE --mountpoint "$MNT")" "type and source of a foreground mount"
FG_PID=$DAEMON_PID
umount "$MNT" || fail "umount exited $?"
rc=0
wait "$FG_PID" || rc=$?
DAEMON_PID=
rm -f "$WORK/daemon.pid"
assert_eq 0 "$rc" "exit code of minigcs mount after umount"
mounted_at "$MNT" && fail "$MNT still mounted"
api_answers && fail "the HTTP API still answers after the daemon exited"
[ -e "$SOCK" ] && fail "the control socket is left behind"

say "serve --read-only: API changes refused, reads work"
DAEMON_ARGS=(--read-only)
start_daemon serve
assert_eq 403 "$(api_code "$WORK/put.json" /objects/x.txt -T "$WORK/one.bin")" "PUT to serve --read-only"
assert_eq 200 "$(api_code "$WORK/get.bin" /objects/one.bin)" "GET from serve --read-only"
stop_daemon
DAEMON_ARGS=()

# ---- 2. two stores at once, told apart by their source ---------------------
say "two stores mounted at once"
mount -t fuse.minigcs "$CONFIG" "$MNT" || fail "mount of store A exited $?"
mount -t minigcs "$B" "$MNT_B" || fail "mount -t minigcs of store B exited $?"
assert_eq "$MNT" "$(findmnt -n -o TARGET -t fuse.minigcs -S "$CONFIG")" "findmnt -S store A's config"
assert_eq "$MNT_B" "$(findmnt -n -o TARGET -t fuse.minigcs -S "$B")" "findmnt -S store B's folder"
assert_eq 2 "$(findmnt -n -t fuse.minigcs -o TARGET | grep -cF "$REAL_WORK/")" "fuse.minigcs mounts of this test"
echo "in b" >"$MNT_B/only-b.txt"
[ -e "$MNT/only-b.txt" ] && fail "store B's file shows in store A"
assert_eq "in b" "$(curl -sS "http://127.0.0.1:$PORT_B/objects/only-b.txt")" "store B's API"
PID_A=$(daemon_of "$WORK") PID_B=$(daemon_of "$B")
umount "$MNT" "$MNT_B" || fail "umount of both exited $?"
wait_gone "$PID_A"
wait_gone "$PID_B"

# ---- 3. the fstab example line, in a scratch fstab -------------------------
say "contrib/fstab.example's line in a scratch fstab: mount -T FILE -a"
example=$(grep -E '^[^#[:space:]]' "$REPO_ROOT/contrib/fstab.example")
[ "$(wc -l <<<"$example")" = 1 ] || fail "contrib/fstab.example should hold one fstab line"
read -r _src _mnt fstype options dump pass <<<"$example"
assert_eq fuse.minigcs "$fstype" "type in contrib/fstab.example"
printf '%s %s %s %s,threads=2 %s %s\n' "$B" "$MNT_B" "$fstype" "$options" "$dump" "$pass" >"$WORK/fstab"
mount -T "$WORK/fstab" -a || fail "mount -T fstab -a exited $?"
mounted_at "$MNT_B" || fail "mount -a did not mount $MNT_B"
assert_eq "$MNT_B" "$(findmnt -n -o TARGET -S "$B")" "the fstab mount's source"
mount -T "$WORK/fstab" -a || fail "a second mount -a exited $?"
assert_eq 1 "$(awk -v m="$MNT_B" '$2 == m' /proc/mounts | wc -l)" "mounts at $MNT_B after a second mount -a"
assert_eq "in b" "$(cat "$MNT_B/only-b.txt")" "store B through the fstab mount"
PID_B=$(daemon_of "$B")
umount "$MNT_B"
wait_gone "$PID_B"

# ---- 4. -o ro ----------------------------------------------------------------
say "-o ro: EROFS through the mount, 403 for API changes, reads work"
mount -t fuse.minigcs -o ro,nosuid "$WORK" "$MNT" || fail "mount -o ro exited $?"
findmnt -n -o OPTIONS --mountpoint "$MNT" | grep -qE '(^|,)ro(,|$)' || fail "the mount is not read-only in /proc/mounts"
out=$(touch "$MNT/new.txt" 2>&1) && fail "touch of a new file worked on a read-only mount"
grep -q "Read-only file system" <<<"$out" || fail "touch: expected EROFS, got: $out"
out=$( (echo more >>"$MNT/one.bin") 2>&1) && fail "appending worked on a read-only mount"
grep -q "Read-only file system" <<<"$out" || fail "append: expected EROFS, got: $out"
assert_eq "$(sha_of "$WORK/one.bin")" "$(sha_of "$MNT/one.bin")" "read on a read-only mount"
code=$(api_code "$WORK/put.json" /objects/new.txt -T "$WORK/one.bin")
assert_eq 403 "$code" "API PUT on a read-only daemon"
jq -e '.detail | test("read-only")' "$WORK/put.json" >/dev/null || fail "PUT detail: $(cat "$WORK/put.json")"
assert_eq 403 "$(api_code "$WORK/del.json" /objects/one.bin -X DELETE)" "API DELETE on a read-only daemon"
assert_eq 200 "$(api_code "$WORK/get.bin" /objects/one.bin)" "API GET on a read-only daemon"
assert_eq "$(sha_of "$WORK/one.bin")" "$(sha_of "$WORK/get.bin")" "API GET body on a read-only daemon"
assert_eq 404 "$(api_code /dev/null /objects/new.txt)" "the refused PUT stored nothing"
PID=$(daemon_of "$WORK")
umount "$MNT"
wait_gone "$PID"

# ---- 5. failures: clear error, no mount, no daemon ----------------------------
no_daemon_for() { # no_daemon_for MOUNTPOINT: no process names it on its command line
    local p
    for p in /proc/[0-9]*; do
        if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF "minigcs mount $1 "; then
            fail "a daemon for $1 is still running (pid ${p#/proc/})"
        fi
    done
}
say "a bad config: non-zero exit, the config error on stderr, nothing left"
mkdir -p "$WORK/bad"
sed 's/^  k: .*/  k: 0/' "$CONFIG" >"$WORK/bad/config.yaml"
rc=0
mount -t fuse.minigcs "$WORK/bad" "$WORK/mnt-bad" 2>"$WORK/bad.err" || rc=$?
[ "$rc" -ne 0 ] || fail "mount of a bad config exited 0"
grep -q "erasure_coding.k must be ≥ 1, got 0" "$WORK/bad.err" || fail "the config error is not on stderr: $(cat "$WORK/bad.err")"
mounted_at "$WORK/mnt-bad" && fail "a bad config left a mount"
no_daemon_for "$WORK/mnt-bad"

say "an unknown option: non-zero exit naming it"
rc=0
mount -t fuse.minigcs -o rw,frobnicate "$WORK" "$MNT" 2>"$WORK/opt.err" || rc=$?
[ "$rc" -ne 0 ] || fail "an unknown option was accepted"
grep -q "unknown mount option frobnicate" "$WORK/opt.err" || fail "stderr: $(cat "$WORK/opt.err")"
mounted_at "$MNT" && fail "an unknown option left a mount"

say "the daemon fails at start (API port taken): its error on stderr, nothing left"
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(60)' "$PORT_B" &
BLOCKER=$!
track_bg "$BLOCKER"
wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT_B" 2>/dev/null || fail "the port blocker did not start"
rc=0
mount -t fuse.minigcs "$B" "$MNT_B" 2>"$WORK/port.err" || rc=$?
[ "$rc" -ne 0 ] || fail "mount exited 0 although the daemon could not start"
grep -q "cannot listen on 127.0.0.1:$PORT_B" "$WORK/port.err" || fail "the daemon's error is not on stderr: $(cat "$WORK/port.err")"
mounted_at "$MNT_B" && fail "a failed start left a mount"
no_daemon_for "$MNT_B"
kill "$BLOCKER" && wait "$BLOCKER" 2>/dev/null || true

say "ok"
