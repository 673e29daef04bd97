#!/usr/bin/env bash
# Metadata snapshots on the nodes and restore from them (with the journal
# after them; the journal's own cases are in test_meta_journal.sh): a tree written
# through the mount survives deleting metadata.db (and its -wal/-shm), a
# corrupted snapshot copy is passed over for another, a database with
# corrupted pages is replaced by the snapshot, `restore-meta`
# previews and writes side copies, and the restore still works with a
# whole region's node folder gone too (3 nodes in 3 regions, k=2 m=1).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# Shard files are damaged or counted directly: every shard in its own file.
CFG_SEGMENT_MAX_SHARD=0
write_config
need_fuse

DB=$WORK/metadata.db
T=$MNT/tree

# The namespace and content as a listing: path, type, mode, size, link
# target, then every file's SHA-256 and the xattrs.
fingerprint() {
    (cd "$MNT" && find . -path ./lost+found -prune -o -printf '%p %y %m %s %l\n' | sort)
    (cd "$MNT" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
    (cd "$MNT" && getfattr -d -h -R --absolute-names . 2>/dev/null | grep -v '^$' || true)
}
delete_db() { rm -f "$DB" "$DB-wal" "$DB-shm"; }
# corrupt FILE: flip a byte in the middle of it
corrupt() {
    local size off byte
    size=$(stat -c %s "$1")
    off=$((size / 2))
    byte=$(od -An -tu1 -j "$off" -N1 "$1" | tr -d ' ')
    printf "$(printf '\\%03o' $(((byte + 1) % 256)))" | dd of="$1" bs=1 seek="$off" conv=notrunc status=none
}
snapshot_copies() { find "$WORK"/node-*/meta/snapshots -name 'snapshot-*.mgsnap' 2>/dev/null | sort; }

say "a tree through the mount: nested folders, files across chunks, a symlink, chmod, an xattr"
start_daemon mount
mkdir -p "$T/a/b/c" "$T/empty"
mkrand "$T/a/one-chunk" 1048576
mkrand "$T/a/b/three-chunks-and-a-bit" $((3 * 1048576 + 17))
mkrand "$T/a/b/c/small" 1000
: >"$T/zero"
ln -s a/b/c/small "$T/link"
chmod 0640 "$T/a/one-chunk"
chmod 0700 "$T/a/b"
setfattr -n user.color -v blue "$T/a/b/c/small"
sync
fingerprint >"$WORK/before"
ctlj workers | jq -e '.workers | map(.name) | index("meta-snapshot")' >/dev/null \
    || fail "ctl workers does not list the meta-snapshot worker"

say "ctl snapshot stores copies on m+1 = 2 nodes; health shows them"
out=$(ctl snapshot) || fail "ctl snapshot failed: $out"
grep -q 'metadata snapshot #1' <<<"$out" || fail "ctl snapshot said: $out"
assert_eq 2 "$(snapshot_copies | wc -l)" "snapshot copies on the nodes"
health=$(ctlj health)
assert_eq 1 "$(jq .metadata_snapshot.seq <<<"$health")" "health: newest snapshot"
assert_eq 2 "$(jq .metadata_snapshot.copies <<<"$health")" "health: snapshot copies"
assert_eq healthy "$(jq -r .status <<<"$health")" "health status"
api /cluster/health | jq -e '.metadata_snapshot.copies == 2' >/dev/null || fail "GET /cluster/health lacks the snapshot state"
out=$(ctl snapshot)
grep -q 'unchanged since snapshot #1' <<<"$out" || fail "an unchanged database was snapshotted again: $out"
out=$("$MINIGCS_BIN" restore-meta -c "$CONFIG" --to "$WORK/live.db" --dry-run) \
    || fail "restore-meta --dry-run next to the running daemon failed: $out"
grep -q 'snapshot #1 ' <<<"$out" || fail "restore-meta --dry-run next to the running daemon said: $out"
[ ! -e "$WORK/live.db" ] || fail "--dry-run wrote $WORK/live.db"
stop_daemon

say "restore-meta refuses to overwrite an intact database; --dry-run names the snapshot"
if out=$("$MINIGCS_BIN" restore-meta -c "$CONFIG" 2>&1); then fail "restore-meta overwrote an intact database: $out"; fi
grep -q 'intact' <<<"$out" || fail "refusal did not say why: $out"
out=$("$MINIGCS_BIN" restore-meta -c "$CONFIG" --dry-run) || fail "restore-meta --dry-run failed: $out"
grep -q 'snapshot #1 ' <<<"$out" && grep -q '4 file(s)' <<<"$out" && grep -q 'dry run' <<<"$out" \
    || fail "restore-meta --dry-run said: $out"

say "restore-meta --to writes a valid side copy"
"$MINIGCS_BIN" restore-meta -c "$CONFIG" --to "$WORK/side.db" >/dev/null
assert_eq ok "$(sqlite3 "$WORK/side.db" 'PRAGMA integrity_check')" "side copy integrity"
assert_eq 4 "$(sqlite3 "$WORK/side.db" 'SELECT COUNT(*) FROM inodes WHERE kind=1')" "files in the side copy"
if "$MINIGCS_BIN" restore-meta -c "$CONFIG" --to "$WORK/side.db" >/dev/null 2>&1; then
    fail "restore-meta --to overwrote an existing file"
fi

say "metadata.db, -wal and -shm deleted: the start restores the snapshot, the tree is identical"
delete_db
start_daemon mount
grep -q 'rebuilt it from snapshot #1' "$DAEMON_LOG" || { print_log; fail "the start did not log the restore"; }
fingerprint >"$WORK/after"
diff "$WORK/before" "$WORK/after" || fail "the restored tree differs"
stop_daemon

say "corrupted pages in metadata.db: the start restores the snapshot and keeps the bad file aside"
dd if=/dev/urandom of="$DB" bs=4096 seek=2 count=2 conv=notrunc status=none
start_daemon mount
grep -q 'metadata.db failed its check' "$DAEMON_LOG" || { print_log; fail "the corrupt database was not restored"; }
ls "$DB".replaced-* >/dev/null 2>&1 || fail "the corrupt database was not kept aside"
fingerprint >"$WORK/after"
diff "$WORK/before" "$WORK/after" || fail "the tree restored over a corrupt database differs"
stop_daemon

say "one copy of the newest snapshot corrupted: the other copy is used"
# (every restore takes a snapshot of what it rebuilt: the newest is not #1)
newest=$(snapshot_copies | xargs -n1 basename | sort | tail -1)
first=$(snapshot_copies | grep "/$newest\$" | head -1)
corrupt "$first"
delete_db
start_daemon mount
grep -q 'database checksum mismatch' "$DAEMON_LOG" || { print_log; fail "the corrupt copy was not reported"; }
fingerprint >"$WORK/after"
diff "$WORK/before" "$WORK/after" || fail "the tree restored from the second copy differs"

say "a later change and a new snapshot; then metadata.db and a whole region's node folder are lost"
mkrand "$T/a/later" 5000
sync
taken=$(ctlj snapshot)
jq -e .taken <<<"$taken" >/dev/null || fail "no snapshot was taken after a change: $taken"
seq=$(jq .seq <<<"$taken")
fingerprint >"$WORK/before"
holder=$(ctlj health | jq -r '.metadata_snapshot.nodes[0]')
stop_daemon
delete_db
rm -rf "$WORK/$holder"
start_daemon mount
grep -q "rebuilt it from snapshot #$seq " "$DAEMON_LOG" || { print_log; fail "snapshot #$seq was not restored without $holder"; }
fingerprint >"$WORK/after"
diff "$WORK/before" "$WORK/after" || fail "the tree restored without $holder's region differs"

say "ctl recover $holder rebuilds the node and the snapshot copies"
ctl recover "$holder" >/dev/null
wait_until 20 bash -c "[ \"\$('$MINIGCS_BIN' ctl -c '$CONFIG' --json health | jq -r .status)\" = healthy ]" \
    || fail "health after recovery: $(ctlj health)"
health=$(ctlj health)
assert_eq 2 "$(jq .metadata_snapshot.copies <<<"$health")" "snapshot copies after recovery"
jq -e --arg h "$holder" '.metadata_snapshot.nodes | index($h)' >/dev/null <<<"$health" \
    || fail "the rebuilt $holder holds no snapshot copy: $health"
stop_daemon

say "a file written after the snapshot, every journal copy lost: its shards outlive restarts until fsck --rebuild brings it back"
start_daemon mount
mkrand "$WORK/late.bin" 300000
cp "$WORK/late.bin" "$T/late.bin"
sync
stop_daemon
delete_db
rm -rf "$WORK"/node-*/meta/journal
start_daemon mount
grep -q 'NOT recovered' "$DAEMON_LOG" || fail "the restore log does not say later changes may be lost"
[ -e "$T/late.bin" ] && fail "late.bin is in a snapshot taken before it was written"
[ -f "$DB.restored" ] || fail "the restore left no $DB.restored marker"
shards() { find "$WORK"/node-* -name '*.shard' | sort; }
shards >"$WORK/shards-before"
stop_daemon
start_daemon mount
sweep_doing() { ctlj workers | jq -r '.workers[] | select(.name == "orphan-sweep") | .doing // ""'; }
sweep_state() { ctlj workers | jq -r '.workers[] | select(.name == "orphan-sweep") | .state'; }
sweep_done() { [ "$(sweep_state)" = stopped ]; }
wait_until 20 sweep_done || fail "the orphan sweep did not finish: $(ctlj workers)"
sweep_doing | grep -q skipped || fail "the orphan sweep ran after a restore: $(sweep_doing)"
shards >"$WORK/shards-after"
diff "$WORK/shards-before" "$WORK/shards-after" >/dev/null || fail "shard files were deleted while the restore marker stands"
stop_daemon
rc=0
(cd "$WORK" && "$MINIGCS_BIN" fsck -c "$CONFIG" --rebuild) >"$WORK/rebuild.out" 2>&1 || rc=$?
[ "$rc" -le 1 ] || { cat "$WORK/rebuild.out"; fail "fsck --rebuild failed (exit $rc)"; }
[ -f "$DB.restored" ] && fail "fsck --rebuild left the restore marker"
start_daemon mount
want=$(sha_of "$WORK/late.bin")
found=$(find "$MNT/lost+found" -type f -exec sha256sum {} + | awk -v w="$want" '$1 == w { print $2; exit }')
[ -n "$found" ] || { cat "$WORK/rebuild.out"; fail "late.bin was not recovered into lost+found"; }
stop_daemon
say "PASS"
