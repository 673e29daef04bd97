#!/usr/bin/env bash
# A hung node folder costs seconds, never the store. node-2's folder lives
# on a helper minigcs mount (its own config and data in $WORK/helper) that
# is frozen with SIGSTOP, as a hung NFS/FUSE mount or a dying disk would be.
# While it is frozen, every operation finishes within a few seconds (each is
# run under `timeout 20`, so a hang fails the test instead of stalling it):
#  - reads of existing files (mount and API) return the right bytes,
#  - stat, ls, df, ctl health (node-2 failed, "timed out ..."), ctl stats,
#  - cp of a new file (read back, sha256 checked) and an API PUT;
# after SIGCONT node-2 is healthy again and every shard of every file is
# repaired (ctl info). Last, the helper is frozen again and a write is the
# first call to meet it (it waits out the write deadline, 2 x 2 s at most);
# with calls stuck in the frozen mount the daemon still exits 0 promptly on
# SIGTERM.
# Prints how long each operation took while the node was frozen.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# Shard files are damaged or counted directly: every shard in its own file.
CFG_SEGMENT_MAX_SHARD=0
write_config
need_fuse
command -v jq >/dev/null || skip "jq is missing"

HELPER=$WORK/helper
HMNT=$HELPER/mnt
HELPER_PID=
HELPER_STOPPED=0

# ---- the helper store whose mount holds node-2's folder -------------------

helper_mounted() { awk -v m="$HMNT" '$2 == m { f = 1 } END { exit !f }' /proc/mounts; }

start_helper() {
    mkdir -p "$HELPER"
    cat >"$HELPER/config.yaml" <<EOF
# one node on a local folder, no API: only its mount matters
nodes: [{id: "helper-1", region: "local", storage_path: "./disk"}]
erasure_coding: {k: 1, m: 0, chunk_size: 1048576}
api: {enabled: false}
metrics: {enabled: false}
recovery: {health_interval_secs: 60}
metadata: {path: "./metadata.db"}
control: {socket: "./ctl.sock"}
mount: {allow_other: $CFG_ALLOW_OTHER}
EOF
    (cd "$HELPER" && exec "$MINIGCS_BIN" mount "$HMNT" -c "$HELPER/config.yaml") >>"$HELPER/daemon.log" 2>&1 &
    HELPER_PID=$!
    wait_until 30 helper_ready || { tail -n 40 "$HELPER/daemon.log" >&2; fail "helper mount not ready"; }
}
helper_ready() { pid_alive "$HELPER_PID" && helper_mounted && timeout 5 stat "$HMNT" >/dev/null 2>&1; }

freeze_helper() { kill -STOP "$HELPER_PID"; HELPER_STOPPED=1; }
thaw_helper() {
    if [ "$HELPER_STOPPED" = 1 ] && [ -n "$HELPER_PID" ]; then kill -CONT "$HELPER_PID" 2>/dev/null || true; fi
    HELPER_STOPPED=0
}

# Cleanup: resume the helper before anything else, and stop it (and its
# mount) only once the main daemon is gone and its mount unmounted.
stop_helper() {
    local n=0
    thaw_helper
    if [ -n "$HELPER_PID" ]; then
        kill -TERM "$HELPER_PID" 2>/dev/null || true
        while pid_alive "$HELPER_PID" && (( n < 100 )); do sleep 0.1; n=$((n + 1)); done
        kill -KILL "$HELPER_PID" 2>/dev/null || true
        wait "$HELPER_PID" 2>/dev/null || true
        HELPER_PID=
    fi
    n=0
    while helper_mounted && (( n < 10 )); do
        fusermount3 -u -z "$HMNT" 2>/dev/null || umount -l "$HMNT" 2>/dev/null || true
        n=$((n + 1))
    done
}
CLEANUP_FIRST=thaw_helper
CLEANUP_LAST=stop_helper

# ---- timing -----------------------------------------------------------------

FIGURES=()
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# timed NAME CMD...: run CMD (a command under `timeout 20`, or a function
# below, which puts `timeout 20` around what it runs), record how long it
# took, fail if it failed or hung.
timed() {
    local name=$1 start rc=0 took
    shift
    start=$(now_ms)
    if declare -F "$1" >/dev/null; then "$@" || rc=$?; else timeout 20 "$@" || rc=$?; fi
    took=$(( $(now_ms) - start ))
    FIGURES+=("$(printf '%-32s %6d ms' "$name" "$took")")
    if [ "$rc" = 124 ]; then fail "$name hung (still running after 20 s with node-2 frozen)"; fi
    if [ "$rc" != 0 ]; then fail "$name failed (exit $rc) with node-2 frozen"; fi
}
read_mount() { # read_mount KEY: right bytes through the mount
    local got
    got=$(timeout 20 sha256sum "$MNT/$1") || return $?
    [ "${got%% *}" = "${SHA[$1]}" ] || { echo "wrong bytes in $1" >&2; return 1; }
}
read_api() { # read_api KEY: right bytes through the API
    api "/objects/$1" --max-time 20 --fail -o "$WORK/got.$1" || return 124
    [ "$(sha_of "$WORK/got.$1")" = "${SHA[$1]}" ] || { echo "wrong bytes in $1 (API)" >&2; return 1; }
}
put_api() { api "/objects/$1" --max-time 20 -X PUT --data-binary "@$WORK/src/$1" --fail -o /dev/null || return 124; }
ctl_to() { # ctl_to FILE CMD...: ctl --json output to FILE; a degraded health (exit 1) is an answer
    local out=$1 rc=0
    shift
    timeout 20 "$MINIGCS_BIN" ctl -c "$CONFIG" --json "$@" >"$out" || rc=$?
    [ "$rc" != 124 ] || return 124
    jq -e . "$out" >/dev/null
}

# ---- the store -----------------------------------------------------------

start_helper
sed -i "s|storage_path: \"./node-2\"|storage_path: \"$HMNT/node-2\"|" "$CONFIG"
grep -q "$HMNT/node-2" "$CONFIG" || fail "could not move node-2 onto the helper mount"
start_daemon mount

C=$CFG_CHUNK
declare -A SHA
mkdir -p "$WORK/src"
for f in big:$((C * 7 / 2)) small:1000 edge:$((C + 1)); do
    mkrand "$WORK/src/${f%%:*}" "${f#*:}"
    cp "$WORK/src/${f%%:*}" "$MNT/${f%%:*}"
    SHA[${f%%:*}]=$(sha_of "$WORK/src/${f%%:*}")
done
mkrand "$WORK/src/obj" $((2 * C + 5))
api "/objects/obj" -X PUT --data-binary "@$WORK/src/obj" --fail -o /dev/null || fail "API PUT failed"
SHA[obj]=$(sha_of "$WORK/src/obj")
ls "$HMNT/node-2/shards/"*/*.shard >/dev/null 2>&1 || fail "node-2 holds no shards on the helper mount"

health() { timeout 20 "$MINIGCS_BIN" ctl -c "$CONFIG" --json health 2>/dev/null || true; }
fully_healthy() { health | jq -e '.status == "healthy" and .chunks_missing_shards == 0 and .repair_queue == 0' >/dev/null; }
wait_until 30 fully_healthy || fail "not healthy before the freeze: $(health)"

say "node-2's mount frozen (SIGSTOP of the helper daemon)"
drop_caches
freeze_helper

timed "read big (mount, 3.5 chunks)" read_mount big
timed "read edge (mount)" read_mount edge
timed "read small (mount)" read_mount small
timed "read obj (API GET)" read_api obj
timed "stat" stat "$MNT/big"
timed "ls -l" ls -l "$MNT"
timed "df" df "$MNT"
timed "ctl health" ctl_to "$WORK/health.json" health
jq -e '.status != "healthy" and any(.failed_nodes[]; . == "node-2")' "$WORK/health.json" >/dev/null ||
    fail "node-2 not reported failed: $(cat "$WORK/health.json")"
jq -e '.nodes[] | select(.id == "node-2") | .reason | test("timed out")' "$WORK/health.json" >/dev/null ||
    fail "node-2's reason does not say it timed out: $(cat "$WORK/health.json")"
echo "node-2: $(jq -c '.nodes[] | select(.id == "node-2") | {state, reason}' "$WORK/health.json")"
timed "ctl stats" ctl_to "$WORK/stats.json" stats
mkrand "$WORK/src/new" $((C * 5 / 2))
SHA[new]=$(sha_of "$WORK/src/new")
timed "cp new file (2.5 chunks)" cp "$WORK/src/new" "$MNT/new"
drop_caches
timed "read new back (mount)" read_mount new
mkrand "$WORK/src/put" $((C + 3))
SHA[put]=$(sha_of "$WORK/src/put")
timed "API PUT" put_api put
timed "read put back (API GET)" read_api put
timed "ctl info new" ctl_to "$WORK/info.json" info new
jq -e '.healthy == false' "$WORK/info.json" >/dev/null ||
    fail "a file written while node-2 is frozen claims full redundancy: $(cat "$WORK/info.json")"

late=$(api /metrics --max-time 20 | awk '/^minigcs_node_io_(timeouts|refused)_total\{node="node-2"\}/ { n += $2 } END { print n + 0 }')
(( late > 0 )) || fail "GET /metrics counts no timed-out or refused operation on node-2"
echo "GET /metrics: $late operations on node-2 timed out or refused"
echo "--- with node-2 frozen (recovery.node_timeout_ms: 2000):"
printf '    %s\n' "${FIGURES[@]}"

say "node-2's mount resumed (SIGCONT): healthy again, every shard repaired"
thaw_helper
resumed=$SECONDS
wait_until 60 fully_healthy || fail "not healthy after node-2 came back: $(health)"
echo "healthy and repaired $((SECONDS - resumed)) s after SIGCONT"
for k in "${!SHA[@]}"; do
    ctlj info "$k" | jq -e '.healthy == true' >/dev/null || fail "$k not fully repaired: $(ctlj info "$k")"
    api "/objects/$k" --fail -o "$WORK/got" || fail "GET $k failed after the repair"
    assert_eq "${SHA[$k]}" "$(sha_of "$WORK/got")" "sha256 of $k after the repair"
done
drop_caches
for k in "${!SHA[@]}"; do assert_eq "${SHA[$k]}" "$(sha_of "$MNT/$k")" "sha256 of $k via the mount"; done
echo "all ${#SHA[@]} files read back identical with every shard healthy"

say "frozen again with calls stuck in it: SIGTERM still stops the daemon"
drop_caches
freeze_helper
mkrand "$WORK/src/first" $((C * 3 / 2))
SHA[first]=$(sha_of "$WORK/src/first")
FIGURES=()
timed "cp, the first call after freezing" cp "$WORK/src/first" "$MNT/first"
timed "read it back" read_mount first
timed "read big" read_mount big
echo "--- frozen again, a write first:"
printf '    %s\n' "${FIGURES[@]}"
node2_failed() { health | jq -e 'any(.failed_nodes[]; . == "node-2")' >/dev/null; }
wait_until 20 node2_failed || fail "node-2 not reported failed the second time: $(health)"
# SIGTERM with node-2 frozen: the daemon commits and unmounts without
# waiting for node-2. The process itself may only finish exiting once node-2
# answers (a thread stuck writing a shard there holds a file open, and the
# kernel flushes it, uninterruptibly, when the process exits).
start=$(now_ms)
kill -TERM "$DAEMON_PID"
wait_until 20 eval '! is_mounted' || fail "SIGTERM with node-2 frozen: still mounted after 20 s"
echo "unmounted $(( $(now_ms) - start )) ms after SIGTERM with node-2 frozen"
thaw_helper
MINIGCS_STOP_TIMEOUT=20 stop_daemon
echo "daemon exited 0 $(( $(now_ms) - start )) ms after SIGTERM"
stop_helper
helper_mounted && fail "helper mount still mounted"
echo "PASS: $TEST_NAME"
