#!/usr/bin/env bash
# Invariant 7: SIGTERM flushes open files, unmounts and exits 0. A writer keeps
# a file open (never closes it) while the daemon is stopped; after a restart
# the file holds every byte written before the signal.
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
stop_daemon
echo "PASS: open file flushed at shutdown"
