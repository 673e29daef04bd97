#!/usr/bin/env python3
"""S3 API benchmark for minigcs through boto3, used by scripts/bench.sh.

The same workload as bench_api.py, through one boto3 client with its
default settings (one connection pool, CRC32 checksums on uploads): for
each size class it puts N objects with PutObject, optionally drops the page
cache, gets them again with GetObject (checking every byte), and deletes
them. Each request's latency is measured from the call to having read the
whole response.

Prints one JSON object shaped as bench_api.py's:
  {"small": {"upload": {...}, "download": {...}}, "big": {...}}
"""

import argparse
import json
import os
import random
import sys
import time

import boto3
from botocore.config import Config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_api import drop_caches, summary  # noqa: E402


def run_class(s3, bucket, name, sizes, prefix, rng, do_drop):
    objects = []
    for i, size in enumerate(sizes):
        key = f"{prefix}/{name}/{i:05d}-{rng.getrandbits(32):08x}"
        objects.append((key, os.urandom(size)))
    total = sum(len(b) for _, b in objects)

    lat = []
    t0 = time.perf_counter()
    for key, body in objects:
        s = time.perf_counter()
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        lat.append(time.perf_counter() - s)
    up = summary(lat, total, time.perf_counter() - t0)

    dropped = drop_caches() if do_drop else False
    lat = []
    t0 = time.perf_counter()
    for key, body in objects:
        s = time.perf_counter()
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        lat.append(time.perf_counter() - s)
        if data != body:
            raise SystemExit(f"GET {key}: got {len(data)} bytes that differ from the {len(body)} uploaded")
    down = summary(lat, total, time.perf_counter() - t0)
    down["cold_cache"] = dropped

    for i in range(0, len(objects), 1000):
        batch = [{"Key": k} for k, _ in objects[i:i + 1000]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
    return {"upload": up, "download": down}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="e.g. http://127.0.0.1:9000")
    ap.add_argument("--access-key", required=True)
    ap.add_argument("--secret-key", required=True)
    ap.add_argument("--bucket", default="bench-s3")
    ap.add_argument("--small-count", type=int, default=1000)
    ap.add_argument("--small-min", type=int, default=1024)
    ap.add_argument("--small-max", type=int, default=10 * 1024)
    ap.add_argument("--big-count", type=int, default=100)
    ap.add_argument("--big-min", type=int, default=1 << 20)
    ap.add_argument("--big-max", type=int, default=4 << 20)
    ap.add_argument("--prefix", default="bench")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--drop-caches", action="store_true", help="drop the page cache before each download phase")
    args = ap.parse_args()

    s3 = boto3.client(
        "s3", endpoint_url=args.url, aws_access_key_id=args.access_key,
        aws_secret_access_key=args.secret_key, region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )
    s3.create_bucket(Bucket=args.bucket)
    rng = random.Random(args.seed)
    out = {}
    sizes = [rng.randint(args.small_min, args.small_max) for _ in range(args.small_count)]
    out["small"] = run_class(s3, args.bucket, "small", sizes, args.prefix, rng, args.drop_caches)
    sizes = [rng.randint(args.big_min, args.big_max) for _ in range(args.big_count)]
    out["big"] = run_class(s3, args.bucket, "big", sizes, args.prefix, rng, args.drop_caches)
    s3.delete_bucket(Bucket=args.bucket)
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
