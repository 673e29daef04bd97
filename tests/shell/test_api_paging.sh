#!/usr/bin/env bash
# Paged listing is a keyset walk, not a scan per page: 50,000 keys in 250
# directories (created through the mount), listed 1,000 at a time with
# `start_after`, cost about one listing in one go; the pages together name
# every key exactly once, in key order — also across names that sort
# between a directory and its contents (`d000.x` < `d000/…` < `d0000`).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_fuse

start_daemon mount

say "50,000 empty files in 250 directories, through the mount"
python3 - "$MNT" <<'PY'
import os, sys
from concurrent.futures import ThreadPoolExecutor
root = os.path.join(sys.argv[1], "k")
def fill(d):
    p = os.path.join(root, f"d{d:03}")
    os.makedirs(p)
    for f in range(200):
        open(os.path.join(p, f"f{f:03}"), "wb").close()
os.makedirs(root)
with ThreadPoolExecutor(4) as pool:
    list(pool.map(fill, range(250)))
# Names that sort between a directory and the keys inside it.
for name in ["d000.x", "d000-", "d0000", "d249!"]:
    open(os.path.join(root, name), "wb").close()
os.makedirs(os.path.join(root, "d000-dir"))
open(os.path.join(root, "d000-dir", "z"), "wb").close()
PY

say "one listing vs 1,000-key pages"
python3 - "$API_URL" <<'PY'
import http.client, json, sys, time, urllib.parse
url = urllib.parse.urlparse(sys.argv[1])
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)

def get(path):
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200, (path, r.status, body[:200])
    return json.loads(body)

expected = sorted(
    [f"k/d{d:03}/f{f:03}" for d in range(250) for f in range(200)]
    + ["k/d000.x", "k/d000-", "k/d0000", "k/d249!", "k/d000-dir/z"]
)
best_once = best_paged = None
for attempt in range(2):
    t = time.monotonic()
    once = get("/objects?prefix=k/")
    took_once = time.monotonic() - t
    assert once["objects"] == expected, "one-go listing is not every key in order"

    t = time.monotonic()
    paged, pages, after = [], 0, None
    while True:
        q = {"prefix": "k/", "limit": "1000"}
        if after is not None:
            q["start_after"] = after
        page = get("/objects?" + urllib.parse.urlencode(q))
        pages += 1
        assert page["count"] == len(page["objects"]) <= 1000
        paged += page["objects"]
        after = page.get("next_start_after")
        if after is None:
            break
        assert after == page["objects"][-1]
    took_paged = time.monotonic() - t
    assert pages == len(expected) // 1000 + 1, pages
    assert paged == expected, "pages do not list every key once, in order"
    best_once = took_once if best_once is None else min(best_once, took_once)
    best_paged = took_paged if best_paged is None else min(best_paged, took_paged)

print(f"{len(expected)} keys: one go {best_once:.3f}s, {pages} pages {best_paged:.3f}s")
if best_paged > 4 * best_once + 1.0:
    sys.exit(f"FAIL: paged listing took {best_paged:.3f}s, more than 4x one listing ({best_once:.3f}s) + 1s")
PY

say "start_after in the middle of a directory, and beyond every key"
j=$(api '/objects?prefix=k/&limit=3&start_after=k/d000/f198')
jq -e '.objects == ["k/d000/f199", "k/d0000", "k/d001/f000"] and .next_start_after == "k/d001/f000"' <<<"$j" >/dev/null ||
    fail "page after k/d000/f198: $j"
j=$(api '/objects?prefix=k/&limit=3&start_after=k/zzz')
jq -e '.objects == [] and .count == 0 and (has("next_start_after") | not)' <<<"$j" >/dev/null ||
    fail "page after the last key: $j"

stop_daemon
echo "PASS: $TEST_NAME"
