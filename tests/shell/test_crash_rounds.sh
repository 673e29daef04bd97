#!/usr/bin/env bash
# Crash rounds (default 20, MINIGCS_CRASH_ROUNDS to change): start the daemon,
# write and close a file, start a large dd into the mount in the background
# (every 5th round: a recovery instead), kill -9 the daemon after a random
# 0-1.5 s, restart it on the stale mount. Every file closed in earlier rounds
# matches its sha256, the interrupted file is absent, empty or complete (never
# half-written), and scrub finds no corrupt shard.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_fuse

ROUNDS=${MINIGCS_CRASH_ROUNDS:-20}
C=$CFG_CHUNK
declare -A SHA
mkdir -p "$WORK/src"
mkrand "$WORK/src/big" $((96 * C))
big_sha=$(sha_of "$WORK/src/big")
RANDOM=4242      # reproducible delays

verify_round() {
    local f s
    for f in "${!SHA[@]}"; do
        [ -f "$MNT/$f" ] || fail "round $1: closed file $f missing"
        assert_eq "${SHA[$f]}" "$(sha_of "$MNT/$f")" "round $1: sha256 of closed file $f"
    done
    for f in "$MNT"/inflight_*; do
        [ -e "$f" ] || continue
        s=$(stat -c %s "$f")
        if [ "$s" != 0 ] && [ "$(sha_of "$f")" != "$big_sha" ]; then
            fail "round $1: $(basename "$f") is half-written ($s bytes)"
        fi
        rm -f "$f"
    done
    local j
    j=$(ctlj scrub)
    jq -e '.corrupt == 0' <<<"$j" >/dev/null || fail "round $1: scrub found corrupt shards: $j"
}

start=$SECONDS
start_daemon mount
for r in $(seq 1 "$ROUNDS"); do
    size=$(( (RANDOM * 97) % (3 * C) ))
    mkrand "$WORK/src/closed_$r" "$size"
    cp "$WORK/src/closed_$r" "$MNT/closed_$r"
    SHA[closed_$r]=$(sha_of "$WORK/src/closed_$r")

    delay_ms=$((RANDOM % 1501))
    bg=
    if (( r % 5 == 0 )); then
        what="recovery of node-3"
        rm -rf "$(node_dir 3)"
        ctl recover node-3 >"$WORK/recover.log" 2>&1 &
        bg=$!
    else
        what="dd of $((96 * C)) bytes"
        dd if="$WORK/src/big" of="$MNT/inflight_$r" bs=1M status=none 2>/dev/null &
        bg=$!
    fi
    track_bg "$bg"
    sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
    kill9_daemon
    wait "$bg" 2>/dev/null || true
    echo "round $r: killed during $what after ${delay_ms} ms"

    start_daemon mount
    [ "$(mount_count)" = 1 ] || fail "round $r: $(mount_count) mounts at $MNT after restart"
    if (( r % 5 == 0 )); then
        ctlj recover node-3 >/dev/null || fail "round $r: recovery after the crash failed"
        wait_until 30 sh -c "\"$MINIGCS_BIN\" ctl -c \"$CONFIG\" --json health | jq -e '.status == \"healthy\" and .chunks_missing_shards == 0' >/dev/null" \
            || fail "round $r: not healthy after resuming the recovery: $(ctlj health)"
    fi
    verify_round "$r"
done

say "final: clean restart, full verification"
stop_daemon
start_daemon mount
verify_round final
j=$(ctlj scrub)
jq -e '.corrupt == 0 and .missing == 0' <<<"$j" >/dev/null || fail "final scrub: $j"
stop_daemon
echo "$ROUNDS crash rounds in $((SECONDS - start))s"
echo "PASS: $TEST_NAME"
