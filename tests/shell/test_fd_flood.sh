#!/usr/bin/env bash
# 19,000 idle TCP connections held against the HTTP API of a mounted daemon
# whose descriptor limit (16384) is below that: without a connection cap
# this exhausted its descriptors (health marked every node failed, mount
# reads gave EIO, the control socket's accept loop logged without pause).
# With the default settings (whatever the cap's default) while they are
# held:
#   - connections beyond the cap are answered 503 and closed, so the
#     daemon's own descriptors stay below cap + a margin;
#   - `ctl health` says healthy (exit 0);
#   - a write through the mount succeeds and reads back;
#   - a request on a new connection is served or refused (503) promptly,
#     never left hanging;
#   - the daemon log stays small (< 1 MB).
# Then the connections are released and the API serves requests again.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_fuse

CONNECTIONS=19000
DAEMON_NOFILE=16384
# The flood client needs a descriptor per connection.
FLOOD_NOFILE=$((CONNECTIONS + 64))
if [ "$(ulimit -Hn)" != unlimited ] && (( $(ulimit -Hn) < FLOOD_NOFILE )); then
    (ulimit -n "$FLOOD_NOFILE") 2>/dev/null ||
        skip "needs a descriptor limit of $FLOOD_NOFILE for the flood client (hard limit $(ulimit -Hn))"
fi

start_daemon mount
cap=$(sed -n 's/.*HTTP API listening on .*: at most \([0-9]*\) connections.*/\1/p' "$DAEMON_LOG" | tail -1)
[ -n "$cap" ] || fail "the daemon did not log its connection cap"
say "connection cap: $cap (descriptor limit $DAEMON_NOFILE)"
mkrand "$WORK/before" $((512 * 1024))
cp "$WORK/before" "$MNT/before"

say "opening $CONNECTIONS idle connections"
STATUS=$WORK/flood.json
(
    ulimit -n "$FLOOD_NOFILE"
    exec python3 - "$API_PORT" "$CONNECTIONS" "$STATUS" <<'EOF'
import errno, json, os, select, socket, sys, time

port, count, status = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
held, failures = [], []
# Non-blocking connects, up to WINDOW in flight: a connect whose SYN meets a
# TIME_WAIT leftover of an earlier refusal waits 1 s, and these overlap.
WINDOW = 2000
poller, in_flight, started = select.poll(), {}, 0
start = time.monotonic()
while (started < count or in_flight) and time.monotonic() - start < 40:
    while started < count and len(in_flight) < WINDOW:
        started += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            failures.append(err)
            s.close()
            continue
        in_flight[s.fileno()] = s
        poller.register(s, select.POLLOUT)
    for fd, _ in poller.poll(50):
        s = in_flight.pop(fd)
        poller.unregister(fd)
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            failures.append(err)
            s.close()
        else:
            held.append(s)
failures += ["timeout"] * len(in_flight)
failed = len(failures)
opened = time.monotonic() - start
time.sleep(1)
refused = closed = still_open = 0
for s in held:
    s.setblocking(False)
    try:
        data = s.recv(256)
    except BlockingIOError:
        still_open += 1
        continue
    except OSError:
        closed += 1
        continue
    if data.startswith(b"HTTP/1.1 503"):
        refused += 1
    else:
        closed += 1
with open(status + ".tmp", "w") as f:
    json.dump({"opened": len(held), "failed": failed, "seconds": round(opened, 1),
               "refused": refused, "closed": closed, "open": still_open}, f)
os.rename(status + ".tmp", status)
while True:
    time.sleep(60)   # hold every connection until killed
EOF
) &
FLOOD_PID=$!
track_bg "$FLOOD_PID"
wait_until 45 test -s "$STATUS" || fail "the flood client did not open its connections within 45 s"
say "flood: $(cat "$STATUS")"
opened=$(jq .opened "$STATUS")
refused=$(jq .refused "$STATUS")
(( opened >= CONNECTIONS * 9 / 10 )) || fail "only $opened of $CONNECTIONS connections could be opened"
(( refused > 0 )) || fail "no connection beyond the cap was answered 503"

say "with the connections held"
fds=$(ls "/proc/$DAEMON_PID/fd" | wc -l)
say "daemon descriptors: $fds"
(( fds < cap + 512 )) || fail "the daemon holds $fds descriptors, more than the cap $cap + 512"
health=$(timeout 10 "$MINIGCS_BIN" ctl -c "$CONFIG" --json health) || fail "ctl health failed or hung: $health"
jq -e '.status == "healthy"' >/dev/null <<<"$health" || fail "health is not healthy: $health"
mkrand "$WORK/during" $((3 * 1024 * 1024))
timeout 20 cp "$WORK/during" "$MNT/during" || fail "a write through the mount failed during the flood"
assert_eq "$(sha_of "$WORK/during")" "$(timeout 20 sha256sum "$MNT/during" | cut -d' ' -f1)" "file written during the flood"
assert_eq "$(sha_of "$WORK/before")" "$(timeout 20 sha256sum "$MNT/before" | cut -d' ' -f1)" "file written before the flood"
start=$(date +%s%N)
code=$(curl -sS -o "$WORK/new.json" -w '%{http_code}' --max-time 10 "$API_URL/") || fail "a new request got no answer"
took_ms=$((($(date +%s%N) - start) / 1000000))
say "a new request: HTTP $code in ${took_ms} ms"
case $code in
    200) ;;
    503) jq -e '.detail | test("too many connections")' >/dev/null <"$WORK/new.json" ||
             fail "503 without the reason: $(cat "$WORK/new.json")" ;;
    *) fail "a new request got HTTP $code: $(cat "$WORK/new.json")" ;;
esac
(( took_ms < 3000 )) || fail "a new request took ${took_ms} ms"

say "releasing the connections"
kill -KILL "$FLOOD_PID" 2>/dev/null || true
wait "$FLOOD_PID" 2>/dev/null || true
wait_until 20 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 '$API_URL/')\" = 200 ]" ||
    fail "the API does not serve requests after the connections were released"
api_code "$WORK/got" /objects/during >/dev/null
assert_eq "$(sha_of "$WORK/during")" "$(sha_of "$WORK/got")" "API GET after the flood"
ctlj health | jq -e '.status == "healthy"' >/dev/null || fail "health after the flood: $(ctlj health)"
size=$(stat -c %s "$DAEMON_LOG")
say "daemon log: $size bytes"
(( size < 1024 * 1024 )) || fail "the daemon log grew to $size bytes"
stop_daemon
echo "PASS: $TEST_NAME"
