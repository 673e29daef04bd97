#!/usr/bin/env python3
"""Concurrency figures of a minigcs mount, printed as one JSON object.

1. Readers of one open file: the page cache is dropped, then one thread reads
   file A start to end through one descriptor; the cache is dropped again and
   READERS threads read file B (same size) through ONE shared descriptor, each
   its own contiguous part, at the same time. Aggregate MiB/s of both passes
   and their ratio tell whether readers of one open file run in parallel.
   With --node-dirs, the same two passes run again with the store's node
   folders warm: the page cache is dropped, then every shard file is read
   once, so the readers meet no disk wait and their figures measure the
   daemon (locks, copies, CPU) rather than the disk. Cold, four readers can
   only be as fast as the disk: the shard files are also read cold by 8
   threads at once (data and parity), the disk's parallel read rate, as the
   reference for the cold passes.
2. stat while commits happen: `statx(AT_STATX_FORCE_SYNC)` (so every call
   reaches the daemon, not the kernel's attribute cache) of one small file in
   a loop for SECONDS, first alone, then while another thread writes and
   closes WRITE_SIZE files in a loop (each close is a durable commit). p50 and
   p99 of both tell whether a stat waits behind commits.

Usage: bench_concurrency.py --dir MOUNTED_DIR --file-a A --file-b B
       [--readers 4] [--seconds 10] [--write-size 4194304] [--drop-caches]
       [--node-dirs DIR ...]
"""

import argparse
import ctypes
import json
import os
import threading
import time

BLOCK = 1 << 20
AT_FDCWD = -100
AT_STATX_FORCE_SYNC = 0x2000
STATX_BASIC_STATS = 0x7FF

libc = ctypes.CDLL(None, use_errno=True)
libc.statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]


def drop_caches(enabled):
    os.sync()
    if enabled:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")


def files_under(dirs):
    return [os.path.join(root, n) for d in dirs for root, _, names in os.walk(d) for n in names]


def read_files(paths, threads):
    """Read every file once with `threads` threads; returns (bytes, seconds)."""
    todo = list(paths)
    lock = threading.Lock()
    total = [0]

    def run():
        while True:
            with lock:
                if not todo:
                    return
                path = todo.pop()
            with open(path, "rb", buffering=0) as f:
                while True:
                    data = f.read(BLOCK)
                    if not data:
                        break
                    with lock:
                        total[0] += len(data)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return total[0], time.perf_counter() - t0


def warm_nodes(node_dirs):
    """Drop the page cache, then read every shard file once."""
    drop_caches(True)
    read_files(files_under(node_dirs), 4)


def read_range(fd, start, end):
    pos = start
    while pos < end:
        data = os.pread(fd, min(BLOCK, end - pos), pos)
        if not data:
            raise SystemExit(f"short read at {pos} (expected up to {end})")
        pos += len(data)


def readers_pass(path, readers):
    size = os.stat(path).st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        # Parts start on 1 MiB boundaries; the last one takes the rest.
        step = (size // readers) // BLOCK * BLOCK
        bounds = [(i * step, size if i == readers - 1 else (i + 1) * step) for i in range(readers)]
        errors = []

        def run(b):
            try:
                read_range(fd, *b)
            except BaseException as e:  # reported after join
                errors.append(e)

        threads = [threading.Thread(target=run, args=(b,)) for b in bounds]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        secs = time.perf_counter() - t0
        if errors:
            raise errors[0]
    finally:
        os.close(fd)
    return {"readers": readers, "bytes": size, "seconds": round(secs, 3),
            "mib_per_s": round(size / BLOCK / secs, 1)}


def statx_latencies(path, seconds, stop_early=None):
    buf = ctypes.create_string_buffer(256)
    p = os.fsencode(path)
    lat = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        if libc.statx(AT_FDCWD, p, AT_STATX_FORCE_SYNC, STATX_BASIC_STATS, buf) != 0:
            raise OSError(ctypes.get_errno(), "statx " + path)
        lat.append(time.perf_counter() - t0)
        if stop_early is not None and stop_early.is_set():
            break
    return lat


def pct(sorted_values, q):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return round(sorted_values[i] * 1000, 3)


def summary(lat):
    s = sorted(lat)
    return {"count": len(s), "p50_ms": pct(s, 0.50), "p99_ms": pct(s, 0.99), "max_ms": pct(s, 1.0)}


def stat_during_commits(directory, seconds, write_size):
    target = os.path.join(directory, "stat-target.txt")
    with open(target, "wb") as f:
        f.write(b"stat me\n")
    alone = statx_latencies(target, seconds)

    wdir = os.path.join(directory, "writer")
    os.makedirs(wdir, exist_ok=True)
    payload = os.urandom(write_size)
    stop = threading.Event()
    closes = []
    errors = []

    def writer():
        i = 0
        try:
            while not stop.is_set():
                name = os.path.join(wdir, f"f{i % 8}")
                t0 = time.perf_counter()
                with open(name, "wb") as f:
                    f.write(payload)
                closes.append(time.perf_counter() - t0)
                i += 1
        except BaseException as e:
            errors.append(e)

    w = threading.Thread(target=writer)
    w.start()
    time.sleep(0.5)  # let the first commits start
    busy = statx_latencies(target, seconds)
    stop.set()
    w.join()
    if errors:
        raise errors[0]
    return {
        "stat_alone": summary(alone),
        "stat_during_commits": summary(busy),
        "writer": {"files_closed": len(closes), "file_bytes": write_size, "close": summary(closes)},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--file-a", required=True)
    ap.add_argument("--file-b", required=True)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--write-size", type=int, default=4 << 20)
    ap.add_argument("--drop-caches", action="store_true")
    ap.add_argument("--node-dirs", nargs="*", default=[])
    a = ap.parse_args()

    drop_caches(a.drop_caches)
    one = readers_pass(a.file_a, 1)
    drop_caches(a.drop_caches)
    many = readers_pass(a.file_b, a.readers)
    out = {
        "one_reader": one,
        "many_readers": many,
        "readers_speedup": round(many["mib_per_s"] / one["mib_per_s"], 2),
        "cold": a.drop_caches,
    }
    if a.node_dirs and a.drop_caches:
        drop_caches(True)
        size, secs = read_files(files_under(a.node_dirs), 8)
        out["disk_parallel_read"] = {"bytes": size, "seconds": round(secs, 3),
                                     "mib_per_s": round(size / BLOCK / secs, 1)}
        warm_nodes(a.node_dirs)
        warm_one = readers_pass(a.file_a, 1)
        warm_nodes(a.node_dirs)
        warm_many = readers_pass(a.file_b, a.readers)
        out["warm_nodes"] = {
            "one_reader": warm_one,
            "many_readers": warm_many,
            "readers_speedup": round(warm_many["mib_per_s"] / warm_one["mib_per_s"], 2),
        }
    out.update(stat_during_commits(a.dir, a.seconds, a.write_size))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
