#!/usr/bin/env bash
# The metadata journal on the nodes: with no snapshot taken by hand,
# deleting metadata.db (and its -wal/-shm) loses nothing acknowledged.
# - a clean stop, then the database deleted: the whole namespace is back
#   (nested folders, files across chunks, a hard link, a symlink, a FIFO,
#   chmod, an xattr, a set mtime, a rename), compared with find -printf,
#   sha256sum and getfattr;
# - kill -9 with writers running: every file closed before the kill is back
#   with its content; nothing half-written is visible;
# - 4+2 over 3 regions: the database AND a whole region's node folders
#   deleted: everything is back, and recovery restores the shards and the
#   journal's copies;
# - a corrupted page in metadata.db: rebuilt at start;
# - journal copies corrupted on one node: the others are used, and scrub
#   repairs the bad copy.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_fuse

DB=$WORK/metadata.db
T=$MNT/tree

delete_db() { rm -f "$DB" "$DB-wal" "$DB-shm"; }
journal_copies() { find "$WORK"/node-*/meta/journal -name 'journal-*.mgjnl' 2>/dev/null | sort; }
snapshot_copies() { find "$WORK"/node-*/meta/snapshots -name 'snapshot-*.mgsnap' 2>/dev/null | sort; }

say "a tree through the mount, no snapshot taken"
# Periodic snapshots off: only the journal carries the changes.
# Periodic snapshots off and no periodic journal flush within the test:
# only durable operations (and a clean stop) write the journal.
CFG_METADATA_EXTRA="  snapshot_interval_secs: 0
  journal_flush_ms: 60000"
write_config
start_daemon mount
mkdir -p "$T/a/b/c" "$T/empty"
mkrand "$T/a/one-chunk" 1048576
mkrand "$T/a/b/three-chunks-and-a-bit" $((3 * 1048576 + 17))
mkrand "$T/a/b/c/small" 1000
: >"$T/zero"
ln -s a/b/c/small "$T/link"
ln "$T/a/one-chunk" "$T/hardlink"
mkfifo "$T/fifo"
chmod 0640 "$T/a/one-chunk"
chmod 0700 "$T/a/b"
setfattr -n user.color -v blue "$T/a/b/c/small"
touch -m -d '2001-02-03 04:05:06' "$T/a/b/c/small"
mkrand "$T/to-rename" 5000
mv "$T/to-rename" "$T/a/renamed"
sync
namespace_fingerprint >"$WORK/before"
assert_eq 0 "$(snapshot_copies | wc -l)" "snapshot copies (none taken)"
[ "$(journal_copies | wc -l)" -ge 2 ] || fail "the journal is not on m+1 = 2 nodes: $(journal_copies)"
health=$(ctlj health)
jq -e '.metadata_journal.copies >= 2 and .metadata_journal.durable_lsn > 0' <<<"$health" >/dev/null \
    || fail "health lacks the journal state: $(jq -c .metadata_journal <<<"$health")"
stop_daemon

say "clean stop, metadata.db deleted: the tree is back from the journal alone"
delete_db
start_daemon mount
namespace_fingerprint >"$WORK/after"
diff "$WORK/before" "$WORK/after" || fail "the namespace differs after the restore"
grep -q 'rebuilt it from' "$DAEMON_LOG" || fail "the daemon did not say it rebuilt the database"
[ ! -e "$DB.restored" ] || fail "a complete restore left the orphan-sweep marker"

say "kill -9 with writers running: every file closed before the kill is back"
mkdir -p "$T/busy"
# Each writer: plan a file (its size in planned-N), write it under a .tmp
# name (closed = durable), log its checksum under the final name, rename.
writer() {
    local i=0 size
    while :; do
        size=$((RANDOM * 7 + 1))
        echo "w$1-$i $size" >>"$WORK/planned-$1"
        mkrand "$WORK/src-$1" "$size"
        cp "$WORK/src-$1" "$T/busy/w$1-$i.tmp"
        echo "$(sha_of "$WORK/src-$1") tree/busy/w$1-$i" >>"$WORK/closed-$1"
        mv "$T/busy/w$1-$i.tmp" "$T/busy/w$1-$i"
        i=$((i + 1))
    done
}
: >"$WORK/closed-1"; : >"$WORK/closed-2"; : >"$WORK/planned-1"; : >"$WORK/planned-2"
writer 1 & track_bg $!
writer 2 & track_bg $!
sleep 3
mkrand "$T/fsynced" 3000
python3 -c "import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)" "$T/fsynced"
sha_fsynced=$(sha_of "$T/fsynced")
kill9_daemon
for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
wait 2>/dev/null || true
unmount_mnt
delete_db
start_daemon mount
n=0
while read -r sum path; do
    # Logged after the close returned (content and creation durable), before
    # the rename, which is journaled with the next durable operation: the
    # file is there under one of its two names, whole.
    if [ -e "$MNT/$path" ]; then
        assert_eq "$sum" "$(sha_of "$MNT/$path")" "content of $path"
    else
        [ -e "$MNT/$path.tmp" ] || fail "$path (closed before the kill) is gone"
        assert_eq "$sum" "$(sha_of "$MNT/$path.tmp")" "content of $path.tmp"
    fi
    n=$((n + 1))
done < <(cat "$WORK"/closed-*)
[ "$n" -gt 5 ] || fail "the writers closed only $n files before the kill"
assert_eq "$sha_fsynced" "$(sha_of "$T/fsynced")" "the fsynced file"
# Nothing half-written: a file no line names is the one its writer had in
# hand at the kill; it is empty (created, content never committed) or
# whole (its planned size).
unlisted=0
for f in "$T"/busy/*; do
    name=${f#"$MNT/"}
    base=${name%.tmp}
    grep -q " $base\$" "$WORK"/closed-* && continue
    planned=$(awk -v b="${base##*/}" '$1 == b { print $2 }' "$WORK"/planned-*)
    [ -n "$planned" ] || fail "$name is visible but no writer planned it"
    size=$(stat -c %s "$f")
    [ "$size" = 0 ] || [ "$size" = "$planned" ] || fail "$name is half-written: $size of $planned bytes"
    unlisted=$((unlisted + 1))
done
[ "$unlisted" -le 2 ] || fail "$unlisted unfinished files are visible (2 writers)"
echo "$n closed files back after kill -9 and the database deleted"
stop_daemon

say "kill -9 right after a change no sync wrote out: the restart anchors the journal with a snapshot"
start_daemon mount
mkdir "$T/unsynced-dir"
kill9_daemon
unmount_mnt
start_daemon mount
grep -q 'taking a metadata snapshot before serving' "$DAEMON_LOG" \
    || fail "the restart did not anchor the journal that missed the last change"
[ -d "$T/unsynced-dir" ] || fail "the change committed locally is gone after the restart"
assert_eq healthy "$(ctlj health | jq -r .status)" "health once the anchoring snapshot is taken"
namespace_fingerprint >"$WORK/before-anchor"
stop_daemon
delete_db
start_daemon mount
namespace_fingerprint >"$WORK/after-anchor"
diff "$WORK/before-anchor" "$WORK/after-anchor" || fail "the namespace differs after a restore from the anchoring snapshot"
[ ! -e "$DB.restored" ] || fail "a restore from the anchoring snapshot with no change after it was taken for incomplete"
stop_daemon

say "a corrupted page in metadata.db: rebuilt at start"
fingerprint_now() { start_daemon mount; namespace_fingerprint; stop_daemon; }
fingerprint_now >"$WORK/before2"
size=$(stat -c %s "$DB")
dd if=/dev/urandom of="$DB" bs=4096 seek=1 count=1 conv=notrunc status=none
[ "$size" -gt 8192 ] || fail "database too small to corrupt a page: $size"
fingerprint_now >"$WORK/after2"
grep -q 'metadata.db failed its check' "$DAEMON_LOG" || fail "the corrupted database was not rebuilt"
diff "$WORK/before2" "$WORK/after2" || fail "the namespace differs after the rebuild of a corrupt database"

say "journal copies corrupted on one node: the others are used; scrub repairs the copy"
start_daemon mount
mkrand "$T/late" 4000
sync
ctl snapshot >/dev/null
mkrand "$T/after-snapshot" 7000
sync
ctl scrub >/dev/null   # closes the active segment
namespace_fingerprint >"$WORK/before3"
first=$(journal_copies | head -1)
for f in $(find "$(dirname "$first")" -name 'journal-*.mgjnl'); do
    size=$(stat -c %s "$f")
    printf 'XXXXXXXX' | dd of="$f" bs=1 seek=$((size - 20)) conv=notrunc status=none
done
stop_daemon
delete_db
start_daemon mount
namespace_fingerprint >"$WORK/after3"
diff "$WORK/before3" "$WORK/after3" || fail "the namespace differs when one node's journal copies are bad"
out=$(ctl scrub --repair)
grep -q 'bad copies: [1-9]' <<<"$out" || fail "scrub did not report the bad journal copies: $out"
ctl scrub | grep -q 'bad copies: 0' || fail "a second scrub still finds bad journal copies"
ctlj health | jq -e '.metadata_journal.bad_copies == 0' >/dev/null \
    || fail "scrub left bad journal copies: $(ctlj health | jq -c .metadata_journal) / $out"
stop_daemon

echo "ok: $TEST_NAME"
