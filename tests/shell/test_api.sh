#!/usr/bin/env bash
# Every endpoint of CONTRACT.md's HTTP table, with status codes and JSON fields
# checked with jq, the error paths (bad keys, 413, 404), multipart upload as the
# prototype's clients do it, ranges, HEAD, ETag/304, listing with paging, and
# mount <-> API consistency in both directions. Without FUSE, the API part runs
# on `minigcs serve` and the test then reports SKIP for the mount part.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

CFG_MAX_FILE_SIZE=1048576
write_config
MODE=serve
if have_fuse; then MODE=mount; elif [ "${MINIGCS_REQUIRE_FUSE:-0}" = 1 ]; then need_fuse; fi
start_daemon "$MODE"

B=$WORK/body
H=$WORK/headers
code() { api_code "$B" "$@"; }   # code PATH [curl args] -> status, body in $B
expect() { # expect STATUS PATH [curl args]
    local want=$1 got
    shift
    got=$(code "$@")
    [ "$got" = "$want" ] || fail "$* -> HTTP $got, expected $want; body: $(head -c 500 "$B")"
}
jqb() { jq -e "$@" "$B" >/dev/null || fail "JSON check $* failed on: $(head -c 800 "$B")"; }
detail_ok() { jq -e '.detail | type == "string" and length > 0' "$B" >/dev/null || fail "error body lacks a string .detail: $(head -c 300 "$B")"; }

say "GET /"
expect 200 /
jqb '.message == "MiniGCS API" and (.version | type == "string" and length > 0)'

say "POST multipart (prototype client) + GET /objects/{key}/info"
mkrand "$WORK/hello.txt" 300000
expect 200 /objects/hello.txt -X POST -F "file=@$WORK/hello.txt"
jqb '.message == "Object hello.txt uploaded successfully" and .size == 300000'
expect 200 /objects/hello.txt/info
jqb '.key == "hello.txt" and .size == 300000'
jqb '(.content_type | type == "string" and length > 0) and (.version | type == "number")'
jqb '(.created_at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")) and (.updated_at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T"))'
assert_eq "$(sha_of "$WORK/hello.txt")" "$(jq -r .checksum "$B")" "info.checksum vs sha256sum"
v1=$(jq -r .version "$B")

say "GET returns the bytes with headers"
curl -sS -D "$H" -o "$WORK/got" "$API_URL/objects/hello.txt"
cmp "$WORK/hello.txt" "$WORK/got" || fail "downloaded bytes differ"
grep -qi '^content-length: 300000' "$H" || fail "Content-Length missing or wrong: $(cat "$H")"
grep -qi '^etag: ' "$H" || fail "ETag missing"
grep -qi '^last-modified: ' "$H" || fail "Last-Modified missing"
grep -qi '^content-type: ' "$H" || fail "Content-Type missing"
etag=$(grep -i '^etag: ' "$H" | head -n 1 | cut -d' ' -f2- | tr -d '\r')

say "HEAD"
curl -sS -I -o "$H" -w '%{http_code}' "$API_URL/objects/hello.txt" >"$WORK/hc"
assert_eq 200 "$(cat "$WORK/hc")" "HEAD status"
grep -qi '^content-length: 300000' "$H" || fail "HEAD Content-Length wrong: $(cat "$H")"
grep -qi '^etag: ' "$H" || fail "HEAD lacks ETag"
expect 404 /objects/nope.txt -I

say "If-None-Match -> 304, Range -> 206 / 416"
expect 304 /objects/hello.txt -H "If-None-Match: $etag"
expect 200 /objects/hello.txt -H 'If-None-Match: "some-other-etag"'
expect 206 /objects/hello.txt -H 'Range: bytes=100-199'
cmp <(tail -c +101 "$WORK/hello.txt" | head -c 100) "$B" || fail "Range 100-199 bytes differ"
expect 206 /objects/hello.txt -H 'Range: bytes=-1000'
cmp <(tail -c 1000 "$WORK/hello.txt") "$B" || fail "suffix Range bytes differ"
expect 206 /objects/hello.txt -H 'Range: bytes=299990-'
cmp <(tail -c 10 "$WORK/hello.txt") "$B" || fail "open-ended Range bytes differ"
curl -sS -D "$H" -o /dev/null -H 'Range: bytes=100-199' "$API_URL/objects/hello.txt"
grep -qi '^content-range: bytes 100-199/300000' "$H" || fail "Content-Range wrong: $(cat "$H")"
expect 416 /objects/hello.txt -H 'Range: bytes=999999-'

say "PUT raw body, content_type query, overwrite bumps version"
mkrand "$WORK/raw.bin" 123457
expect 200 "/objects/raw.bin?content_type=application/x-minigcs-test" -X PUT --data-binary "@$WORK/raw.bin"
jqb '.size == 123457'
expect 200 /objects/raw.bin/info
jqb '.content_type == "application/x-minigcs-test"'
curl -sS -D "$H" -o "$WORK/got" "$API_URL/objects/raw.bin"
cmp "$WORK/raw.bin" "$WORK/got" || fail "PUT raw body round trip"
grep -qi '^content-type: application/x-minigcs-test' "$H" || fail "stored Content-Type not served: $(cat "$H")"
mkrand "$WORK/hello2" 5000
expect 200 /objects/hello.txt -X POST --data-binary "@$WORK/hello2" -H 'Content-Type: application/octet-stream'
expect 200 /objects/hello.txt/info
jqb ".size == 5000 and .version > $v1"
assert_eq "$(sha_of "$WORK/hello2")" "$(jq -r .checksum "$B")" "checksum after overwrite"
expect 200 /objects/hello.txt
cmp "$WORK/hello2" "$B" || fail "overwritten content differs"
expect 200 /objects/empty.bin -X PUT --data-binary ''
expect 200 /objects/empty.bin
[ ! -s "$B" ] || fail "empty object not empty"

say "limits: max_file_size (1 MiB) -> 413, exactly 1 MiB accepted"
mkrand "$WORK/max" 1048576
mkrand "$WORK/toobig" 2097152
expect 200 /objects/exactly-max -X PUT --data-binary "@$WORK/max"
expect 413 /objects/too-big-raw -X PUT --data-binary "@$WORK/toobig"
detail_ok
expect 413 /objects/too-big-multipart -X POST -F "file=@$WORK/toobig"
detail_ok
expect 404 /objects/too-big-raw
expect 404 /objects/too-big-multipart

say "bad keys -> 400"
for k in 'a/../b' '../etc/passwd' 'a/./b' './x' '..'; do
    expect 400 "/objects/$k" --path-as-is -X PUT --data-binary x
    detail_ok
done
for k in 'a/%2e%2e/b' '%2e%2e' '%2E%2E/x' 'a/%2e/b' 'a//b' 'x%00y'; do
    expect 400 "/objects/$k" --path-as-is -X PUT --data-binary x
done
expect 400 "/objects/a/%2e%2e/b" --path-as-is
long_seg=$(printf 's%.0s' $(seq 256))
expect 400 "/objects/dir/$long_seg" -X PUT --data-binary x
long_key=$(for i in $(seq 1 5); do printf 'x%.0s' $(seq 250); printf /; done)end
expect 400 "/objects/$long_key" -X PUT --data-binary x
expect 404 /objects/does/not/exist
detail_ok

say "DELETE"
expect 200 /objects/raw.bin -X DELETE
jqb '.message == "Object raw.bin deleted successfully"'
expect 404 /objects/raw.bin
expect 200 /objects/raw.bin -X DELETE

say "list: prefix, sorted, paging"
for k in list/b list/a list/c list/sub/d other/x; do
    expect 200 "/objects/$k" -X PUT --data-binary "$k"
done
expect 200 '/objects?prefix=list/'
jqb '.objects == ["list/a", "list/b", "list/c", "list/sub/d"] and .count == 4'
expect 200 /objects
jqb '.objects == (.objects | sort) and .count == (.objects | length)'
jqb 'any(.objects[]; . == "other/x") and any(.objects[]; . == "hello.txt") and all(.objects[]; . != "list" and . != "list/sub" and . != "a" and . != "a/b")'
expect 200 '/objects?prefix=list/&limit=2'
jqb '.objects == ["list/a", "list/b"] and (.next_start_after == "list/b")'
expect 200 '/objects?prefix=list/&limit=2&start_after=list/b'
jqb '.objects == ["list/c", "list/sub/d"]'
expect 200 '/objects?prefix=nothing-here/'
jqb '.objects == [] and .count == 0'

say "keys naming a directory or going through a file -> 4xx"
expect 200 /objects/a/b/c.txt -X PUT --data-binary nested
c=$(code /objects/a/b)
[[ $c == 4* ]] || fail "GET of a directory key gave HTTP $c"
c=$(code /objects/a/b/c.txt/d -X PUT --data-binary x)
[[ $c == 4* ]] || fail "PUT through a file (a/b/c.txt/d) gave HTTP $c"

say "{key}/info downloads the object {key}/info when {key} is not a file"
expect 200 /objects/dl/info -X PUT --data-binary "i am dl/info"
expect 200 /objects/dl/info
assert_eq "i am dl/info" "$(cat "$B")" "GET dl/info body"

say "cluster endpoints"
expect 200 /cluster/stats
jqb '.total_nodes == 3 and (.nodes_by_region | length == 3) and ([.nodes_by_region[]] | add == 3)'
jqb '(.total_objects | type == "number") and .total_objects >= 10 and (.total_size | type == "number")'
jqb '.node_stats | has("node-1") and has("node-2") and has("node-3")'
expect 200 /cluster/health
jqb '.status == "healthy" and .failed_nodes == [] and (.message | type == "string")'
expect 200 /cluster/recovery/node-2 -X POST
jqb '.message == "Recovery completed for node node-2" and (.mttr_ms | type == "number")'
expect 404 /cluster/recovery/no-such-node -X POST
detail_ok

say "metrics endpoints"
expect 200 /metrics/summary
jqb '(.total_operations | type == "number") and .total_operations > 0'
jqb 'has("total_recoveries") and has("overall_success_rate") and has("recovery_success_rate") and has("overall_throughput_mbps") and has("total_data_processed_mb")'
jqb '(.operation_summary | type == "object" and length > 0) and (.recovery_summary | type == "object")'
jqb '[.operation_summary[] | has("count") and has("success_rate") and has("avg_duration_ms") and has("min_duration_ms") and has("max_duration_ms") and has("avg_throughput_mbps") and has("total_size_bytes")] | all'
expect 200 /metrics -D "$H"
grep -q '^minigcs_' "$B" || fail "/metrics has no minigcs_ lines"
grep -qi '^content-type: text/plain' "$H" || fail "/metrics Content-Type is not text/plain: $(grep -i content-type "$H")"
expect 200 /metrics/export -X POST
jqb '(.message | type == "string") and (.filename | type == "string" and length > 0)'
f=$(jq -r .filename "$B")
[ -f "$f" ] || [ -f "$WORK/$f" ] || fail "exported metrics file $f not found"
[ -f "$f" ] || f=$WORK/$f
jq -e . "$f" >/dev/null || fail "exported metrics file $f is not JSON"
expect 200 /metrics/clear -X POST
jqb '.message == "Metrics cleared successfully"'
expect 200 /metrics/summary
jqb '.total_operations <= 1'

if [ "$MODE" != mount ]; then
    stop_daemon
    skip "HTTP API part passed on 'minigcs serve'; mount <-> API part needs FUSE (no usable /dev/fuse)"
fi

say "mount <-> API: API object appears in the mount with parent directories"
[ -d "$MNT/a/b" ] || fail "directory a/b not in the mount"
assert_eq nested "$(cat "$MNT/a/b/c.txt")" "MNT/a/b/c.txt content"
assert_eq "$(sha_of "$WORK/hello2")" "$(sha_of "$MNT/hello.txt")" "hello.txt in the mount"

say "mount -> API: file written in the mount is listed and downloadable"
mkdir -p "$MNT/m/d"
mkrand "$WORK/m1" 2500000
cp "$WORK/m1" "$MNT/m/d/file.bin"
expect 200 '/objects?prefix=m/'
jqb '.objects == ["m/d/file.bin"]'
expect 200 /objects/m/d/file.bin
cmp "$WORK/m1" "$B" || fail "mount-written file differs via the API"

say "overwrite in the mount -> API sees the new content"
mkrand "$WORK/m2" 70000
cat "$WORK/m2" >"$MNT/m/d/file.bin"
expect 200 /objects/m/d/file.bin
cmp "$WORK/m2" "$B" || fail "API does not see the overwrite done in the mount"

say "overwrite via the API -> the mount sees the new content (caches invalidated)"
cat "$MNT/a/b/c.txt" >/dev/null
expect 200 /objects/a/b/c.txt -X PUT --data-binary "second version, longer than the first"
assert_eq "second version, longer than the first" "$(cat "$MNT/a/b/c.txt")" "mount view after API overwrite"
assert_eq 37 "$(stat -c %s "$MNT/a/b/c.txt")" "mount size after API overwrite"

say "delete via the API -> gone from the mount; delete in the mount -> API 404"
expect 200 /objects/a/b/c.txt -X DELETE
[ ! -e "$MNT/a/b/c.txt" ] || fail "deleted object still visible in the mount"
rm "$MNT/m/d/file.bin"
expect 404 /objects/m/d/file.bin
expect 200 '/objects?prefix=m/'
jqb '.objects == []'

stop_daemon
echo "PASS: $TEST_NAME"
