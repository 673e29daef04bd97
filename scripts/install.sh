#!/usr/bin/env bash
# Install minigcs system-wide: build the release binary, copy it to
# $PREFIX/bin/minigcs (default /usr/local/bin), and link the mount helper
# (mount.fuse.minigcs, mount.minigcs) into $HELPER_DIR (default /sbin, where
# mount(8) looks) with `minigcs install-helper`. Run as root.
#
# Environment: PREFIX, HELPER_DIR, MINIGCS_SKIP_BUILD=1 (use the existing
# release binary).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=target_dir.sh
. scripts/target_dir.sh

PREFIX=${PREFIX:-/usr/local}
HELPER_DIR=${HELPER_DIR:-/sbin}

if [ "${MINIGCS_SKIP_BUILD:-0}" != 1 ]; then
    echo "== cargo build --release"
    cargo build --release
fi
bin=$(minigcs_release_bin "$PWD")
[ -x "$bin" ] || { echo "no binary at $bin (run cargo build --release)" >&2; exit 1; }

echo "== installing $PREFIX/bin/minigcs"
install -d "$PREFIX/bin"
# A new file renamed over the old one: a running daemon keeps its binary.
install -m 0755 "$bin" "$PREFIX/bin/.minigcs.new"
mv -f "$PREFIX/bin/.minigcs.new" "$PREFIX/bin/minigcs"

echo "== installing the mount helper into $HELPER_DIR"
"$PREFIX/bin/minigcs" install-helper --dir "$HELPER_DIR"
echo "done: mount -t fuse.minigcs /etc/minigcs/config.yaml /srv/minigcs (see contrib/ for fstab and systemd)"
