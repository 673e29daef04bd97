#!/usr/bin/env bash
# S3 multipart uploads with boto3 (venv under target/, as test_s3_api.sh) on
# the default 4 MiB chunks: 21 MiB in 5 MiB parts (re-encoded at Complete)
# and 16 MiB + a bit in 8 MiB parts (the parts' chunks move into the object:
# no shard byte written at Complete), each read back by SHA-256 over S3,
# through the mount and over the HTTP API; nothing of an upload in progress
# in the mount, the HTTP API listing or ListObjectsV2; an aborted upload's
# shards collected (shard counts back to before); kill -9 during an upload
# loses no completed object and the upload goes on after the restart; an
# upload left alone is swept after s3.multipart_max_age_secs.
# Needs FUSE (fails under MINIGCS_REQUIRE_FUSE=1 without it).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

need_fuse
command -v jq >/dev/null || fail "jq is needed"

s3_clients_venv

MiB=$((1024 * 1024))
S3_PORT=$(pick_port)
S3_URL="http://127.0.0.1:$S3_PORT"
ACCESS=test-access-key
SECRET=test-secret-key-0123456789
CFG_CHUNK=$((4 * MiB))
start_daemon_with_s3

mp() { "$VENV/bin/python" "$LIB_DIR/s3_multipart_check.py" "$S3_URL" "$ACCESS" "$SECRET" "$@"; }
# Sums over the nodes from `ctl stats --json`.
shards_total() { ctlj stats | jq '[.node_stats[].shards] | add'; }
shards_are() { [ "$(shards_total)" = "$1" ]; }
shard_bytes_written() { ctlj stats | jq '[.node_stats[].shard_bytes_written] | add'; }
# the object's SHA-256 over S3, through the mount and over the HTTP API
same_everywhere() { # same_everywhere BUCKET KEY SOURCE
    local want
    want=$(sha_of "$3")
    mp get "$1" "$2" "$WORK/back.bin" || fail "GetObject $1/$2 failed"
    assert_eq "$want" "$(sha_of "$WORK/back.bin")" "$1/$2 over S3"
    assert_eq "$want" "$(sha_of "$MNT/$1/$2")" "$1/$2 through the mount"
    api "/objects/$1/$2" -o "$WORK/back-api.bin"
    assert_eq "$want" "$(sha_of "$WORK/back-api.bin")" "$1/$2 over the HTTP API"
}
# nothing but the buckets at the root, nothing but these keys in bucket multi
only_objects() { # only_objects KEYS...
    assert_eq ". .. multi" "$(ls -a "$MNT" | tr '\n' ' ' | sed 's/ $//')" "ls -a of the mount root"
    assert_eq ". .. $*" "$(ls -a "$MNT/multi" | tr '\n' ' ' | sed 's/ $//')" "ls -a of the bucket"
    assert_eq "$*" "$(mp keys multi)" "ListObjectsV2 of the bucket"
    assert_eq "$(printf '%s\n' "$@" | sed 's|^|multi/|' | jq -R . | jq -sc .)" \
        "$(api /objects | jq -c .objects)" "the HTTP API listing"
}

mkdir "$MNT/multi"
mkrand "$WORK/five.bin" $((21 * MiB))
mkrand "$WORK/eight.bin" $((16 * MiB + 12345))
mkrand "$WORK/later.bin" $((24 * MiB))

say "21 MiB in 5 MiB parts (not whole chunks: re-encoded at Complete)"
mp put multi five.bin "$WORK/five.bin" $((5 * MiB)) || fail "boto3 upload in 5 MiB parts failed"
same_everywhere multi five.bin "$WORK/five.bin"
grep -q "as multi/five.bin (.*chunks rewritten)" "$DAEMON_LOG" || fail "the 5 MiB parts were not re-encoded: $(grep 'parts completed' "$DAEMON_LOG")"

say "16 MiB + 12345 in 8 MiB parts: nothing of the upload shows until Complete"
id=$(mp start multi eight.bin "$WORK/eight.bin" $((8 * MiB)) 3) || fail "uploading 3 parts failed"
assert_eq "1 2 3" "$(mp parts multi eight.bin "$id")" "ListParts"
assert_eq "$id" "$(mp uploads multi)" "ListMultipartUploads"
only_objects five.bin

say "Complete moves the parts' chunks: no shard byte written"
written=$(shard_bytes_written)
shards=$(shards_total)
mp finish multi eight.bin "$id" "$WORK/eight.bin" $((8 * MiB)) || fail "completing the 8 MiB-part upload failed"
assert_eq "$written" "$(shard_bytes_written)" "shard bytes written by Complete"
assert_eq "$shards" "$(shards_total)" "shards after Complete"
grep -q "as multi/eight.bin (.*chunks moved)" "$DAEMON_LOG" || fail "the 8 MiB parts were not moved: $(grep 'parts completed' "$DAEMON_LOG")"
same_everywhere multi eight.bin "$WORK/eight.bin"
assert_eq "" "$(mp uploads multi)" "uploads left after Complete"
only_objects eight.bin five.bin

say "an aborted upload leaves no shard once collected"
before=$(shards_total)
id=$(mp start multi aborted.bin "$WORK/later.bin" $((8 * MiB)) 3) || fail "uploading parts to abort failed"
[ "$(shards_total)" -gt "$before" ] || fail "the parts added no shard"
mp abort multi aborted.bin "$id" || fail "AbortMultipartUpload failed"
wait_until 20 shards_are "$before" || fail "shards after abort: $(shards_total), before: $before"
only_objects eight.bin five.bin

say "kill -9 during an upload: completed objects kept, the upload goes on"
id=$(mp start multi later.bin "$WORK/later.bin" $((8 * MiB)) 2) || fail "uploading 2 parts failed"
kill9_daemon
start_daemon mount
wait_until 10 curl -s -o /dev/null "$S3_URL/" || fail "the S3 port does not answer after the restart"
same_everywhere multi five.bin "$WORK/five.bin"
same_everywhere multi eight.bin "$WORK/eight.bin"
only_objects eight.bin five.bin
assert_eq "1 2" "$(mp parts multi later.bin "$id")" "parts stored before kill -9"
mp finish multi later.bin "$id" "$WORK/later.bin" $((8 * MiB)) || fail "finishing the upload after kill -9 failed"
same_everywhere multi later.bin "$WORK/later.bin"
only_objects eight.bin five.bin later.bin
stop_daemon

say "an upload left alone is swept after s3.multipart_max_age_secs, with no other request"
CFG_EXTRA="$CFG_EXTRA
  multipart_max_age_secs: 2"
write_config
start_daemon mount
wait_until 10 curl -s -o /dev/null "$S3_URL/" || fail "the S3 port does not answer after the restart"
before=$(shards_total)
id=$(mp start multi left.bin "$WORK/later.bin" $((8 * MiB)) 1) || fail "uploading a part to leave failed"
[ "$(shards_total)" -gt "$before" ] || fail "the part added no shard"
no_uploads() { [ -z "$(mp uploads multi)" ]; }
wait_until 15 no_uploads || fail "the upload left alone was not swept: $(mp uploads multi)"
wait_until 20 shards_are "$before" || fail "shards after the sweep: $(shards_total), before: $before"
only_objects eight.bin five.bin later.bin

stop_daemon
echo "PASS: $TEST_NAME"
