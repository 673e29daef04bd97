#!/usr/bin/env bash
# minigcs fsck and fsck --rebuild (the last resort when the metadata is gone):
# 1. a tree written through the mount (nested dirs, files across chunk
#    boundaries, an empty file, a file overwritten whole, a file rewritten in
#    its middle) and objects PUT through the API (one PUT twice); fsck refuses
#    while the daemon holds the store;
# 2. stopped: fsck is clean (exit 0); a corrupted and a deleted shard are
#    reported (exit 1); old versions' shards put back are reported as orphans;
# 3. metadata.db (+ -wal/-shm) deleted: plain fsck refuses, fsck --rebuild
#    recovers every file under lost+found/ (newest version wins, verified
#    shards only), a second run writes nothing; started again, every file's
#    bytes match the originals (sha256sum);
# 4. a file left with fewer than k shards is reported (exit 1) while the
#    others come back.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# Shard files are damaged or counted directly: every shard in its own file.
CFG_SEGMENT_MAX_SHARD=0
write_config
need_fuse

fsck() { (cd "$WORK" && "$MINIGCS_BIN" fsck -c "$CONFIG" "$@"); }
ORIG=$WORK/orig
mkdir -p "$ORIG"
MB=1048576

start_daemon mount

say "write a tree through the mount and objects through the API"
mkdir -p "$MNT/a/b/c" "$ORIG/a/b/c"
mkrand "$ORIG/small.txt" 100
mkrand "$ORIG/a/one_chunk" $MB
mkrand "$ORIG/a/b/big" $((5 * MB / 2))
mkrand "$ORIG/a/b/c/three" $((3 * MB + 7))
mkrand "$ORIG/over.txt" $((3 * MB))
mkrand "$ORIG/mid" $((3 * MB))
: >"$ORIG/empty"
for f in small.txt a/one_chunk a/b/big a/b/c/three over.txt mid empty; do
    cp "$ORIG/$f" "$MNT/$f"
done
mkrand "$ORIG/obj.bin" $((11 * MB / 5))
api /objects/put/obj.bin -X PUT --data-binary "@$ORIG/obj.bin" -o /dev/null -f
sync
# The shards of the first versions, kept aside to put back later: the
# collector frees superseded chunks, and the rebuild must meet both.
for i in 1 2 3; do cp -a "$(node_dir "$i")" "$WORK/before-$i"; done

say "overwrite: a whole file, the middle of another, an object"
mkrand "$ORIG/over.txt" $((6 * MB / 5))
cp "$ORIG/over.txt" "$MNT/over.txt"
head -c 200 /dev/urandom >"$WORK/patch"
dd if="$WORK/patch" of="$ORIG/mid" bs=1 seek=$((3 * MB / 2)) conv=notrunc status=none
dd if="$WORK/patch" of="$MNT/mid" bs=1 seek=$((3 * MB / 2)) conv=notrunc status=none
mkrand "$ORIG/obj.bin" $((11 * MB / 10))
api /objects/put/obj.bin -X PUT --data-binary "@$ORIG/obj.bin" -o /dev/null -f
sync
assert_eq "$(sha_of "$ORIG/mid")" "$(sha_of "$MNT/mid")" "mid through the mount"
# The collector frees the first versions' chunks before the stop: their
# shards put back later must be orphans, and the shards fsck is shown
# corrupted or deleted must belong to live chunks.
dead_chunks() { sqlite3 "$WORK/metadata.db" "SELECT count(*) FROM chunks WHERE ino IS NULL"; }
no_dead_chunks() { test "$(dead_chunks)" = 0; }
wait_until 30 no_dead_chunks || fail "superseded chunks not collected ($(dead_chunks) left)"

say "fsck refuses while the daemon holds the store"
rc=0
fsck >"$WORK/out" 2>&1 || rc=$?
assert_eq 1 "$rc" "fsck exit code with the daemon running"
grep -qi "lock\|running\|held" "$WORK/out" || fail "fsck did not say the store is held: $(cat "$WORK/out")"
stop_daemon

say "fsck on the stopped store is clean"
fsck >"$WORK/out" 2>&1 || { cat "$WORK/out"; fail "fsck of a healthy store did not exit 0"; }
grep -q "^clean" "$WORK/out" || fail "no 'clean' in: $(cat "$WORK/out")"
fsck --json >"$WORK/out.json"
assert_eq 0 "$(jq '.missing + .corrupt' "$WORK/out.json")" "missing + corrupt in --json"
[ "$(jq '.chunks_checked' "$WORK/out.json")" -ge 10 ] || fail "too few chunks checked: $(cat "$WORK/out.json")"

say "a corrupted shard and a deleted one are reported"
mapfile -t shards < <(find "$(node_dir 1)" -name '*.shard' | sort)
[ "${#shards[@]}" -ge 2 ] || fail "node 1 holds fewer than 2 shards"
corrupted=${shards[0]}
size=$(stat -c %s "$corrupted")
printf '\xff\x00\xff' | dd of="$corrupted" bs=1 seek=$((size - 5)) conv=notrunc status=none
corrupted_chunk=$(basename "$corrupted")
corrupted_chunk=${corrupted_chunk%%.*}
deleted=$(find "$(node_dir 2)" -name '*.shard' | grep -v "/$corrupted_chunk\." | sort | head -n 1)
rm "$deleted"
rc=0
fsck --json >"$WORK/out.json" 2>"$WORK/err" || rc=$?
assert_eq 1 "$rc" "fsck exit code with a bad shard"
assert_eq 1 "$(jq '.corrupt' "$WORK/out.json")" "corrupt shards"
assert_eq 1 "$(jq '.missing' "$WORK/out.json")" "missing shards"
assert_eq 0 "$(jq '.lost_chunks | length' "$WORK/out.json")" "lost chunks (k=2 of 3 still good)"
fsck >"$WORK/out" 2>&1 || true
grep -q "problems found" "$WORK/out" || fail "no 'problems found' in: $(cat "$WORK/out")"

say "the old versions' shards, put back, are orphans"
# Every shard file of the snapshot that is gone now comes back (the deleted
# one too, if it was there then); the corrupted one stays bad.
for i in 1 2 3; do
    while read -r rel; do
        [ -e "$(node_dir "$i")/$rel" ] || {
            mkdir -p "$(dirname "$(node_dir "$i")/$rel")"
            cp "$WORK/before-$i/$rel" "$(node_dir "$i")/$rel"
        }
    done < <(cd "$WORK/before-$i" && find shards -name '*.shard')
done
rc=0
fsck --json >"$WORK/out.json" 2>/dev/null || rc=$?
assert_eq 1 "$rc" "fsck exit code with orphans"
[ "$(jq '[.orphans[]] | add' "$WORK/out.json")" -ge 3 ] || fail "old versions not seen as orphans: $(cat "$WORK/out.json")"

say "metadata lost: plain fsck refuses, fsck --rebuild recovers"
# The last resort: the database and every metadata snapshot on the nodes
# are gone (a snapshot would be restored first).
rm -f "$WORK/metadata.db" "$WORK/metadata.db-wal" "$WORK/metadata.db-shm"
rm -rf "$WORK"/node-*/meta
rc=0
fsck >"$WORK/out" 2>&1 || rc=$?
assert_eq 1 "$rc" "plain fsck without metadata"
grep -q -- "--rebuild" "$WORK/out" || fail "plain fsck did not point to --rebuild: $(cat "$WORK/out")"
[ ! -e "$WORK/metadata.db" ] || fail "plain fsck created a metadata database"
fsck --rebuild >"$WORK/rebuild.out" 2>&1 || { cat "$WORK/rebuild.out"; fail "fsck --rebuild failed"; }
cat "$WORK/rebuild.out"
grep -q "files recovered now  *7$" "$WORK/rebuild.out" || fail "expected 7 files recovered"

say "a second --rebuild writes nothing"
fsck --rebuild >"$WORK/rebuild2.out" 2>&1 || { cat "$WORK/rebuild2.out"; fail "second fsck --rebuild failed"; }
grep -q "files recovered now  *0$" "$WORK/rebuild2.out" || { cat "$WORK/rebuild2.out"; fail "second run wrote files again"; }

say "started again: every recovered file matches its original"
start_daemon mount
LF=$MNT/lost+found
for f in small.txt a/one_chunk a/b/big a/b/c/three over.txt mid put/obj.bin; do
    orig=$ORIG/$f
    [ "$f" = put/obj.bin ] && orig=$ORIG/obj.bin
    [ -f "$LF/$f" ] || fail "lost+found/$f missing; lost+found holds: $(cd "$LF" && find . -type f)"
    assert_eq "$(sha_of "$orig")" "$(sha_of "$LF/$f")" "bytes of lost+found/$f"
done
# Newest wins: the overwritten files come back once, in their last version.
assert_eq 7 "$(find "$LF" -type f | wc -l)" "files under lost+found"
# The start-up sweep frees the originals, orphans of the new metadata;
# those written (or put back) less than 2 s before the start get its second
# look a few seconds later.
small_shards() { find "$WORK"/node-* -name '*.shard' -size 310c | wc -l; }
small_shards_are() { test "$(small_shards)" = "$1"; }   # counted on each poll
wait_until 30 small_shards_are 3 || fail "the originals' shards were not swept ($(small_shards) small shards)"
stop_daemon

say "a file with too few shards is reported, the others still come back"
# The last resort: the database and every metadata snapshot on the nodes
# are gone (a snapshot would be restored first).
rm -f "$WORK/metadata.db" "$WORK/metadata.db-wal" "$WORK/metadata.db-shm"
rm -rf "$WORK"/node-*/meta
# lost+found/small.txt: 100 bytes, k=2: its shards are the only 310-byte
# files (256-byte v2 header, one block checksum, 50 bytes of payload).
mapfile -t small < <(find "$WORK"/node-* -name '*.shard' -size 310c)
[ "${#small[@]}" = 3 ] || fail "expected small.txt's 3 shards, found ${#small[@]}"
rm "${small[0]}" "${small[1]}"
rc=0
fsck --rebuild >"$WORK/rebuild3.out" 2>&1 || rc=$?
assert_eq 1 "$rc" "fsck --rebuild exit code with an unrecoverable file"
grep -q "NOT RECOVERED: .*small.txt.*1 shard(s) found, 2 needed" "$WORK/rebuild3.out" \
    || { cat "$WORK/rebuild3.out"; fail "the unrecoverable file was not reported with its shard count"; }
grep -q "recovered: lost+found/lost+found/a/b/big" "$WORK/rebuild3.out" \
    || { cat "$WORK/rebuild3.out"; fail "the other files did not come back"; }
echo "PASS: $TEST_NAME"
