#!/usr/bin/env bash
# A file over 4 GiB written with dd into the mount and read back identical,
# while the daemon's peak RSS stays under 256 MiB (default memory budget,
# default 4 MiB chunks). MINIGCS_LARGE_MIB changes the size (default 4097).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_fuse

MIB=${MINIGCS_LARGE_MIB:-4097}
RSS_LIMIT_MIB=${MINIGCS_MOUNT_RSS_LIMIT_MIB:-256}
need_kib=$(( MIB * 1024 * 17 / 10 + 1024 * 1024 ))     # k=2,m=1 -> 1.5x, plus margin
free_kib=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
if (( free_kib < need_kib )); then
    skip "needs about $((need_kib / 1024)) MiB free under $WORK, only $((free_kib / 1024)) MiB"
fi
CFG_CHUNK=4194304
write_config
start_daemon mount
rss_peak() { awk '/^VmHWM/ { print int($2 / 1024) }' "/proc/$DAEMON_PID/status"; }

# The content: a 64 MiB random block repeated, cut to $MIB MiB.
mkrand "$WORK/block" $((64 * 1024 * 1024))
stream() { { local i; for ((i = 0; i <= MIB / 64; i++)); do cat "$WORK/block"; done || true; } 2>/dev/null | head -c $((MIB * 1024 * 1024)); }
want=$(stream | sha256sum | cut -d' ' -f1)

say "dd $MIB MiB into the mount"
start=$SECONDS
stream | dd of="$MNT/huge.bin" bs=1M iflag=fullblock status=none || fail "dd into the mount failed"
secs=$((SECONDS - start))
echo "wrote $MIB MiB in ${secs}s; daemon peak RSS $(rss_peak) MiB"
assert_eq $((MIB * 1024 * 1024)) "$(stat -c %s "$MNT/huge.bin")" "size of the large file"

say "read it back"
drop_caches
start=$SECONDS
got=$(sha256sum <"$MNT/huge.bin" | cut -d' ' -f1)
echo "read $MIB MiB in $((SECONDS - start))s"
assert_eq "$want" "$got" "sha256 of the large file"
dd if="$MNT/huge.bin" of="$WORK/tail" bs=1M skip=$((MIB - 2)) status=none
cmp "$WORK/tail" <(stream | tail -c $((2 * 1024 * 1024))) || fail "last 2 MiB (past 4 GiB) differ"

peak=$(rss_peak)
echo "daemon peak RSS: $peak MiB (limit $RSS_LIMIT_MIB MiB)"
(( peak < RSS_LIMIT_MIB )) || fail "daemon peak RSS $peak MiB >= $RSS_LIMIT_MIB MiB while writing/reading a $MIB MiB file"

say "patch a few bytes at 3/4 of the file, re-read"
off=$((MIB * 1024 * 1024 / 4 * 3 + 12345))
printf 'PATCHED' | dd of="$MNT/huge.bin" bs=1 seek=$off conv=notrunc status=none
drop_caches
assert_eq PATCHED "$(dd if="$MNT/huge.bin" bs=1 skip=$off count=7 status=none)" "patched bytes"
assert_eq $((MIB * 1024 * 1024)) "$(stat -c %s "$MNT/huge.bin")" "size after the patch"

rm "$MNT/huge.bin"
stop_daemon
echo "PASS: $TEST_NAME"
