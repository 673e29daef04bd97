#!/usr/bin/env bash
# HTTP API connection limits with short settings (header timeout 2 s, idle
# timeout 4 s, at most 8 connections), on raw sockets:
#   - a connection that sends nothing, half a request head, or a head one
#     byte at a time is closed about 2 s after it opened (the header timeout);
#   - a kept-alive connection is closed after the idle timeout (4 s), not the
#     header timeout;
#   - an upload that stops mid-body, or a download the client stops
#     reading, is closed after the idle timeout, while a slow upload and a
#     slow download that keep moving (longer than both timeouts) complete;
#   - with 8 connections open, a 9th is answered 503 + Retry-After at once;
#     once one closes, a new request is served;
#   - the daemon stays healthy.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

CFG_API_EXTRA="  max_connections: 8
  header_timeout_secs: 2
  idle_timeout_secs: 4"
write_config
start_daemon serve
BIG=$((24 * 1024 * 1024))   # more than the loopback socket buffers hold
mkrand "$WORK/big" "$BIG"
assert_eq 200 "$(api_code /dev/null /objects/big -T "$WORK/big")" "PUT big"

say "timeouts, in parallel: silent, half head, trickled head, kept alive, stalled and slow transfers"
python3 - "$API_PORT" "$BIG" <<'EOF'
import hashlib, socket, sys, threading, time

port, big = int(sys.argv[1]), int(sys.argv[2])
results, errors = {}, []

def connect():
    return socket.create_connection(("127.0.0.1", port), timeout=30)

def wait_closed(s, limit=20):
    """Seconds until the server closes s (EOF or reset), reading what it sends."""
    start, data = time.monotonic(), b""
    s.settimeout(0.2)
    while time.monotonic() - start < limit:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return time.monotonic() - start, data

def read_response(s):
    s.settimeout(30)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("closed before a response: %r" % data)
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += s.recv(65536)
    return head.split(b"\r\n")[0].decode(), body

def silent():
    s = connect()
    results["silent"] = wait_closed(s)

def half_head():
    s = connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    results["half head"] = wait_closed(s)

def trickled_head():
    s = connect()
    start = time.monotonic()
    try:
        for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:
            s.send(bytes([b]))
            time.sleep(0.25)
    except OSError:
        pass
    waited, data = wait_closed(s)
    results["trickled head"] = (time.monotonic() - start, data)

def kept_alive():
    s = connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _ = read_response(s)
    if " 200 " not in status + " ":
        errors.append("kept alive: first request answered %s" % status)
    results["kept alive"] = wait_closed(s)

def stalled_upload():
    s = connect()
    s.sendall(b"PUT /objects/stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n" + b"x" * 1000)
    results["stalled upload"] = wait_closed(s)

def slow_upload():
    piece, pieces = 1024, 6
    body = bytes(range(256)) * (piece * pieces // 256)
    s = connect()
    start = time.monotonic()
    s.sendall(b"PUT /objects/slow HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    for i in range(pieces):
        time.sleep(1.5)
        s.sendall(body[i * piece:(i + 1) * piece])
    status, _ = read_response(s)
    results["slow upload"] = (time.monotonic() - start, status.encode())
    s.close()
    s = connect()
    s.sendall(b"GET /objects/slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, got = read_response(s)
    if hashlib.sha256(got).digest() != hashlib.sha256(body).digest():
        errors.append("slow upload read back %s, %d bytes, not the %d sent" % (status, len(got), len(body)))

def download_head(s):
    s.sendall(b"GET /objects/big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    s.settimeout(30)
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    return len(data.split(b"\r\n\r\n", 1)[1])

def read_to_end(s):
    got = 0
    s.settimeout(30)
    try:
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
    except ConnectionResetError:
        pass
    return got

def stalled_download():
    s = connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    got = download_head(s)
    time.sleep(9)   # read nothing for over twice the idle timeout
    got += read_to_end(s)
    results["stalled download"] = got

def slow_download():
    s = connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    start = time.monotonic()
    got = download_head(s)
    s.settimeout(30)
    while time.monotonic() - start < 9:   # a trickle, longer than both timeouts
        got += len(s.recv(65536))
        time.sleep(1)
    got += read_to_end(s)
    results["slow download"] = got

def run(f):
    try:
        f()
    except Exception as e:
        errors.append("%s: %r" % (f.__name__, e))

threads = [threading.Thread(target=run, args=(f,)) for f in
           (silent, half_head, trickled_head, kept_alive, stalled_upload, slow_upload,
            stalled_download, slow_download)]
for t in threads: t.start()
for t in threads: t.join()

def within(name, low, high):
    if name not in results:
        return
    took, data = results[name]
    print("%-15s closed after %.1fs" % (name, took))
    if not low <= took <= high:
        errors.append("%s: closed after %.1fs, expected %.1f..%.1fs" % (name, took, low, high))
    if name != "slow upload" and data:
        errors.append("%s: got a response instead of a close: %r" % (name, data[:80]))

within("silent", 1.5, 5)
within("half head", 1.5, 5)
within("trickled head", 1.5, 5)
within("kept alive", 3.5, 8)       # the idle timeout (4 s), not the header one (2 s)
within("stalled upload", 3.5, 8)
if "slow upload" in results:
    took, status = results["slow upload"]
    print("slow upload     took %.1fs: %s" % (took, status.decode()))
    if took < 8:
        errors.append("slow upload finished in %.1fs: not slower than both timeouts" % took)
    if not status.decode().split(" ")[1].startswith("2"):
        errors.append("slow upload answered %s" % status.decode())
if "stalled download" in results:
    print("stalled download cut after %d of %d bytes" % (results["stalled download"], big))
    if results["stalled download"] >= big:
        errors.append("a download the client stopped reading was not cut")
if "slow download" in results:
    print("slow download   got %d of %d bytes" % (results["slow download"], big))
    if results["slow download"] != big:
        errors.append("a slow download got %d of %d bytes" % (results["slow download"], big))
if errors:
    print("FAIL: " + "; ".join(errors), file=sys.stderr)
    sys.exit(1)
EOF

sleep 0.5   # the server sees the last closes
say "the cap: 8 connections open, the 9th is refused at once, then served once one closes"
python3 - "$API_PORT" <<'EOF'
import socket, sys, time

port = int(sys.argv[1])
held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(8)]
time.sleep(0.2)

def get():
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    start = time.monotonic()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return time.monotonic() - start, data

took, refused = get()
head = refused.split(b"\r\n\r\n")[0].lower()
print("over the cap: %.2fs %r" % (took, refused.split(b"\r\n")[0]))
if not refused.startswith(b"HTTP/1.1 503") or b"retry-after: 1" not in head or took > 1.0:
    print("FAIL: the 9th connection was not refused promptly: %.2fs %r" % (took, refused[:300]), file=sys.stderr)
    sys.exit(1)
held.pop().close()
time.sleep(0.3)
took, served = get()
print("a slot free:  %.2fs %r" % (took, served.split(b"\r\n")[0]))
if not served.startswith(b"HTTP/1.1 200"):
    print("FAIL: with a slot free the request was not served: %r" % served[:300], file=sys.stderr)
    sys.exit(1)
EOF
grep -q "answering new ones 503" "$DAEMON_LOG" || fail "the refusal is not in the daemon log"

say "the daemon is unharmed"
ctlj health | jq -e '.status == "healthy"' >/dev/null || fail "health is not healthy: $(ctlj health)"
assert_eq 200 "$(api_code /dev/null /)" "GET / after the limits were hit"
stop_daemon
echo "PASS: $TEST_NAME"
