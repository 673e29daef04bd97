#!/usr/bin/env bash
# The S3 API (s3: in the config) with real clients from PyPI (boto3 and the
# AWS CLI, in a venv under target/): boto3 with its default settings (bodies
# aws-chunked with CRC trailers) doing buckets, put/get/head, ranges and
# conditions, copies, delete_objects, paged listings with a delimiter,
# presigned GET, wrong secret and unknown key refused, bad digests and bad
# keys refused; `aws s3 sync` of 500 files up and back with identical
# SHA-256 sums; `aws s3 mv` between buckets; an object written over S3 read
# through the mount and the HTTP API, and files written through the mount
# and the HTTP API read over S3 (ETag = MD5, computed for mount files).
# Needs FUSE for the mount part (fails under MINIGCS_REQUIRE_FUSE=1 without it).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

need_fuse
command -v jq >/dev/null || fail "jq is needed"

# ---- clients from PyPI, installed once into a venv under target/ ----------
VENV=${MINIGCS_S3_VENV:-$REPO_ROOT/target/s3-venv}
say "boto3 and awscli from PyPI in $VENV"
if [ ! -x "$VENV/bin/aws" ] || ! "$VENV/bin/python" -c 'import boto3' 2>/dev/null; then
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        apt-get install -y --no-install-recommends python3-venv >/dev/null 2>&1 ||
            fail "python3 -m venv failed and python3-venv could not be installed"
        python3 -m venv "$VENV" || fail "python3 -m venv failed"
    fi
    "$VENV/bin/pip" install -q --disable-pip-version-check boto3 awscli >"$WORK/pip.log" 2>&1 ||
        { tail -n 20 "$WORK/pip.log" >&2; fail "pip install boto3 awscli failed"; }
fi
PY=$VENV/bin/python
AWS=$VENV/bin/aws

S3_PORT=$(pick_port)
S3_URL="http://127.0.0.1:$S3_PORT"
ACCESS=test-access-key
SECRET=test-secret-key-0123456789
CFG_EXTRA="s3:
  enabled: true
  port: $S3_PORT
  access_key: \"$ACCESS\"
  secret_key: \"$SECRET\""
write_config
start_daemon mount
wait_until 10 curl -s -o /dev/null "$S3_URL/" || fail "the S3 port does not answer"

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

say "completed and aborted multipart uploads leave no staging behind"
left=$(find "$MNT/.s3-uploads" -mindepth 1 2>/dev/null | head -5)
[ -z "$left" ] || fail "staged uploads left in the namespace: $left"

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
left=$(find "$MNT/.s3-uploads" -mindepth 1 2>/dev/null | head -5)
[ -z "$left" ] || fail "staged uploads left after the sweep and abort: $left"

stop_daemon
echo "PASS: $TEST_NAME"
