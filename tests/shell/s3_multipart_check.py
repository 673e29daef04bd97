"""Multipart uploads with boto3 (default settings) for test_s3_multipart.sh.

Usage: s3_multipart_check.py ENDPOINT ACCESS SECRET CMD ARGS...
  put BUCKET KEY FILE PART_SIZE      boto3's managed upload in parts of
                                     PART_SIZE; checks the multipart ETag
  get BUCKET KEY OUT                 download to OUT
  start BUCKET KEY FILE PART_SIZE N  create an upload, send its first N
                                     parts; prints the upload id
  parts BUCKET KEY ID                prints the stored part numbers
  finish BUCKET KEY ID FILE PART_SIZE  send the parts not stored yet,
                                     complete; checks the multipart ETag
  abort BUCKET KEY ID
  keys BUCKET                        prints the keys ListObjectsV2 shows
  uploads BUCKET                     prints the ids of the uploads in progress
Exits 1 with a message on a failed check.
"""
import hashlib
import sys

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

endpoint, access, secret, cmd = sys.argv[1:5]
args = sys.argv[5:]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access,
                  aws_secret_access_key=secret, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def pieces(path, part_size):
    data = open(path, "rb").read()
    return [data[i:i + part_size] for i in range(0, len(data), part_size)]


def multipart_etag(parts):
    outer = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts))
    return f"{outer.hexdigest()}-{len(parts)}"


if cmd == "put":
    bucket, key, path, size = args[0], args[1], args[2], int(args[3])
    s3.upload_file(path, bucket, key,
                   Config=TransferConfig(multipart_threshold=size, multipart_chunksize=size))
    etag = s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    check(etag == multipart_etag(pieces(path, size)), f"ETag {etag} is the multipart ETag")
elif cmd == "get":
    s3.download_file(args[0], args[1], args[2])
elif cmd == "start":
    bucket, key, path, size, n = args[0], args[1], args[2], int(args[3]), int(args[4])
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    for number, data in enumerate(pieces(path, size)[:n], start=1):
        s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=number, Body=data)
    print(up)
elif cmd == "parts":
    listed = s3.list_parts(Bucket=args[0], Key=args[1], UploadId=args[2]).get("Parts", [])
    print(" ".join(str(p["PartNumber"]) for p in listed))
elif cmd == "finish":
    bucket, key, up, path, size = args[0], args[1], args[2], args[3], int(args[4])
    datas = pieces(path, size)
    stored = {p["PartNumber"]: p["ETag"]
              for p in s3.list_parts(Bucket=bucket, Key=key, UploadId=up).get("Parts", [])}
    for number, data in enumerate(datas, start=1):
        if number in stored:
            check(stored[number].strip('"') == hashlib.md5(data).hexdigest(),
                  f"stored part {number} has its MD5 as ETag")
        else:
            stored[number] = s3.upload_part(Bucket=bucket, Key=key, UploadId=up,
                                            PartNumber=number, Body=data)["ETag"]
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in sorted(stored.items())]})
    check(done["ETag"].strip('"') == multipart_etag(datas), "CompleteMultipartUpload ETag")
elif cmd == "abort":
    s3.abort_multipart_upload(Bucket=args[0], Key=args[1], UploadId=args[2])
elif cmd == "keys":
    listed = s3.list_objects_v2(Bucket=args[0]).get("Contents", [])
    print(" ".join(o["Key"] for o in listed))
elif cmd == "uploads":
    listed = s3.list_multipart_uploads(Bucket=args[0]).get("Uploads", [])
    print(" ".join(u["UploadId"] for u in listed))
else:
    sys.exit(f"unknown command {cmd}")
