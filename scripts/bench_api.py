#!/usr/bin/env python3
"""HTTP API benchmark for minigcs, used by scripts/bench.sh.

One client, one keep-alive connection (http.client). For each size class it
uploads N objects with `PUT /objects/{key}` (raw body), optionally drops the
page cache, downloads them again with `GET /objects/{key}` (checking every
byte), and finally deletes them. Each request's latency is measured from
sending the request to having read the whole response.

Prints one JSON object:
  {"small": {"upload": {...}, "download": {...}}, "big": {...}}
where each {...} holds count, bytes, seconds, ops_per_s, mib_per_s, p50_ms,
p99_ms, max_ms.
"""

import argparse
import http.client
import json
import os
import random
import sys
import time
import urllib.parse


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return 0.0
    rank = max(1, int(-(-p * len(sorted_values) // 100)))  # ceil(p/100 * n)
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summary(latencies, total_bytes, seconds):
    lat = sorted(latencies)
    n = len(lat)
    return {
        "count": n,
        "bytes": total_bytes,
        "seconds": seconds,
        "ops_per_s": n / seconds if seconds > 0 else 0.0,
        "mib_per_s": total_bytes / (1024 * 1024) / seconds if seconds > 0 else 0.0,
        "p50_ms": percentile(lat, 50) * 1000.0,
        "p99_ms": percentile(lat, 99) * 1000.0,
        "max_ms": (lat[-1] if lat else 0.0) * 1000.0,
    }


def drop_caches():
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


class Client:
    def __init__(self, host, port, timeout):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)
        self.reconnects = 0

    def request(self, method, path, body=None, headers=None):
        """Returns (status, body bytes). Reconnects once if the server closed
        the kept-alive connection (counted in self.reconnects)."""
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                    self.reconnects += 1
                return resp.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if attempt:
                    raise
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self.reconnects += 1
        raise AssertionError("unreachable")


def run_class(client, name, sizes, prefix, rng, do_drop):
    objects = []
    for i, size in enumerate(sizes):
        key = f"{prefix}/{name}/{i:05d}-{rng.getrandbits(32):08x}"
        objects.append((urllib.parse.quote(key), os.urandom(size)))
    total = sum(len(b) for _, b in objects)

    lat = []
    t0 = time.perf_counter()
    for path, body in objects:
        s = time.perf_counter()
        status, data = client.request(
            "PUT", "/objects/" + path, body=body,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(body))},
        )
        lat.append(time.perf_counter() - s)
        if status != 200:
            raise SystemExit(f"PUT {path}: HTTP {status}: {data[:300]!r}")
    up = summary(lat, total, time.perf_counter() - t0)

    dropped = drop_caches() if do_drop else False
    lat = []
    t0 = time.perf_counter()
    for path, body in objects:
        s = time.perf_counter()
        status, data = client.request("GET", "/objects/" + path)
        lat.append(time.perf_counter() - s)
        if status != 200:
            raise SystemExit(f"GET {path}: HTTP {status}: {data[:300]!r}")
        if data != body:
            raise SystemExit(f"GET {path}: got {len(data)} bytes that differ from the {len(body)} uploaded")
    down = summary(lat, total, time.perf_counter() - t0)
    down["cold_cache"] = dropped

    for path, _ in objects:
        status, data = client.request("DELETE", "/objects/" + path)
        if status != 200:
            raise SystemExit(f"DELETE {path}: HTTP {status}: {data[:300]!r}")
    return {"upload": up, "download": down}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8000")
    ap.add_argument("--small-count", type=int, default=1000)
    ap.add_argument("--small-min", type=int, default=1024)
    ap.add_argument("--small-max", type=int, default=10 * 1024)
    ap.add_argument("--big-count", type=int, default=100)
    ap.add_argument("--big-min", type=int, default=1 << 20)
    ap.add_argument("--big-max", type=int, default=4 << 20)
    ap.add_argument("--prefix", default="bench-api")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--drop-caches", action="store_true", help="drop the page cache before each download phase")
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()

    u = urllib.parse.urlparse(args.url)
    client = Client(u.hostname, u.port or 80, args.timeout)
    rng = random.Random(args.seed)

    status, data = client.request("GET", "/")
    if status != 200:
        raise SystemExit(f"GET /: HTTP {status}: {data[:300]!r}")

    out = {}
    sizes = [rng.randint(args.small_min, args.small_max) for _ in range(args.small_count)]
    out["small"] = run_class(client, "small", sizes, args.prefix, rng, args.drop_caches)
    sizes = [rng.randint(args.big_min, args.big_max) for _ in range(args.big_count)]
    out["big"] = run_class(client, "big", sizes, args.prefix, rng, args.drop_caches)
    out["reconnects"] = client.reconnects
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
