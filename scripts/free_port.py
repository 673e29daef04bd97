#!/usr/bin/env python3
"""Print a TCP port on 127.0.0.1 that is free right now (random, 20000-60999).

Used by scripts/bench.sh and tests/shell/lib.sh to give each daemon its own
API port."""
import random
import socket

for _ in range(500):
    port = random.randint(20000, 60999)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit("no free TCP port found")
