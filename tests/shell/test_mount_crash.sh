#!/usr/bin/env bash
# kill -9 of the mounted daemon, then mount again: the daemon itself clears the
# stale mount ("Transport endpoint is not connected") and every file that was
# closed (or fsynced) before the kill is intact.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_fuse

C=$CFG_CHUNK
declare -A SHA
mkdir -p "$WORK/src"

write_closed() { # write_closed NAME SIZE: cp a random file into the mount and record its sha
    mkdir -p "$(dirname "$WORK/src/$1")" "$(dirname "$MNT/$1")"
    mkrand "$WORK/src/$1" "$2"
    cp "$WORK/src/$1" "$MNT/$1"
    SHA[$1]=$(sha_of "$WORK/src/$1")
}
verify_all() {
    local f
    for f in "${!SHA[@]}"; do
        [ -f "$MNT/$f" ] || fail "$f missing ($1)"
        assert_eq "${SHA[$f]}" "$(sha_of "$MNT/$f")" "sha256 of $f ($1)"
    done
    echo "verified ${#SHA[@]} files ($1)"
}

start_daemon mount

say "round 1: closed files, then kill -9"
write_closed empty 0
write_closed one 1
write_closed chunk $C
write_closed dir/multi $((C * 5 / 2 + 3))
write_closed dir/sub/big $((6 * C))
mkrand "$WORK/src/overwritten" $((2 * C))
cp "$WORK/src/overwritten" "$MNT/overwritten"
write_closed overwritten $((C + 5))     # closed second version replaces the first
kill9_daemon

# Restart at once, as a supervisor would. (Right after the kill, stat of the
# mount point may still succeed from the kernel's attribute cache even though
# the connection is dead; the daemon must still treat the mount as stale.)
if stat "$MNT" >/dev/null 2>&1; then
    echo "note: stat of the mount point still succeeds right after kill -9 (kernel attribute cache)"
else
    echo "mount point is stale: $(stat "$MNT" 2>&1 | head -n 1)"
fi

say "restart on the stale mount point (the daemon must clear it)"
start_daemon mount
assert_eq 1 "$(mount_count)" "number of mounts at $MNT after restart"
verify_all "after first kill -9"

say "round 2: fsynced-but-open file, in-flight write, kill -9"
mkrand "$WORK/src/fsynced" $((3 * C + 100))
python3 - "$MNT/fsynced" "$WORK/src/fsynced" "$WORK/fsynced.ready" <<'PY' &
import os, sys, time
dst, src, ready = sys.argv[1:]
fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, open(src, "rb").read())
os.fsync(fd)
open(ready, "w").close()
time.sleep(3600)   # keep the file open; the daemon gets killed meanwhile
PY
holder=$!
track_bg $holder
wait_until 60 test -e "$WORK/fsynced.ready" || fail "fsync of the open file did not return"
SHA[fsynced]=$(sha_of "$WORK/src/fsynced")
write_closed after_fsync $((C / 2))
mkrand "$WORK/src/inflight" $((16 * C))
dd if="$WORK/src/inflight" of="$MNT/inflight" bs=65536 status=none 2>/dev/null &
dd_pid=$!
track_bg $dd_pid
sleep 0.3
kill9_daemon
kill -KILL $holder 2>/dev/null || true
wait $dd_pid 2>/dev/null || true
wait $holder 2>/dev/null || true

start_daemon mount
assert_eq 1 "$(mount_count)" "number of mounts at $MNT after second restart"
verify_all "after second kill -9"
if [ -e "$MNT/inflight" ]; then
    size=$(stat -c %s "$MNT/inflight")
    if [ "$size" != 0 ] && [ "$(sha_of "$MNT/inflight")" != "$(sha_of "$WORK/src/inflight")" ]; then
        fail "file being written at the kill is visible half-written ($size bytes)"
    fi
    echo "in-flight file visible with $size bytes (empty or complete: ok)"
else
    echo "in-flight file not visible (ok)"
fi

say "scrub is clean, clean shutdown works"
out=$(ctlj scrub)
assert_eq 0 "$(jq -r .corrupt <<<"$out")" "scrub corrupt count"
stop_daemon
start_daemon mount
verify_all "after clean restart"
stop_daemon
echo "PASS: $TEST_NAME"
