#!/usr/bin/env bash
# A GET never passes off a broken object as a whole one:
#  - an object whose first chunk cannot be reconstructed (k=2, m=1: two of
#    its three shard files deleted) answers 503 with a JSON detail, for the
#    whole object and for ranges, before any byte is sent;
#  - an object whose last chunk cannot be reconstructed starts as a 200 but
#    the transfer fails (curl exits non-zero), never a clean short body;
#  - the readable chunks of both are still served.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# Shard files are damaged or counted directly: every shard in its own file.
CFG_SEGMENT_MAX_SHARD=0
write_config

start_daemon serve
C=$CFG_CHUNK
SIZE=$((3 * C + 100))

# lose_chunk KEY INDEX: delete two of the three shard files of one chunk.
lose_chunk() {
    local lost=0 node id idx
    while read -r node id idx; do
        rm -- "$(node_dir "${node#node-}")/shards/${id: -2}/$id.$idx.shard"
        lost=$((lost + 1))
    done < <(ctlj info "$1" | jq -r --argjson i "$2" \
        '.chunks[] | select(.index == $i) | .chunk_id as $c | .shards[:2][] | "\(.node) \($c) \(.index)"')
    assert_eq 2 "$lost" "shard files deleted of chunk $2 of $1"
}

say "objects of four chunks; first chunk of one and last chunk of another lost"
mkrand "$WORK/src" "$SIZE"
for key in broken/head broken/tail; do
    api "/objects/$key" -X PUT --data-binary "@$WORK/src" --fail -o /dev/null || fail "PUT $key"
done
lose_chunk broken/head 0
lose_chunk broken/tail 3

say "first chunk unreadable: 503 before any byte, whole and ranged"
for range in "" "0-" "10-$((2 * C))" "0-99" "$((C - 1))-$C"; do
    args=()
    [ -z "$range" ] || args=(-r "$range")
    code=$(api_code "$WORK/got" /objects/broken/head "${args[@]}") || fail "curl failed on a 503 (range '$range')"
    assert_eq 503 "$code" "status of GET broken/head (range '$range')"
    jq -e '.detail | test("not enough healthy shards")' "$WORK/got" >/dev/null ||
        fail "503 body (range '$range'): $(head -c 300 "$WORK/got")"
done
code=$(api_code "$WORK/got" /objects/broken/head -r "$C-")
assert_eq 206 "$code" "ranged GET of the readable chunks of broken/head"
cmp -s "$WORK/got" <(tail -c +$((C + 1)) "$WORK/src") || fail "readable tail of broken/head has wrong bytes"

say "last chunk unreadable: the transfer fails, never a clean short body"
rc=0
code=$(api_code "$WORK/got" /objects/broken/tail) || rc=$?
echo "GET broken/tail: status $code, curl exit $rc, $(stat -c %s "$WORK/got") of $SIZE bytes"
[ "$rc" -ne 0 ] || fail "GET broken/tail ended cleanly with status $code and $(stat -c %s "$WORK/got") bytes"
[ "$(stat -c %s "$WORK/got")" -lt "$SIZE" ] || fail "GET broken/tail delivered every byte of a lost chunk"
cmp -s "$WORK/got" <(head -c "$(stat -c %s "$WORK/got")" "$WORK/src") || fail "bytes before the failure are wrong"
rc=0
api_code "$WORK/got" /objects/broken/tail -r "$((C / 2))-" >/dev/null || rc=$?
[ "$rc" -ne 0 ] || fail "ranged GET over the lost chunk ended cleanly"
code=$(api_code "$WORK/got" /objects/broken/tail -r "0-$((3 * C - 1))")
assert_eq 206 "$code" "ranged GET of the readable chunks of broken/tail"
cmp -s "$WORK/got" <(head -c $((3 * C)) "$WORK/src") || fail "readable head of broken/tail has wrong bytes"

say "the daemon still serves everything else"
api "/objects/x" -X PUT --data-binary "fine" --fail -o /dev/null
assert_eq fine "$(api /objects/x --fail)" "a healthy object after the failures"

stop_daemon
echo "PASS: $TEST_NAME"
