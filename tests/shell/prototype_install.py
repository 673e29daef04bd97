#!/usr/bin/env python3
"""Write a MiniGCS Python prototype install, in the prototype's exact format,
for tests/shell/test_import_prototype.sh.

Usage: prototype_install.py VECTORS_JSON SEED_CONFIG PROTO_DIR ORIGINALS_DIR [--recoverable-only]

PROTO_DIR gets the prototype's working directory: its config.yaml (the seed
config, unchanged), metadata.db (tables `objects` and `shards`) and node
folders data/node-N with node_metadata.json and objects/<key>/shard_NNN.
ORIGINALS_DIR gets every object's original bytes and manifest.json: for each
key its size, SHA-256, content type, times, version and the outcome the
import must report (imported, repaired, unrecoverable), plus why.

Shards are encoded the way the prototype encoded them (whole object
zero-padded to a multiple of k, k data shards, parity i byte j = XOR over d
of mul(data[d][j], gf_exp[d*(i+1)]), with the prototype's mul:
gf_exp[(log a + log b) % 256], log 1 stored as 255). The encoder checks
itself against every vector in VECTORS_JSON (made by the prototype) first
and stops if any differs.
"""

import hashlib
import json
import os
import random
import sqlite3
import sys

EXP = [0] * 256
LOG = [0] * 256
_x = 1
for _i in range(256):
    EXP[_i] = _x
    LOG[_x] = _i  # i = 255 stores log 1 = 255, as the prototype's table
    _x <<= 1
    if _x & 0x100:
        _x ^= 0x11D


def mul(a, b):
    if a == 0 or b == 0:
        return 0
    return EXP[(LOG[a] + LOG[b]) % 256]


def encode(data, k, m):
    size = -(-len(data) // k)
    padded = data + bytes(size * k - len(data))
    shards = [padded[d * size:(d + 1) * size] for d in range(k)]
    for i in range(m):
        rows = [[mul(x, EXP[(d * (i + 1)) % 255]) for x in range(256)] for d in range(k)]
        parity = bytearray(size)
        for d in range(k):
            row, shard = rows[d], shards[d]
            for j in range(size):
                parity[j] ^= row[shard[j]]
        shards.append(bytes(parity))
    return shards


def check_vectors(path):
    vectors = json.load(open(path))
    for v in vectors:
        data = bytes.fromhex(v["data_hex"])
        got = [s.hex() for s in encode(data, v["k"], v["m"])]
        if got != v["shards_hex"]:
            sys.exit(f"encoder differs from the prototype on vector k={v['k']} m={v['m']} "
                     f"({len(data)} bytes)")
        if hashlib.sha256(data).hexdigest() != v["sha256"]:
            sys.exit("vector sha256 mismatch")
    print(f"encoder matches all {len(vectors)} prototype vectors")


def text(rng, n):
    words = ["minigcs", "prototype", "shard", "parity", "region", "node", "object",
             "erasure", "coding", "migrate", "bytes", "checksum", "\n"]
    out = []
    total = 0
    while total < n:
        w = rng.choice(words) + " "
        out.append(w)
        total += len(w)
    return "".join(out).encode()[:n]


def main():
    vectors, seed_config, proto, originals = sys.argv[1:5]
    recoverable_only = "--recoverable-only" in sys.argv[5:]
    check_vectors(vectors)
    rng = random.Random(12)
    nodes = [("node-1", "us-east-1"), ("node-2", "us-west-1"), ("node-3", "eu-west-1")]

    # key, content, content type, (k, m), damage, expected outcome, reason hint
    objects = [
        ("hello.txt", b"hello from the prototype\n", "text/plain", (2, 1), {}, "imported", ""),
        ("reports/2026/q1.csv", text(rng, 5001), "text/csv", (2, 1), {}, "imported", ""),
        ("trailing-zeros.bin", rng.randbytes(999) + bytes(6), "application/octet-stream", (2, 1),
         {}, "imported", ""),
        ("empty.txt", b"", "text/plain", (2, 1), {}, "imported", ""),
        ("big/multi-chunk.bin", rng.randbytes(2_621_441), "application/octet-stream", (2, 1),
         {}, "imported", ""),
        ("missing-data-0.bin", rng.randbytes(300_001), "application/octet-stream", (2, 1),
         {0: "delete"}, "repaired", "rebuilt data shard 0"),
        ("big/missing-data-0.bin", rng.randbytes(3_145_729) + bytes(3), "image/png", (2, 1),
         {0: "delete"}, "repaired", "rebuilt data shard 0"),
        ("notes/missing-data-1.txt", text(rng, 40_000), "text/plain", (2, 1),
         {1: "delete"}, "repaired", "rebuilt data shard 1"),
        ("missing-parity.bin", rng.randbytes(4096), "application/octet-stream", (2, 1),
         {2: "delete"}, "imported", ""),
        ("truncated-data-0.bin", rng.randbytes(1000), "application/octet-stream", (2, 1),
         {0: "truncate"}, "repaired", "rebuilt data shard 0"),
        ("corrupt-data-1.txt", text(rng, 20_000), "text/plain", (2, 1),
         {1: "flip"}, "repaired", "shard 1 held wrong bytes"),
        ("corrupt-data-0.bin", rng.randbytes(50_000), "application/octet-stream", (2, 1),
         {0: "flip"}, "repaired", "shard 0 held wrong bytes"),
        ("k3m2/deep/two-lost.txt", text(rng, 30_000), "text/markdown", (3, 2),
         {0: "delete", 2: "delete"}, "repaired", "rebuilt data shards 0, 2"),
        ("lost-two.bin", rng.randbytes(2000), "application/octet-stream", (2, 1),
         {0: "delete", 1: "delete"}, "unrecoverable", "only 1 of the 3 shards"),
        ("corrupt-parity-and-missing-data.bin", rng.randbytes(3000), "application/octet-stream",
         (2, 1), {0: "delete", 2: "flip"}, "unrecoverable", "SHA-256"),
        ("binary-missing-data-1.bin", rng.randbytes(65_536), "application/octet-stream", (2, 1),
         {1: "delete"}, "unrecoverable", "cannot tell apart"),
    ]

    if recoverable_only:
        objects = [o for o in objects if o[5] != "unrecoverable"]
    os.makedirs(proto)
    os.makedirs(originals)
    with open(seed_config) as src, open(os.path.join(proto, "config.yaml"), "w") as dst:
        dst.write(src.read())
    for node, region in nodes:
        folder = os.path.join(proto, "data", node)
        os.makedirs(os.path.join(folder, "objects"))
        with open(os.path.join(folder, "node_metadata.json"), "w") as f:
            json.dump({"node_id": node, "region": region,
                       "created_at": "2026-11-25T12:50:01.000001",
                       "storage_path": f"./data/{node}", "total_shards": 0, "total_size": 0,
                       "updated_at": "2026-11-25T12:59:59.999999"}, f)

    db = sqlite3.connect(os.path.join(proto, "metadata.db"))
    db.executescript("""
        CREATE TABLE objects (
            key TEXT PRIMARY KEY, size INTEGER, content_type TEXT, created_at TEXT,
            updated_at TEXT, version INTEGER, checksum TEXT, shard_locations TEXT,
            erasure_params TEXT, regions TEXT);
        CREATE TABLE shards (
            id INTEGER PRIMARY KEY AUTOINCREMENT, object_key TEXT, shard_index INTEGER,
            node_id TEXT, shard_path TEXT, created_at TEXT);
    """)
    manifest = {}
    for n, (key, data, ctype, (k, m), damage, outcome, hint) in enumerate(objects):
        created = f"2026-11-{10 + n:02d}T08:{n:02d}:37.{123456 + n:06d}"
        updated = f"2026-11-25T12:52:{n:02d}.{192944 + n:06d}"
        version = 1 + n % 3
        shards = encode(data, k, m)
        locations = []
        for index, shard in enumerate(shards):
            # As the prototype did: round-robin, two shards of one object
            # may share a node when k + m exceeds the node count.
            node, region = nodes[index % len(nodes)]
            rel = f"objects/{key}/shard_{index:03d}"
            path = os.path.join(proto, "data", node, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            what = damage.get(index)
            if what != "delete":
                body = bytearray(shard)
                if what == "flip":
                    body[len(body) // 2] ^= 0x20
                elif what == "truncate":
                    body = body[:-1]
                with open(path, "wb") as f:
                    f.write(body)
            locations.append({"node_id": node, "region": region, "shard_path": rel})
            db.execute("INSERT INTO shards(object_key, shard_index, node_id, shard_path, created_at)"
                       " VALUES (?, ?, ?, ?, ?)", (key, index, node, rel, created))
        checksum = hashlib.sha256(data).hexdigest()
        db.execute("INSERT INTO objects VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (key, len(data), ctype, created, updated, version, checksum,
                    json.dumps(locations), json.dumps({"k": k, "m": m}),
                    json.dumps(sorted({loc["region"] for loc in locations}))))
        name = f"object-{n:02d}"
        with open(os.path.join(originals, name), "wb") as f:
            f.write(data)
        manifest[key] = {"file": name, "size": len(data), "sha256": checksum,
                         "content_type": ctype, "created_at": created, "updated_at": updated,
                         "version": version, "outcome": outcome, "hint": hint}
    db.commit()
    db.close()
    with open(os.path.join(originals, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    print(f"prototype install with {len(objects)} objects in {proto}")


if __name__ == "__main__":
    main()
