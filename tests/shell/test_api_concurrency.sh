#!/usr/bin/env bash
# 32 concurrent clients upload and download distinct keys (each verified);
# 8 clients race on one key with distinct full-content versions while readers
# download it: every read returns exactly one complete version, never a mix.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start_daemon serve
C=$CFG_CHUNK
D=$WORK/c
mkdir -p "$D"

say "32 concurrent clients, distinct keys"
for i in $(seq 1 32); do
    mkrand "$D/src_$i" $(( (i * 104729) % (3 * C) + i ))
done
pids=()
for i in $(seq 1 32); do
    (
        set -e
        if (( i % 2 )); then
            curl -sS --fail -o /dev/null -X PUT --data-binary "@$D/src_$i" "$API_URL/objects/conc/key_$i"
        else
            curl -sS --fail -o /dev/null -F "file=@$D/src_$i" "$API_URL/objects/conc/key_$i"
        fi
        for r in 1 2; do
            curl -sS --fail -o "$D/got_${i}_$r" "$API_URL/objects/conc/key_$i"
            cmp -s "$D/src_$i" "$D/got_${i}_$r" || { echo "client $i read $r: wrong bytes" >&2; exit 1; }
        done
    ) &
    track_bg $! pids
done
wait_jobs "${pids[@]}"
[ "$FAILED" = 0 ] || fail "$FAILED of 32 clients failed"
api '/objects?prefix=conc/' -o "$D/list"
assert_eq 32 "$(jq .count "$D/list")" "objects listed under conc/"

say "8 writers racing on one key (3 uploads each) with 4 readers"
declare -A VERSION_SHA
for v in $(seq 0 8); do
    mkrand "$D/ver_$v" $((2 * C + 1000 + v))
    VERSION_SHA[$(sha_of "$D/ver_$v")]=$v
done
curl -sS --fail -o /dev/null -X PUT --data-binary "@$D/ver_0" "$API_URL/objects/race/key"
pids=()
for v in $(seq 1 8); do
    (
        set -e
        for r in 1 2 3; do
            curl -sS --fail -o /dev/null -X PUT --data-binary "@$D/ver_$v" "$API_URL/objects/race/key"
        done
    ) &
    track_bg $! pids
done
rpids=()
for r in 1 2 3 4; do
    (
        set -e
        for n in $(seq 1 10); do
            curl -sS --fail -o "$D/read_${r}_$n" "$API_URL/objects/race/key"
        done
    ) &
    track_bg $! rpids
done
wait_jobs "${pids[@]}"
[ "$FAILED" = 0 ] || fail "$FAILED racing writers failed"
wait_jobs "${rpids[@]}"
[ "$FAILED" = 0 ] || fail "$FAILED readers failed"
for f in "$D"/read_*; do
    s=$(sha_of "$f")
    [ -n "${VERSION_SHA[$s]:-}" ] || fail "a concurrent read returned a mix / partial object ($(stat -c %s "$f") bytes, $f)"
done
echo "$(ls "$D"/read_* | wc -l) concurrent reads, each one complete version"
api /objects/race/key -o "$D/final"
final_sha=$(sha_of "$D/final")
[ -n "${VERSION_SHA[$final_sha]:-}" ] || fail "final object is not one of the versions"
api /objects/race/key/info -o "$D/info"
assert_eq "$final_sha" "$(jq -r .checksum "$D/info")" "info.checksum of the final version"

say "cluster still healthy and scrub clean"
assert_eq healthy "$(ctlj health | jq -r .status)" "health status"
out=$(ctlj scrub)
assert_eq 0 "$(jq -r .corrupt <<<"$out")" "scrub corrupt"
assert_eq 0 "$(jq -r .missing <<<"$out")" "scrub missing"

stop_daemon
echo "PASS: $TEST_NAME"
