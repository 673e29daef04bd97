#!/usr/bin/env bash
# Files of sizes around every boundary (0, 1, page, chunk-1, chunk, chunk+1,
# 3.5 chunks, 20 MiB) written into the mount with cp and dd read back
# identical (sha256), and again after unmount + mount (persistence).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_fuse

C=$CFG_CHUNK
SIZES="0 1 4095 4096 $((C - 1)) $C $((C + 1)) $((C * 7 / 2)) $((20 * 1024 * 1024))"
SRC=$WORK/src
mkdir -p "$SRC"
for s in $SIZES; do mkrand "$SRC/f_$s" "$s"; done

start_daemon mount

say "write with cp and dd: sizes $SIZES"
for s in $SIZES; do
    cp "$SRC/f_$s" "$MNT/cp_$s"
    dd if="$SRC/f_$s" of="$MNT/dd_$s" bs=65536 conv=fsync status=none
    # odd block size: writes never aligned with pages or chunks
    dd if="$SRC/f_$s" of="$MNT/odd_$s" bs=12345 status=none
done

check_all() {
    local s f
    for s in $SIZES; do
        for f in cp dd odd; do
            assert_eq "$s" "$(stat -c %s "$MNT/${f}_$s")" "size of ${f}_$s ($1)"
            assert_eq "$(sha_of "$SRC/f_$s")" "$(sha_of "$MNT/${f}_$s")" "sha256 of ${f}_$s ($1)"
        done
    done
    # the API sees the same bytes
    for s in $SIZES; do
        api "/objects/cp_$s" -o "$WORK/api_$s" --fail
        assert_eq "$(sha_of "$SRC/f_$s")" "$(sha_of "$WORK/api_$s")" "sha256 of cp_$s via the API ($1)"
    done
    rm -f "$WORK"/api_*
}

say "read back through the mount and the API"
check_all "same mount"
drop_caches
check_all "after dropping caches"

say "unmount (SIGTERM) and mount again"
stop_daemon
start_daemon mount
check_all "after remount"

say "overwrite in place with a shorter and a longer file"
cp "$SRC/f_1" "$MNT/cp_$C"
cp "$SRC/f_$((20 * 1024 * 1024))" "$MNT/cp_1"
assert_eq "$(sha_of "$SRC/f_1")" "$(sha_of "$MNT/cp_$C")" "sha256 after shrinking overwrite"
assert_eq "$(sha_of "$SRC/f_$((20 * 1024 * 1024))")" "$(sha_of "$MNT/cp_1")" "sha256 after growing overwrite"
stop_daemon
start_daemon mount
assert_eq "$(sha_of "$SRC/f_1")" "$(sha_of "$MNT/cp_$C")" "sha256 after shrinking overwrite + remount"
assert_eq "$(sha_of "$SRC/f_$((20 * 1024 * 1024))")" "$(sha_of "$MNT/cp_1")" "sha256 after growing overwrite + remount"

stop_daemon
echo "PASS: $TEST_NAME"
