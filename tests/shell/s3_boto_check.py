"""boto3 with its default settings against minigcs's S3 API.

Usage: s3_boto_check.py ENDPOINT ACCESS_KEY SECRET_KEY WORKDIR [MODE [UPLOAD_ID]]
MODE "all" (default): every check; "mpu-start": start a multipart upload of
bucket mpu, key crash.bin with two 5 MiB parts (their bytes in
WORKDIR/crash-part-N), print the upload id; "mpu-finish ID": the parts are
still listed, completing gives the bytes and the multipart ETag.
Each check raises on a wrong answer; the last line printed is "boto3 checks passed".
"""
import hashlib
import os
import sys
import urllib.request
import urllib.error

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, access, secret, work = sys.argv[1:5]
mode = sys.argv[5] if len(sys.argv) > 5 else "all"
MiB = 1 << 20


def multipart_etag(parts):
    inner = b"".join(hashlib.md5(p).digest() for p in parts)
    return f"{hashlib.md5(inner).hexdigest()}-{len(parts)}"


def client(secret_key=secret, access_key=access):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )


def code_of(call):
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError("the call succeeded but should have failed")


def code_or_ok(call):
    try:
        call()
        return "ok"
    except ClientError as e:
        return e.response["Error"]["Code"]


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what)


s3 = client()
print("botocore", botocore.__version__)

if mode == "mpu-start":
    try:
        s3.create_bucket(Bucket="mpu")
    except ClientError:
        pass
    up = s3.create_multipart_upload(Bucket="mpu", Key="crash.bin")["UploadId"]
    for n in (1, 2):
        data = os.urandom(5 * MiB)
        with open(os.path.join(work, f"crash-part-{n}"), "wb") as f:
            f.write(data)
        s3.upload_part(Bucket="mpu", Key="crash.bin", UploadId=up, PartNumber=n, Body=data)
    print(up)
    sys.exit(0)

if mode == "mpu-sweep":
    # Run with s3.multipart_max_age_secs: 2. An upload left alone is removed
    # when a later one starts after that age; the later one stays.
    old = s3.create_multipart_upload(Bucket="mpu", Key="old.bin")["UploadId"]
    s3.upload_part(Bucket="mpu", Key="old.bin", UploadId=old, PartNumber=1, Body=b"abandoned")
    import time
    time.sleep(3)
    new = s3.create_multipart_upload(Bucket="mpu", Key="new.bin")["UploadId"]
    check(code_of(lambda: s3.list_parts(Bucket="mpu", Key="old.bin", UploadId=old)) == "NoSuchUpload",
          "an abandoned upload is swept after s3.multipart_max_age_secs")
    ups = [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="mpu").get("Uploads", [])]
    check(ups == [new], f"the new upload stays: {ups}")
    s3.abort_multipart_upload(Bucket="mpu", Key="new.bin", UploadId=new)
    print("boto3 checks passed")
    sys.exit(0)

if mode == "mpu-finish":
    up = sys.argv[6]
    parts = s3.list_parts(Bucket="mpu", Key="crash.bin", UploadId=up)["Parts"]
    check([p["PartNumber"] for p in parts] == [1, 2], "both parts survived the kill")
    datas = [open(os.path.join(work, f"crash-part-{n}"), "rb").read() for n in (1, 2)]
    done = s3.complete_multipart_upload(
        Bucket="mpu", Key="crash.bin", UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]})
    check(done["ETag"].strip('"') == multipart_etag(datas), "multipart ETag after the restart")
    check(s3.get_object(Bucket="mpu", Key="crash.bin")["Body"].read() == b"".join(datas), "bytes after the restart")
    print("boto3 checks passed")
    sys.exit(0)

# Buckets
s3.create_bucket(Bucket="alpha")
s3.create_bucket(Bucket="beta")
names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
check({"alpha", "beta"} <= set(names), f"list_buckets shows alpha and beta: {names}")
check(code_of(lambda: s3.create_bucket(Bucket="alpha")) == "BucketAlreadyOwnedByYou", "create twice")
check(code_of(lambda: s3.create_bucket(Bucket="Bad_Name")) == "InvalidBucketName", "bad bucket name")
check(code_of(lambda: s3.head_bucket(Bucket="nope-missing")) in ("404", "NoSuchBucket"), "head missing bucket")
loc = s3.get_bucket_location(Bucket="alpha").get("LocationConstraint")
check(loc in (None, "", "us-east-1"), f"bucket location {loc!r}")

# Put/get/head with metadata, content type, Content-MD5 (boto3 default:
# aws-chunked body with a CRC trailer)
data = os.urandom(300_000)
md5 = hashlib.md5(data).hexdigest()
put = s3.put_object(Bucket="alpha", Key="dir/one.bin", Body=data, ContentType="application/x-test",
                    Metadata={"mtime": "1700000000.5", "Owner": "me"})
check(put["ETag"].strip('"') == md5, "PUT ETag is the MD5 of the bytes")
got = s3.get_object(Bucket="alpha", Key="dir/one.bin")
body = got["Body"].read()
check(body == data, "GET returns the bytes")
check(got["ETag"].strip('"') == md5, "GET ETag")
check(got["ContentType"] == "application/x-test", "Content-Type kept")
check(got["Metadata"] == {"mtime": "1700000000.5", "owner": "me"}, f"metadata kept: {got['Metadata']}")
head = s3.head_object(Bucket="alpha", Key="dir/one.bin")
check(head["ContentLength"] == len(data) and head["ETag"].strip('"') == md5, "HEAD size and ETag")

# Range and conditions
part = s3.get_object(Bucket="alpha", Key="dir/one.bin", Range="bytes=1000-1999")
check(part["Body"].read() == data[1000:2000], "Range bytes=1000-1999")
check(part["ContentRange"] == f"bytes 1000-1999/{len(data)}", "Content-Range")
tail = s3.get_object(Bucket="alpha", Key="dir/one.bin", Range="bytes=-10")["Body"].read()
check(tail == data[-10:], "suffix range")
check(code_of(lambda: s3.get_object(Bucket="alpha", Key="dir/one.bin", Range="bytes=999999999-")) == "InvalidRange",
      "unsatisfiable range")
check(code_of(lambda: s3.get_object(Bucket="alpha", Key="dir/one.bin", IfMatch='"0000"')) == "PreconditionFailed",
      "If-Match mismatch")
check(code_of(lambda: s3.get_object(Bucket="alpha", Key="dir/one.bin", IfNoneMatch=put["ETag"])) == "304",
      "If-None-Match match is 304")
check(code_of(lambda: s3.get_object(Bucket="alpha", Key="dir/one.bin",
                                    IfModifiedSince=head["LastModified"])) == "304",
      "If-Modified-Since Last-Modified is 304")
check(s3.get_object(Bucket="alpha", Key="dir/one.bin", IfMatch=put["ETag"])["Body"].read() == data,
      "If-Match match")

# Errors
check(code_of(lambda: s3.get_object(Bucket="alpha", Key="missing")) == "NoSuchKey", "NoSuchKey")
check(code_of(lambda: s3.get_object(Bucket="nobucket", Key="x")) == "NoSuchBucket", "NoSuchBucket")
check(code_of(lambda: s3.put_object(Bucket="alpha", Key="a/../../escape", Body=b"x")) == "InvalidArgument",
      "'..' key refused")
check(code_of(lambda: s3.put_object(Bucket="alpha", Key="k" * 1100, Body=b"x")) == "KeyTooLongError",
      "long key refused")
check(code_of(lambda: s3.put_object(Bucket="alpha", Key="fat-meta", Body=b"x", Metadata={"m": "v" * 3000})) == "MetadataTooLarge",
      "metadata over 2 KiB refused")
# Refused before its body was read: the next request on the client's
# connection must not start inside that body.
check(code_or_ok(lambda: s3.put_object(Bucket="alpha", Key="after-refusal", Body=b"y")) == "ok",
      "the request after a refused upload succeeds")
check(code_of(lambda: s3.put_object(Bucket="alpha", Key="bad-md5", Body=b"hello",
                                    ContentMD5="AAAAAAAAAAAAAAAAAAAAAA==")) == "BadDigest",
      "wrong Content-MD5 refused")
check(code_of(lambda: s3.head_object(Bucket="alpha", Key="bad-md5")) in ("404", "NoSuchKey"),
      "nothing stored after a bad digest")
check(code_of(lambda: client(secret_key="wrong-secret-123").list_buckets()) == "SignatureDoesNotMatch",
      "wrong secret refused")
check(code_of(lambda: client(access_key="NOSUCHKEY").list_buckets()) == "InvalidAccessKeyId",
      "unknown access key refused")
import datetime
import botocore.auth
real_now = botocore.auth.get_current_datetime
botocore.auth.get_current_datetime = lambda *a, **k: real_now(*a, **k) - datetime.timedelta(minutes=20)
try:
    check(code_of(lambda: client().list_buckets()) == "RequestTimeTooSkewed", "a clock 20 minutes behind is refused")
finally:
    botocore.auth.get_current_datetime = real_now

# Copy within and across buckets; delete_objects
s3.copy_object(Bucket="alpha", Key="copy.bin", CopySource={"Bucket": "alpha", "Key": "dir/one.bin"})
s3.copy_object(Bucket="beta", Key="x/copy.bin", CopySource={"Bucket": "alpha", "Key": "dir/one.bin"})
for b, k in (("alpha", "copy.bin"), ("beta", "x/copy.bin")):
    c = s3.get_object(Bucket=b, Key=k)
    check(c["Body"].read() == data and c["ETag"].strip('"') == md5, f"copy at {b}/{k}")
    check(c["Metadata"].get("owner") == "me", f"copy keeps metadata at {b}/{k}")
res = s3.delete_objects(Bucket="alpha", Delete={"Objects": [{"Key": "copy.bin"}, {"Key": "never-there"}]})
check(sorted(d["Key"] for d in res.get("Deleted", [])) == ["copy.bin", "never-there"], "delete_objects")
check(code_of(lambda: s3.head_object(Bucket="alpha", Key="copy.bin")) in ("404", "NoSuchKey"), "deleted")
s3.delete_object(Bucket="beta", Key="x/copy.bin")

# Paged listing with a delimiter
s3.create_bucket(Bucket="paged")
keys = [f"top-{i:03d}" for i in range(25)] + [f"d{j}/f{i}" for j in range(5) for i in range(4)]
for k in keys:
    s3.put_object(Bucket="paged", Key=k, Body=k.encode())
pager = s3.get_paginator("list_objects_v2")
seen, prefixes, pages = [], [], 0
for page in pager.paginate(Bucket="paged", Delimiter="/", PaginationConfig={"PageSize": 7}):
    pages += 1
    seen += [o["Key"] for o in page.get("Contents", [])]
    prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
check(sorted(seen) == sorted(k for k in keys if "/" not in k), f"v2 keys across {pages} pages")
check(prefixes == [f"d{j}/" for j in range(5)], f"v2 common prefixes once each: {prefixes}")
check(pages == 5, f"30 entries in pages of 7 is 5 pages, got {pages}")
all_v2 = [o["Key"] for p in pager.paginate(Bucket="paged", PaginationConfig={"PageSize": 10}) for o in p.get("Contents", [])]
check(all_v2 == sorted(keys), "v2 without delimiter: every key once, sorted")
v1 = s3.get_paginator("list_objects")
seen1, pre1 = [], []
for page in v1.paginate(Bucket="paged", Delimiter="/", PaginationConfig={"PageSize": 6}):
    seen1 += [o["Key"] for o in page.get("Contents", [])]
    pre1 += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
check(seen1 == seen and pre1 == prefixes, "v1 paging with delimiter agrees with v2")
sub = s3.list_objects_v2(Bucket="paged", Prefix="d3/", StartAfter="d3/f1")
check([o["Key"] for o in sub["Contents"]] == ["d3/f2", "d3/f3"], "prefix + start-after")
one = s3.list_objects_v2(Bucket="paged", MaxKeys=1)
check(one["IsTruncated"] and one["KeyCount"] == 1, "max-keys 1")

# DeleteBucket refuses a bucket with objects
check(code_of(lambda: s3.delete_bucket(Bucket="paged")) == "BucketNotEmpty", "BucketNotEmpty")

# Presigned GET through plain HTTP
url = s3.generate_presigned_url("get_object", Params={"Bucket": "alpha", "Key": "dir/one.bin"}, ExpiresIn=300)
with urllib.request.urlopen(url) as r:
    check(r.read() == data, "presigned GET")
bad_url = url.replace("Signature=", "Signature=0")
try:
    urllib.request.urlopen(bad_url)
    raise AssertionError("a tampered presigned URL was served")
except urllib.error.HTTPError as e:
    check(e.code == 403, "tampered presigned URL refused")

# Multipart: 21 MiB in 5 MiB parts through the transfer manager
from boto3.s3.transfer import TransferConfig
big = os.urandom(21 * MiB)
big_path = os.path.join(work, "big.bin")
with open(big_path, "wb") as f:
    f.write(big)
s3.upload_file(big_path, "alpha", "big/21mib.bin",
               Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
expected = multipart_etag([big[i:i + 5 * MiB] for i in range(0, len(big), 5 * MiB)])
h = s3.head_object(Bucket="alpha", Key="big/21mib.bin")
check(h["ETag"].strip('"') == expected and expected.endswith("-5"), f"multipart ETag {h['ETag']} == {expected}")
check(h["ContentLength"] == len(big), "multipart size")
back = os.path.join(work, "big.back")
s3.download_file("alpha", "big/21mib.bin", back)
check(open(back, "rb").read() == big, "multipart object downloads whole")

# UploadPartCopy: parts copied from ranges of another object
cp_up = s3.create_multipart_upload(Bucket="beta", Key="from-ranges.bin")["UploadId"]
ranges = [(0, 5 * MiB - 1), (5 * MiB, 5 * MiB + 999_999)]
cp_parts = []
for n, (a, b) in enumerate(ranges, 1):
    r = s3.upload_part_copy(Bucket="beta", Key="from-ranges.bin", UploadId=cp_up, PartNumber=n,
                            CopySource={"Bucket": "alpha", "Key": "big/21mib.bin"}, CopySourceRange=f"bytes={a}-{b}")
    cp_parts.append({"PartNumber": n, "ETag": r["CopyPartResult"]["ETag"]})
done = s3.complete_multipart_upload(Bucket="beta", Key="from-ranges.bin", UploadId=cp_up,
                                    MultipartUpload={"Parts": cp_parts})
pieces = [big[a:b + 1] for a, b in ranges]
check(done["ETag"].strip('"') == multipart_etag(pieces), "UploadPartCopy parts make the multipart ETag")
check(s3.get_object(Bucket="beta", Key="from-ranges.bin")["Body"].read() == b"".join(pieces), "UploadPartCopy bytes")
s3.delete_object(Bucket="beta", Key="from-ranges.bin")

# Multipart by hand: list uploads and parts, order and size rules, abort
up = s3.create_multipart_upload(Bucket="alpha", Key="by-hand.bin", Metadata={"k": "v"})["UploadId"]
p1, p2 = os.urandom(5 * MiB), os.urandom(1000)
e1 = s3.upload_part(Bucket="alpha", Key="by-hand.bin", UploadId=up, PartNumber=1, Body=p1)["ETag"]
e2 = s3.upload_part(Bucket="alpha", Key="by-hand.bin", UploadId=up, PartNumber=2, Body=p2)["ETag"]
check(e1.strip('"') == hashlib.md5(p1).hexdigest(), "UploadPart ETag is the part's MD5")
ups = s3.list_multipart_uploads(Bucket="alpha").get("Uploads", [])
check([(u["Key"], u["UploadId"]) for u in ups] == [("by-hand.bin", up)], f"list_multipart_uploads: {ups}")
parts = s3.list_parts(Bucket="alpha", Key="by-hand.bin", UploadId=up)["Parts"]
check([(p["PartNumber"], p["Size"]) for p in parts] == [(1, 5 * MiB), (2, 1000)], "list_parts")
check(code_of(lambda: s3.complete_multipart_upload(
    Bucket="alpha", Key="by-hand.bin", UploadId=up,
    MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]})) == "InvalidPartOrder",
    "parts out of order refused")
check(code_of(lambda: s3.complete_multipart_upload(
    Bucket="alpha", Key="by-hand.bin", UploadId=up,
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e2}, {"PartNumber": 2, "ETag": e2}]})) == "InvalidPart",
    "a wrong part ETag refused")
check(code_of(lambda: s3.complete_multipart_upload(
    Bucket="alpha", Key="by-hand.bin", UploadId=up,
    MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 3, "ETag": e2}]})) == "InvalidPart",
    "a missing part refused")
small = s3.create_multipart_upload(Bucket="alpha", Key="small.bin")["UploadId"]
es = [s3.upload_part(Bucket="alpha", Key="small.bin", UploadId=small, PartNumber=n, Body=b"x" * 10)["ETag"] for n in (1, 2)]
check(code_of(lambda: s3.complete_multipart_upload(
    Bucket="alpha", Key="small.bin", UploadId=small,
    MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), es)]})) == "EntityTooSmall",
    "a small part but the last refused")
s3.abort_multipart_upload(Bucket="alpha", Key="small.bin", UploadId=small)
check(code_of(lambda: s3.list_parts(Bucket="alpha", Key="small.bin", UploadId=small)) == "NoSuchUpload",
      "aborted upload is gone")
check(code_of(lambda: s3.head_object(Bucket="alpha", Key="small.bin")) in ("404", "NoSuchKey"),
      "aborted upload left no object")
done = s3.complete_multipart_upload(
    Bucket="alpha", Key="by-hand.bin", UploadId=up,
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
check(done["ETag"].strip('"') == multipart_etag([p1, p2]), "CompleteMultipartUpload ETag")
g = s3.get_object(Bucket="alpha", Key="by-hand.bin")
check(g["Body"].read() == p1 + p2 and g["Metadata"] == {"k": "v"}, "completed object: bytes and metadata")
check(s3.list_multipart_uploads(Bucket="alpha").get("Uploads", []) == [], "no uploads left after complete/abort")

# What boto3 sends by default over TLS: an aws-chunked body with an unsigned
# CRC32 trailer (over plain HTTP it sends the CRC32 as a header, checked
# above by the PUTs). Forced here over HTTP by moving the checksum to the
# trailer, as botocore does for https endpoints.
import botocore.httpchecksum as httpchecksum
tc = client()


def to_trailer(params, **kwargs):
    algorithm = params.get("context", {}).get("checksum", {}).get("request_algorithm")
    if isinstance(algorithm, dict):
        algorithm["in"] = "trailer"


sent = {}
tc.meta.events.register("before-call.s3.PutObject", to_trailer)
tc.meta.events.register("before-send.s3.PutObject",
                        lambda request, **kw: sent.update({k.lower(): v for k, v in request.headers.items()}))
payload = os.urandom(200_000)
tc.put_object(Bucket="alpha", Key="trailer.bin", Body=payload)
check(sent.get("x-amz-content-sha256") == b"STREAMING-UNSIGNED-PAYLOAD-TRAILER"
      and sent.get("x-amz-trailer") == b"x-amz-checksum-crc32", f"sent as aws-chunked with a trailer: {sent}")
check(s3.get_object(Bucket="alpha", Key="trailer.bin")["Body"].read() == payload, "aws-chunked body with trailer stored")
right_crc = httpchecksum._CHECKSUM_CLS["crc32"]


class WrongCrc32(httpchecksum.Crc32Checksum):
    def digest(self):
        return b"\0\0\0\1"


httpchecksum._CHECKSUM_CLS["crc32"] = WrongCrc32
try:
    check(code_of(lambda: tc.put_object(Bucket="alpha", Key="bad-trailer.bin", Body=payload)) == "BadDigest",
          "a wrong CRC32 trailer is BadDigest")
finally:
    httpchecksum._CHECKSUM_CLS["crc32"] = right_crc
check(code_of(lambda: s3.head_object(Bucket="alpha", Key="bad-trailer.bin")) in ("404", "NoSuchKey"),
      "nothing stored after a wrong trailer")
check(code_of(lambda: s3.put_object(Bucket="alpha", Key="bad-crc", Body=b"hello", ChecksumCRC32="AAAAAA==")) == "BadDigest",
      "a wrong x-amz-checksum-crc32 header is BadDigest")

# Empty bucket deletes, also when deletes left empty directories in it
s3.create_bucket(Bucket="gone")
s3.put_object(Bucket="gone", Key="a/b/c.txt", Body=b"c")
s3.put_object(Bucket="gone", Key="a/d.txt", Body=b"d")
check(code_of(lambda: s3.delete_bucket(Bucket="gone")) == "BucketNotEmpty", "a bucket with nested objects is not empty")
s3.delete_objects(Bucket="gone", Delete={"Objects": [{"Key": "a/b/c.txt"}, {"Key": "a/d.txt"}]})
check(s3.list_objects_v2(Bucket="gone", Delimiter="/").get("CommonPrefixes") is None,
      "directories left empty are no common prefixes")
s3.delete_bucket(Bucket="gone")
check("gone" not in [b["Name"] for b in s3.list_buckets()["Buckets"]], "DeleteBucket of an empty bucket")

print("boto3 checks passed")
