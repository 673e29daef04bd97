#!/usr/bin/env bash
# The main job: build minigcs in release mode and run it with the shipped
# config.yaml: the store mounted at ./mnt, data under ./data, the HTTP API on
# 127.0.0.1:8000, the control socket at ./data/minigcs.sock.
# Stop it with Ctrl-C (or SIGTERM): it flushes open files, unmounts and exits 0.
#
# Usage: scripts/run.sh [MOUNTPOINT] [extra minigcs mount options]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=target_dir.sh
. scripts/target_dir.sh

MNT=${1:-./mnt}
[ "$#" -gt 0 ] && shift

# FUSE user-space helper (fusermount3) from Debian's fuse3 package.
if ! command -v fusermount3 >/dev/null 2>&1; then
    echo "== installing fuse3"
    sudo=
    [ "$(id -u)" = 0 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y --no-install-recommends fuse3 ||
        { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends fuse3; }
fi
if [ ! -c /dev/fuse ]; then
    echo "warning: /dev/fuse is missing; the mount will fail (use 'scripts/minigcs serve -c config.yaml' for the API only)" >&2
fi

echo "== cargo build --release"
cargo build --release
BIN=$(minigcs_release_bin "$PWD")

mkdir -p data "$MNT"
echo "== $BIN mount $MNT -c ./config.yaml"
echo "   API: http://127.0.0.1:8000   from another terminal: scripts/minigcs ctl -c config.yaml health"
exec "$BIN" mount "$MNT" -c ./config.yaml "$@"
