#!/usr/bin/env bash
# An API PUT over a file is a rename of a new file over it:
#  - a reader that has the file open in the mount (some of it already in the
#    kernel's page cache) reads the old version whole after the PUT — its
#    sha256 is the old one, fstat shows the old size;
#  - right after the PUT, `stat`, `ls -l` and a new open show the new version
#    (size and sha256), never ENOENT from a stale kernel entry, and again
#    once the kernel's entry and attribute timeouts have passed;
#  - readers opening the name in a loop while PUTs replace it always get
#    one whole version, never ENOENT;
#  - an API GET streaming while the PUT lands returns the old version whole;
#  - a writer that has the file open writes into the old, nameless file:
#    after its close the name still holds the PUT's bytes.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_fuse

start_daemon mount
C=$CFG_CHUNK
D=$WORK/v
mkdir -p "$D"

put_file() { # put_file KEY FILE
    api "/objects/$1" -X PUT --data-binary "@$2" --fail -o /dev/null || fail "PUT $1"
}
# The kernel's view of KEY is exactly FILE: stat, ls, and a new open.
expect_view() { # expect_view KEY FILE WHEN
    local size out
    size=$(stat -c %s "$2")
    out=$(stat -c %s "$MNT/$1" 2>&1) || fail "stat $1 ($3): $out"
    assert_eq "$size" "$out" "size of $1 by stat ($3)"
    out=$(ls -l "$MNT/$(dirname "$1")" 2>&1) || fail "ls ($3): $out"
    grep -q " $size .* $(basename "$1")\$" <<<"$out" || fail "ls -l ($3) does not show $1 with $size bytes: $out"
    out=$(sha256sum "$MNT/$1" 2>&1) || fail "reopen of $1 ($3): $out"
    assert_eq "$(sha_of "$2")" "${out%% *}" "sha256 of $1 through a new open ($3)"
}

say "a reader holds the file open across a PUT of a new version"
mkrand "$D/old" $((5 * C + 333))
mkrand "$D/new" $((3 * C + 17))
put_file r/data.bin "$D/old"
cat "$MNT/r/data.bin" >/dev/null # part of it stays in the page cache
python3 - "$MNT/r/data.bin" "$API_URL/objects/r/data.bin" "$D/new" "$C" <<'PY'
import hashlib, os, sys, urllib.request
path, url, new_file, chunk = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sha = lambda b: hashlib.sha256(b).hexdigest()
with open(path, "rb") as f:
    old = f.read()
with open(new_file, "rb") as f:
    new = f.read()
with open(path, "rb") as f:
    head = f.read(chunk)
    req = urllib.request.Request(url, data=new, method="PUT")
    with urllib.request.urlopen(req) as r:
        assert r.status == 200, r.status
    if os.fstat(f.fileno()).st_size != len(old):
        sys.exit(f"FAIL: fstat of the open file shows {os.fstat(f.fileno()).st_size} bytes, not the old {len(old)}")
    got = head + f.read()
    if sha(got) != sha(old):
        sys.exit(f"FAIL: the open reader read {len(got)} bytes that are not the old version (a mix)")
    # While the old file is still open, the name already is the new one.
    if os.stat(path).st_size != len(new):
        sys.exit(f"FAIL: stat of the name shows {os.stat(path).st_size} bytes while the old file is open")
    with open(path, "rb") as g:
        if sha(g.read()) != sha(new):
            sys.exit("FAIL: a new open while the old file is open does not read the new version")
print("open reader read the old version whole; the name showed the new one meanwhile")
PY
expect_view r/data.bin "$D/new" "right after the PUT"

say "repeated PUTs while the kernel has the name cached: no ENOENT"
for i in 1 2 3 4 5; do
    mkrand "$D/v$i" $((i * C / 2 + i))
    stat "$MNT/r/data.bin" >/dev/null
    put_file r/data.bin "$D/v$i"
    expect_view r/data.bin "$D/v$i" "PUT $i"
done
sleep 1.5 # past the kernel's entry and attribute timeouts
expect_view r/data.bin "$D/v5" "after the kernel's timeouts"

say "readers opening the name while PUTs replace it: every open succeeds"
mkrand "$D/a" $((C + 5))
mkrand "$D/b" $((C / 3))
put_file r/hot "$D/a"
python3 - "$MNT/r/hot" "$API_URL/objects/r/hot" "$D/a" "$D/b" <<'PY'
import os, sys, threading, urllib.request
path, url = sys.argv[1], sys.argv[2]
versions = [open(p, "rb").read() for p in sys.argv[3:5]]
done, errors, reads = threading.Event(), [], [0]
def reader():
    while not done.is_set():
        try:
            with open(path, "rb") as f:
                data = f.read()
            if data not in versions:
                errors.append(f"read {len(data)} bytes that are no version")
            reads[0] += 1
        except OSError as e:
            errors.append(f"{type(e).__name__}: {e}")
threads = [threading.Thread(target=reader) for _ in range(3)]
for t in threads:
    t.start()
for i in range(30):
    req = urllib.request.Request(url, data=versions[i % 2], method="PUT")
    urllib.request.urlopen(req).read()
done.set()
for t in threads:
    t.join()
if errors:
    sys.exit(f"FAIL: {len(errors)} of {reads[0] + len(errors)} reads failed, first: {errors[0]}")
print(f"{reads[0]} reads across 30 PUTs, all whole versions")
PY

say "a streaming API GET keeps the old version across a PUT"
mkrand "$D/big" $((8 * C))
put_file r/big.bin "$D/big"
curl -sS --fail --limit-rate 2M -o "$D/got" "$API_URL/objects/r/big.bin" &
getter=$!
track_bg "$getter"
sleep 0.5
put_file r/big.bin "$D/new"
wait "$getter" || fail "the streaming GET failed across the PUT"
assert_eq "$(sha_of "$D/big")" "$(sha_of "$D/got")" "sha256 of the GET that streamed across the PUT"
expect_view r/big.bin "$D/new" "after the streamed GET"

say "a writer with the file open writes into the old file, the name keeps the PUT"
put_file r/w.txt <(printf 'first version\n')
exec 7>>"$MNT/r/w.txt"
printf 'appended before the PUT\n' >&7
printf 'the API version\n' >"$D/api"
put_file r/w.txt "$D/api"
printf 'appended after the PUT\n' >&7
exec 7>&-
expect_view r/w.txt "$D/api" "after the writer closed"

say "health is clean"
ctlj health | jq -e '.status == "healthy"' >/dev/null || fail "health: $(ctlj health)"

stop_daemon
echo "PASS: $TEST_NAME"
