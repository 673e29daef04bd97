#!/usr/bin/env bash
# Sparse files through the kernel: a hole takes no space (`stat -c %b`,
# `du`), as in a local folder; lseek SEEK_DATA/SEEK_HOLE find data and
# holes (chunk granularity; the test's layout is chunk-aligned, so a local
# ext4/tmpfs file gives the same answers), also for bytes written but not
# yet flushed; `fallocate --punch-hole` and `--zero-range` (with and without
# --keep-size) leave the same content and size as in the local folder, and
# the space a punched file takes drops by the chunks the hole covers.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_fuse
command -v fallocate >/dev/null || fail "fallocate (util-linux) is missing"

C=$CFG_CHUNK
MiB=1048576
[ "$C" = "$MiB" ] || skip "this test's layout assumes 1 MiB chunks (MINIGCS_TEST_CHUNK=$C)"
start_daemon mount
REF=$WORK/ref
mkdir -p "$REF"

blocks() { stat -c %b "$1"; }
size_of() { stat -c %s "$1"; }
# seek FILE OFFSET data|hole [write OFFSET]: the lseek answer ("ENXIO" for
# ENXIO); with `write`, a byte is written there first through the same
# descriptor, and the answer is taken before the file is closed.
seek() {
    python3 - "$@" <<'PY'
import errno, os, sys
path, offset, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fd = os.open(path, os.O_RDWR)
if len(sys.argv) > 5 and sys.argv[4] == "write":
    os.pwrite(fd, b"x", int(sys.argv[5]))
try:
    print(os.lseek(fd, offset, os.SEEK_DATA if what == "data" else os.SEEK_HOLE))
except OSError as e:
    if e.errno != errno.ENXIO:
        raise
    print("ENXIO")
os.close(fd)
PY
}
# both CMD...: run CMD with {} replaced by the local folder, then the mount
both() {
    local d
    for d in "$REF" "$MNT"; do
        "${@//\{\}/$d}" || fail "failed in $d: $*"
    done
}
same_file() { # same_file NAME: same size and bytes in the mount as locally
    assert_eq "$(size_of "$REF/$1")" "$(size_of "$MNT/$1")" "size of $1"
    cmp -s "$REF/$1" "$MNT/$1" || fail "$1 differs from the local file"
}

say "a 1 GiB hole takes no space"
both truncate -s 1G {}/hole
assert_eq 0 "$(blocks "$MNT/hole")" "st_blocks of a 1 GiB hole"
assert_eq "$(du -k "$REF/hole" | cut -f1)" "$(du -k "$MNT/hole" | cut -f1)" "du of a 1 GiB hole"
assert_eq 1048576 "$(du -k --apparent-size "$MNT/hole" | cut -f1)" "apparent size of the hole"

say "data in a hole: only its chunk is counted; SEEK_DATA/SEEK_HOLE as in the local file"
mkrand "$WORK/mib" $MiB
both dd if="$WORK/mib" of={}/hole bs=1M seek=5 count=1 conv=notrunc status=none
assert_eq 2048 "$(blocks "$MNT/hole")" "st_blocks with one 1 MiB chunk of data"
same_file hole
for q in "0 data" "0 hole" "$((5 * MiB)) data" "$((5 * MiB + 7)) hole" "$((6 * MiB)) data" "$((1024 * MiB - 1)) hole" "$((1024 * MiB)) hole"; do
    read -r off what <<<"$q"
    assert_eq "$(seek "$REF/hole" "$off" "$what")" "$(seek "$MNT/hole" "$off" "$what")" "lseek($off, SEEK_${what^^})"
done
assert_eq $((5 * MiB)) "$(seek "$MNT/hole" 0 data)" "SEEK_DATA from 0"

say "SEEK_DATA sees a write not yet flushed"
assert_eq $((9 * MiB)) "$(seek "$REF/hole" $((8 * MiB)) data write $((9 * MiB + 10)))" "local SEEK_DATA before close"
assert_eq $((9 * MiB)) "$(seek "$MNT/hole" $((8 * MiB)) data write $((9 * MiB + 10)))" "SEEK_DATA before close"
assert_eq $((10 * MiB)) "$(seek "$MNT/hole" $((9 * MiB)) hole)" "SEEK_HOLE after close (chunk granularity)"
# 1 MiB in chunk 5, 11 bytes in chunk 9
assert_eq $(((MiB + 11 + 511) / 512)) "$(blocks "$MNT/hole")" "st_blocks with two chunks of data"
same_file hole

say "fallocate --punch-hole: same bytes and size as locally, whole chunks freed"
mkrand "$WORK/four" $((4 * MiB))
both cp "$WORK/four" {}/punched
both fallocate --punch-hole --offset $((MiB + MiB / 2)) --length $((2 * MiB)) {}/punched
same_file punched
# chunk 0 whole, chunk 1 ends at 1.5 MiB, chunk 2 gone, chunk 3 whole (zeros in its head)
assert_eq $(((MiB + MiB / 2 + MiB) / 512)) "$(blocks "$MNT/punched")" "st_blocks after the punch"
assert_eq $((2 * MiB)) "$(seek "$MNT/punched" $((MiB + MiB / 2)) hole)" "SEEK_HOLE inside the punched range (chunk 1 holds data)"
assert_eq $((3 * MiB)) "$(seek "$MNT/punched" $((2 * MiB)) data)" "SEEK_DATA after the freed chunk"
both fallocate --punch-hole --offset $((10 * MiB)) --length $MiB {}/punched   # past the end
same_file punched

say "fallocate --zero-range: grows the file as locally; --keep-size keeps it"
both cp "$WORK/four" {}/zeroed
both fallocate --zero-range --keep-size --offset $((3 * MiB)) --length $((3 * MiB)) {}/zeroed
same_file zeroed
assert_eq $((4 * MiB)) "$(size_of "$MNT/zeroed")" "size after --zero-range --keep-size"
both fallocate --zero-range --offset $((2 * MiB + 100)) --length $((4 * MiB)) {}/zeroed
same_file zeroed
assert_eq $((6 * MiB + 100)) "$(size_of "$MNT/zeroed")" "size after --zero-range"
# chunk 0, chunk 1 whole, chunk 2 ends after 100 bytes; nothing after
assert_eq $(((2 * MiB + 100 + 511) / 512)) "$(blocks "$MNT/zeroed")" "st_blocks after --zero-range"

say "the same after a remount"
stop_daemon
start_daemon mount
for f in hole punched zeroed; do same_file "$f"; done
assert_eq $(((MiB + 11 + 511) / 512)) "$(blocks "$MNT/hole")" "st_blocks of hole after remount"
assert_eq $((9 * MiB)) "$(seek "$MNT/hole" $((6 * MiB)) data)" "SEEK_DATA after remount"
stop_daemon
echo "PASS: $TEST_NAME"
