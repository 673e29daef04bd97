#!/usr/bin/env bash
# 100 MiB upload and download streamed through the API with bounded server
# memory (peak RSS measured from /proc), Range reads of the middle, and a
# client that disconnects mid-upload leaves no object and no leaked shards.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# Shard files are damaged or counted directly: every shard in its own file.
CFG_SEGMENT_MAX_SHARD=0
write_config

RSS_LIMIT_MIB=${MINIGCS_API_RSS_LIMIT_MIB:-256}
SIZE=$((100 * 1024 * 1024))
start_daemon serve
rss_now() { awk '/^VmRSS/ { print int($2 / 1024) }' "/proc/$DAEMON_PID/status"; }
rss_peak() { awk '/^VmHWM/ { print int($2 / 1024) }' "/proc/$DAEMON_PID/status"; }
shard_files() { find "$WORK"/node-* -name '*.shard' 2>/dev/null | wc -l; }

say "100 MiB PUT (streamed)"
mkrand "$WORK/big" "$SIZE"
echo "daemon RSS before: $(rss_now) MiB"
curl -sS --fail -o "$WORK/resp" -X PUT --data-binary "@$WORK/big" "$API_URL/objects/large/big.bin" || fail "100 MiB upload failed"
jq -e ".size == $SIZE" "$WORK/resp" >/dev/null || fail "upload reply: $(cat "$WORK/resp")"
echo "daemon RSS after upload: $(rss_now) MiB (peak $(rss_peak) MiB)"

say "100 MiB GET (streamed) and Range reads of the middle"
curl -sS --fail -o "$WORK/got" "$API_URL/objects/large/big.bin" || fail "download failed"
cmp "$WORK/big" "$WORK/got" || fail "downloaded 100 MiB differ"
rm -f "$WORK/got"
for range in "52428700-52428899" "$((SIZE / 3))-$((SIZE / 3 + 5 * 1024 * 1024))" "1048575-1048576"; do
    from=${range%-*}
    to=${range#*-}
    code=$(curl -sS -o "$WORK/part" -w '%{http_code}' -H "Range: bytes=$range" "$API_URL/objects/large/big.bin")
    assert_eq 206 "$code" "status for Range $range"
    cmp "$WORK/part" <(tail -c +$((from + 1)) "$WORK/big" | head -c $((to - from + 1))) || fail "Range $range bytes differ"
done
api /objects/large/big.bin/info -o "$WORK/info" --fail
assert_eq "$(sha_of "$WORK/big")" "$(jq -r .checksum "$WORK/info")" "checksum of the 100 MiB object"
peak=$(rss_peak)
echo "daemon peak RSS after 100 MiB up + down: $peak MiB (limit $RSS_LIMIT_MIB MiB)"
(( peak < RSS_LIMIT_MIB )) || fail "daemon peak RSS $peak MiB >= $RSS_LIMIT_MIB MiB: uploads/downloads are not streamed"

say "multipart upload of the same 100 MiB"
curl -sS --fail -o "$WORK/resp" -F "file=@$WORK/big" "$API_URL/objects/large/multipart.bin" || fail "multipart 100 MiB upload failed"
api /objects/large/multipart.bin/info -o "$WORK/info" --fail
assert_eq "$(sha_of "$WORK/big")" "$(jq -r .checksum "$WORK/info")" "checksum of the multipart object"
peak=$(rss_peak)
(( peak < RSS_LIMIT_MIB )) || fail "daemon peak RSS $peak MiB >= $RSS_LIMIT_MIB MiB after a multipart upload"

say "client disconnects mid-upload: no object, no leaked shards"
api /objects/large/multipart.bin -X DELETE --fail -o /dev/null
settle() { # wait until the shard-file count stops changing
    local a b n=0
    a=$(shard_files)
    while :; do
        sleep 1
        b=$(shard_files)
        [ "$a" = "$b" ] && break
        a=$b
        n=$((n + 1))
        (( n < 30 )) || break
    done
    echo "$b"
}
before=$(settle)
(timeout -s KILL 1.5 curl -sS -o /dev/null --limit-rate 8M -X PUT --data-binary "@$WORK/big" "$API_URL/objects/large/aborted.bin") 2>/dev/null || true
assert_eq 404 "$(api_code "$WORK/resp" /objects/large/aborted.bin)" "status of the aborted upload"
leak() { [ "$(shard_files)" -le "$before" ]; }
wait_until 30 leak || fail "aborted upload leaked shards: $(shard_files) shard files, $before before"
api '/objects?prefix=large/' -o "$WORK/list"
jq -e '.objects == ["large/big.bin"]' "$WORK/list" >/dev/null || fail "listing after aborted upload: $(cat "$WORK/list")"

stop_daemon
echo "PASS: $TEST_NAME"
