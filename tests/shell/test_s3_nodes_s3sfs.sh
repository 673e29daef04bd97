#!/usr/bin/env bash
# test_s3_nodes.sh with s3s-fs servers (a real S3 server over a folder,
# from crates.io) as the three regions instead of minigcs daemons.
# s3s-fs is installed once into target/s3s-fs when missing (cargo install,
# about 4 minutes on 2 cores; the time is printed).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=../../scripts/target_dir.sh
. "$REPO/scripts/target_dir.sh"
ROOT=$(cargo_target_dir "$REPO")/s3s-fs
S3S_FS=$ROOT/bin/s3s-fs
if [ ! -x "$S3S_FS" ]; then
    echo "--- installing s3s-fs 0.14.1 into $ROOT (cargo install)"
    start=$SECONDS
    cargo install --quiet --locked s3s-fs --version 0.14.1 --features binary --root "$ROOT" ||
        cargo install --quiet s3s-fs --version 0.14.1 --features binary --root "$ROOT" || {
            echo "FAIL: test_s3_nodes_s3sfs: cargo install s3s-fs failed" >&2
            exit 1
        }
    echo "--- s3s-fs installed in $((SECONDS - start)) s"
fi
REGION_SERVER=s3s-fs S3S_FS=$S3S_FS exec bash "$HERE/test_s3_nodes.sh"
