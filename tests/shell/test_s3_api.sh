#!/usr/bin/env bash
# The S3 API (s3: in the config) with real clients: boto3 and the AWS CLI
# from PyPI (in a venv under target/), rclone and s3cmd from Debian. boto3
# with its default settings doing buckets, put/get/head, ranges and
# conditions, copies, delete_objects, paged listings with a delimiter,
# presigned GET, multipart (21 MiB in 5 MiB parts, and by hand), CRC32 as a
# header and as an aws-chunked trailer, wrong secret and unknown key
# refused, bad digests and bad keys refused; `aws s3 sync` of 500 files up
# and back with identical SHA-256 sums; `aws s3 mv` between buckets; `rclone
# copy` + `rclone check` (sizes and MD5s) + listing of the same tree; s3cmd
# put/get/ls/del; an object written over S3 read through the mount and the
# HTTP API, and files written through both read over S3 (ETag = MD5,
# computed for mount files); kill -9 during a multipart upload; abandoned
# uploads swept.
# Needs FUSE for the mount part (fails under MINIGCS_REQUIRE_FUSE=1 without it).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

need_fuse
command -v jq >/dev/null || fail "jq is needed"

# ---- clients from PyPI, installed once into a venv under target/ ----------
s3_clients_venv
PY=$VENV/bin/python
AWS=$VENV/bin/aws

S3_PORT=$(pick_port)
S3_URL="http://127.0.0.1:$S3_PORT"
ACCESS=test-access-key
SECRET=test-secret-key-0123456789
start_daemon_with_s3

say "anonymous requests are refused"
code=$(curl -s -o "$WORK/anon.xml" -w '%{http_code}' "$S3_URL/")
assert_eq 403 "$code" "anonymous ListBuckets status"
grep -q '<Code>AccessDenied</Code>' "$WORK/anon.xml" || fail "anonymous: $(cat "$WORK/anon.xml")"

say "boto3 with default settings"
"$PY" "$LIB_DIR/s3_boto_check.py" "$S3_URL" "$ACCESS" "$SECRET" "$WORK" >"$WORK/boto.out" 2>&1 ||
    { cat "$WORK/boto.out" >&2; fail "boto3 checks failed"; }
tail -n 1 "$WORK/boto.out" | grep -q "boto3 checks passed" || { cat "$WORK/boto.out" >&2; fail "boto3 checks did not finish"; }

export AWS_ACCESS_KEY_ID=$ACCESS AWS_SECRET_ACCESS_KEY=$SECRET AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=$WORK/aws-config AWS_SHARED_CREDENTIALS_FILE=$WORK/aws-creds
aws_s3() { "$AWS" --endpoint-url "$S3_URL" "$@"; }

say "an object written over S3 is the same file in the mount and over the HTTP API"
mkrand "$WORK/s3-made.bin" 2500000
aws_s3 s3api put-object --bucket alpha --key from-s3/data.bin --body "$WORK/s3-made.bin" >"$WORK/put.json"
assert_eq "$(sha_of "$WORK/s3-made.bin")" "$(sha_of "$MNT/alpha/from-s3/data.bin")" "S3 object read through the mount"
api /objects/alpha/from-s3/data.bin -o "$WORK/via-api.bin"
assert_eq "$(sha_of "$WORK/s3-made.bin")" "$(sha_of "$WORK/via-api.bin")" "S3 object read over the HTTP API"
getfattr -n user.s3.meta.mtime "$MNT/alpha/dir/one.bin" 2>/dev/null | grep -q 1700000000.5 ||
    fail "x-amz-meta-mtime is not the xattr user.s3.meta.mtime: $(getfattr -d "$MNT/alpha/dir/one.bin" 2>&1)"

say "files written through the mount and the HTTP API are objects over S3 (ETag = MD5)"
mkdir -p "$MNT/alpha/from-mount"
mkrand "$WORK/m.bin" 1300000
cp "$WORK/m.bin" "$MNT/alpha/from-mount/m.bin"
mkrand "$WORK/a.bin" 700000
api /objects/alpha/from-api/a.bin -X PUT --data-binary @"$WORK/a.bin" >/dev/null
for pair in "from-mount/m.bin:$WORK/m.bin" "from-api/a.bin:$WORK/a.bin"; do
    key=${pair%%:*} src=${pair#*:}
    aws_s3 s3api get-object --bucket alpha --key "$key" "$WORK/got.bin" >"$WORK/get.json"
    assert_eq "$(sha_of "$src")" "$(sha_of "$WORK/got.bin")" "$key read over S3"
    assert_eq "\"$(md5sum "$src" | cut -d' ' -f1)\"" "$(jq -r .ETag "$WORK/get.json")" "$key ETag"
done
aws_s3 s3 ls s3://alpha/from-mount/ | grep -q 'm.bin' || fail "aws s3 ls does not show the mount's file"

say "a listing reads no file content: a mount file's unknown MD5 is a provisional ETag, computed in the background"
mkrand "$WORK/fresh.bin" 900000
cp "$WORK/fresh.bin" "$MNT/alpha/from-mount/fresh.bin"
listed_etag() { aws_s3 s3api list-objects-v2 --bucket alpha --prefix from-mount/fresh.bin | jq -r '.Contents[0].ETag'; }
provisional=$(listed_etag)
[[ $provisional =~ ^\"[0-9a-f]{32}-1\"$ ]] || fail "first listing of a mount file: ETag $provisional is not provisional"
aws_s3 s3api head-object --bucket alpha --key from-mount/fresh.bin --if-match "$provisional" >/dev/null ||
    fail "If-Match with the provisional ETag of the same version refused"
fresh_md5="\"$(md5sum "$WORK/fresh.bin" | cut -d' ' -f1)\""
listed_md5() { [ "$(listed_etag)" = "$fresh_md5" ]; }
wait_until 10 listed_md5 || fail "the MD5 was not computed in the background: listed $(listed_etag)"
ls "$MNT" | grep -qx paged || fail "a bucket made over S3 is not a directory in the mount: $(ls "$MNT")"

say "aws s3 sync of 500 files up and back"
mkdir -p "$WORK/tree"
python3 - "$WORK/tree" <<'PY'
import os, random, sys
root = sys.argv[1]
rnd = random.Random(7)
for i in range(500):
    d = os.path.join(root, f"d{i % 10}", f"s{i % 3}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}.dat"), "wb") as f:
        f.write(rnd.randbytes(rnd.randint(0, 20000)))
PY
aws_s3 s3 mb s3://synced >/dev/null
aws_s3 s3 sync --only-show-errors "$WORK/tree" s3://synced/tree || fail "aws s3 sync up failed"
aws_s3 s3 sync --only-show-errors s3://synced/tree "$WORK/back" || fail "aws s3 sync down failed"
(cd "$WORK/tree" && find . -type f -exec sha256sum {} + | sort -k2) >"$WORK/sums.up"
(cd "$WORK/back" && find . -type f -exec sha256sum {} + | sort -k2) >"$WORK/sums.back"
assert_eq 500 "$(wc -l <"$WORK/sums.up")" "files in the tree"
cmp -s "$WORK/sums.up" "$WORK/sums.back" || fail "the tree synced back differs: $(diff "$WORK/sums.up" "$WORK/sums.back" | head)"
(cd "$MNT/synced/tree" && find . -type f -exec sha256sum {} + | sort -k2) >"$WORK/sums.mnt"
cmp -s "$WORK/sums.up" "$WORK/sums.mnt" || fail "the synced tree in the mount differs"
out=$(aws_s3 s3 sync --dryrun "$WORK/tree" s3://synced/tree)
[ -z "$out" ] || fail "a second sync would upload again: $(echo "$out" | head -3)"

say "aws s3 mv between buckets"
aws_s3 s3 mv --only-show-errors s3://alpha/from-s3/data.bin s3://beta/moved/data.bin || fail "aws s3 mv failed"
[ ! -e "$MNT/alpha/from-s3/data.bin" ] || fail "the source of mv is still in the mount"
assert_eq "$(sha_of "$WORK/s3-made.bin")" "$(sha_of "$MNT/beta/moved/data.bin")" "moved object through the mount"

say "rclone copy, check and listing of the same tree"
for tool in rclone:rclone s3cmd:s3cmd; do
    command -v "${tool%%:*}" >/dev/null ||
        apt-get install -y --no-install-recommends "${tool#*:}" >/dev/null 2>&1 ||
        fail "${tool%%:*} is missing and apt-get install ${tool#*:} failed"
done
rclone_s3() {
    env -u AWS_CA_BUNDLE RCLONE_CONFIG=/dev/null RCLONE_CONFIG_MG_TYPE=s3 RCLONE_CONFIG_MG_PROVIDER=Other \
        RCLONE_CONFIG_MG_ACCESS_KEY_ID="$ACCESS" RCLONE_CONFIG_MG_SECRET_ACCESS_KEY="$SECRET" \
        RCLONE_CONFIG_MG_ENDPOINT="$S3_URL" RCLONE_CONFIG_MG_REGION=us-east-1 \
        rclone --retries 1 --low-level-retries 1 "$@"
}
rclone_s3 mkdir mg:rclone-b || fail "rclone mkdir failed"
rclone_s3 copy "$WORK/tree" mg:rclone-b/tree 2>"$WORK/rclone.err" || { cat "$WORK/rclone.err" >&2; fail "rclone copy failed"; }
rclone_s3 check "$WORK/tree" mg:rclone-b/tree >"$WORK/rclone-check.out" 2>&1 ||
    { tail -n 20 "$WORK/rclone-check.out" >&2; fail "rclone check found differences"; }
grep -q "0 differences found" "$WORK/rclone-check.out" || fail "rclone check: $(tail -n 5 "$WORK/rclone-check.out")"
grep -q "500 matching files" "$WORK/rclone-check.out" || fail "rclone check did not compare 500 files (by size and MD5): $(tail -n 5 "$WORK/rclone-check.out")"
assert_eq 500 "$(rclone_s3 lsf -R --files-only mg:rclone-b/tree | wc -l)" "files rclone lists"
assert_eq 10 "$(rclone_s3 lsf --dirs-only mg:rclone-b/tree | wc -l)" "folders rclone lists at the top of the tree"
rclone_s3 lsjson --hash mg:rclone-b/tree/d3/s0 | jq -e 'length > 0 and all(.[]; .Hashes.md5 | length == 32)' >/dev/null ||
    fail "rclone sees no MD5 hashes: $(rclone_s3 lsjson --hash mg:rclone-b/tree/d3/s0 | head -c 300)"
(cd "$MNT/rclone-b/tree" && find . -type f -exec sha256sum {} + | sort -k2) >"$WORK/sums.rclone"
cmp -s "$WORK/sums.up" "$WORK/sums.rclone" || fail "the tree rclone copied differs in the mount"
say "rclone check of a tree written through the mount (MD5s not known yet when listed)"
mkdir "$MNT/rclone-m"
cp -r "$WORK/tree" "$MNT/rclone-m/tree"
cp -r "$WORK/tree" "$WORK/tree-changed"
f=$(find "$WORK/tree-changed" -type f -size +1k -print -quit)
head -c "$(stat -c %s "$f")" /dev/urandom >"$f"
rclone_s3 check "$WORK/tree-changed" mg:rclone-m/tree >"$WORK/rclone-m.out" 2>&1 && fail "rclone check missed a changed file"
grep -q "1 differences found" "$WORK/rclone-m.out" || fail "rclone check of a changed file: $(tail -n 5 "$WORK/rclone-m.out")"
rclone_s3 check "$WORK/tree" mg:rclone-m/tree >"$WORK/rclone-m.out" 2>&1 ||
    { tail -n 20 "$WORK/rclone-m.out" >&2; fail "rclone check of the mount's tree found differences"; }
grep -q "500 matching files" "$WORK/rclone-m.out" || fail "rclone check of the mount's tree: $(tail -n 5 "$WORK/rclone-m.out")"

say "s3cmd put, get, ls, del (20 MiB: s3cmd's own multipart upload)"
cat >"$WORK/s3cfg" <<EOF2
[default]
access_key = $ACCESS
secret_key = $SECRET
host_base = 127.0.0.1:$S3_PORT
host_bucket = 127.0.0.1:$S3_PORT
use_https = False
bucket_location = us-east-1
signature_v2 = False
EOF2
s3c() { s3cmd -c "$WORK/s3cfg" "$@"; }
mkrand "$WORK/s3cmd-small" 12345
mkrand "$WORK/s3cmd-big" $((20 * 1024 * 1024))
s3c mb s3://s3cmd-b >/dev/null || fail "s3cmd mb failed"
s3c put "$WORK/s3cmd-small" s3://s3cmd-b/small >/dev/null || fail "s3cmd put failed"
s3c put "$WORK/s3cmd-big" s3://s3cmd-b/dir/big >/dev/null || fail "s3cmd put (multipart) failed"
s3c get --force s3://s3cmd-b/dir/big "$WORK/s3cmd-big.back" >/dev/null || fail "s3cmd get failed"
assert_eq "$(sha_of "$WORK/s3cmd-big")" "$(sha_of "$WORK/s3cmd-big.back")" "s3cmd get of its multipart upload"
assert_eq "$(sha_of "$WORK/s3cmd-small")" "$(sha_of "$MNT/s3cmd-b/small")" "s3cmd put read through the mount"
s3c ls s3://s3cmd-b/ >"$WORK/s3cmd-ls.out" || fail "s3cmd ls failed"
grep -q "s3://s3cmd-b/small" "$WORK/s3cmd-ls.out" && grep -q "DIR.*s3://s3cmd-b/dir/" "$WORK/s3cmd-ls.out" ||
    fail "s3cmd ls: $(cat "$WORK/s3cmd-ls.out")"
s3c del s3://s3cmd-b/small s3://s3cmd-b/dir/big >/dev/null || fail "s3cmd del failed"
[ ! -e "$MNT/s3cmd-b/small" ] || fail "s3cmd del left the file in the mount"
s3c rb s3://s3cmd-b >/dev/null 2>&1 || true

say "completed and aborted multipart uploads leave nothing in the namespace"
left=$(find "$MNT" -maxdepth 1 -name '.*' | head -5)
[ -z "$left" ] || fail "hidden entries at the root of the mount: $left"

say "metrics name the S3 operations"
ctlj metrics >"$WORK/metrics.json" 2>/dev/null || api /metrics/summary >"$WORK/metrics.json"
for op in s3_put_object s3_get_object s3_list_objects_v2 s3_copy_object; do
    grep -q "\"$op\"" "$WORK/metrics.json" || fail "metrics do not name $op: $(head -c 600 "$WORK/metrics.json")"
done

s3_check() { "$PY" "$LIB_DIR/s3_boto_check.py" "$S3_URL" "$ACCESS" "$SECRET" "$WORK" "$@"; }

say "kill -9 during a multipart upload loses no stored part"
upload_id=$(s3_check mpu-start 2>"$WORK/mpu.err" | tail -n 1) || { cat "$WORK/mpu.err" >&2; fail "starting the multipart upload failed"; }
kill9_daemon
start_daemon mount
wait_until 10 curl -s -o /dev/null "$S3_URL/" || fail "the S3 port does not answer after the restart"
s3_check mpu-finish "$upload_id" >"$WORK/mpu.out" 2>&1 || { cat "$WORK/mpu.out" >&2; fail "finishing the upload after kill -9 failed"; }
assert_eq "$(cat "$WORK"/crash-part-1 "$WORK"/crash-part-2 | sha256sum | cut -d' ' -f1)" \
    "$(sha_of "$MNT/mpu/crash.bin")" "the completed upload through the mount"
stop_daemon

say "abandoned multipart uploads are removed after s3.multipart_max_age_secs"
CFG_EXTRA="$CFG_EXTRA
  multipart_max_age_secs: 2"
write_config
start_daemon mount
wait_until 10 curl -s -o /dev/null "$S3_URL/" || fail "the S3 port does not answer after the restart"
s3_check mpu-sweep >"$WORK/sweep.out" 2>&1 || { cat "$WORK/sweep.out" >&2; fail "sweep checks failed"; }
left=$(find "$MNT" -maxdepth 1 -name '.*' | head -5)
[ -z "$left" ] || fail "hidden entries at the root of the mount after the sweep and abort: $left"

stop_daemon
echo "PASS: $TEST_NAME"
