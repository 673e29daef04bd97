#!/usr/bin/env bash
# Invariant 7: SIGTERM flushes open files, unmounts and exits 0. A writer keeps
# a file open (never closes it) while the daemon is stopped; after a restart
# the file holds every byte written before the signal. SIGINT too, with a
# file open and a shell's working directory in the mount (it cannot be
# unmounted, so it is detached): exit 0, mount gone, no ERROR or WARN in the
# log; and with nothing open.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_fuse

C=$CFG_CHUNK
start_daemon mount
mkrand "$WORK/payload" $((C * 5 / 2 + 123))
want=$(sha_of "$WORK/payload")

python3 - "$WORK/payload" "$MNT/held-open.bin" "$WORK/ready" <<'PY' &
import os, sys, time
data = open(sys.argv[1], "rb").read()
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, data)           # no close, no fsync: the daemon must flush it
open(sys.argv[3], "w").close()
time.sleep(300)
PY
WRITER=$!
track_bg "$WRITER"
wait_until 30 test -e "$WORK/ready" || fail "the writer did not get its bytes in"

say "SIGTERM with the file still open"
stop_daemon                  # requires exit code 0 and the mount gone
kill "$WRITER" 2>/dev/null || true
wait "$WRITER" 2>/dev/null || true

start_daemon mount
[ -f "$MNT/held-open.bin" ] || fail "the open file is missing after restart"
assert_eq "$want" "$(sha_of "$MNT/held-open.bin")" "content of the file open at shutdown"

# quiet_since LINE: no ERROR or WARN in the daemon log after line LINE.
quiet_since() {
    local noisy
    noisy=$(tail -n +"$(($1 + 1))" "$DAEMON_LOG" | grep -E '^\[[^]]* (ERROR|WARN) ' || true)
    [ -z "$noisy" ] || fail "the shutdown logged warnings or errors: $noisy"
}

say "SIGINT with a file open and a shell working in the mount: exit 0, mount gone, nothing logged as a problem"
mkrand "$WORK/payload2" $((C + 77))
want2=$(sha_of "$WORK/payload2")
rm -f "$WORK/ready"
python3 - "$WORK/payload2" "$MNT/held-again.bin" "$WORK/ready" <<'PY' &
import os, sys, time
fd = os.open(sys.argv[2], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, open(sys.argv[1], "rb").read())
open(sys.argv[3], "w").close()
time.sleep(300)
PY
WRITER=$!
track_bg "$WRITER"
(cd "$MNT" && exec sleep 300) &
IN_MOUNT=$!
track_bg "$IN_MOUNT"
wait_until 30 test -e "$WORK/ready" || fail "the second writer did not get its bytes in"
mark=$(wc -l <"$DAEMON_LOG")
stop_daemon INT              # requires exit code 0 and the mount gone
quiet_since "$mark"
grep -q 'SIGINT: shutting down' "$DAEMON_LOG" || fail "no SIGINT shutdown in the log"
kill "$WRITER" "$IN_MOUNT" 2>/dev/null || true
wait "$WRITER" "$IN_MOUNT" 2>/dev/null || true

say "SIGINT with nothing open: exit 0, mount gone, quiet"
start_daemon mount
assert_eq "$want2" "$(sha_of "$MNT/held-again.bin")" "content of the file open at SIGINT"
mark=$(wc -l <"$DAEMON_LOG")
stop_daemon INT
quiet_since "$mark"
grep -q "unmounted $MNT" "$DAEMON_LOG" || fail "no clean unmount in the log"
echo "PASS: open file flushed at shutdown"
