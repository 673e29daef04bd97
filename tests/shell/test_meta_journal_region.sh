#!/usr/bin/env bash
# The metadata disk and a whole region lost at once: 4+2 over 3 regions
# (two nodes per region), metadata.db and both node folders of one region
# deleted while the daemon is stopped. The restart rebuilds the database
# from the journal copies in the other regions, every file is identical,
# and recovering the region's nodes restores every shard and each journal
# segment's m+1 copies.
export MINIGCS_TEST_K=4 MINIGCS_TEST_M=2 MINIGCS_TEST_NODES=6
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_fuse

DB=$WORK/metadata.db
# Copies per journal segment on the given nodes: "name count" lines.
segment_copies() {
    find "$@" -path '*/meta/journal/journal-*.mgjnl' -printf '%f\n' 2>/dev/null | sort | uniq -c | awk '{print $2, $1}'
}
nodes_all() { for i in 1 2 3 4 5 6; do node_dir "$i"; done; }

CFG_METADATA_EXTRA="  snapshot_interval_secs: 0"
write_config

say "a tree written through the mount (4+2, six nodes in three regions)"
start_daemon mount
mkdir -p "$MNT/d/e"
mkrand "$MNT/d/big" $((5 * 1048576 + 3))
mkrand "$MNT/d/e/small" 777
ln "$MNT/d/big" "$MNT/d/big-link"
ln -s e/small "$MNT/d/sym"
setfattr -n user.k -v v "$MNT/d/e/small"
mv "$MNT/d/e/small" "$MNT/d/e/moved"
chmod 0600 "$MNT/d/big"
sync
namespace_fingerprint >"$WORK/before"
# Each segment on m+1 = 3 nodes, one per region (node N is in region
# (N-1) mod 3).
segment_copies $(nodes_all) >"$WORK/segments"
[ -s "$WORK/segments" ] || fail "no journal segment on the nodes"
while read -r name count; do
    assert_eq 3 "$count" "copies of $name"
    regions=$(for i in 1 2 3 4 5 6; do
        if [ -e "$(node_dir "$i")/meta/journal/$name" ]; then echo $(((i - 1) % 3)); fi
    done | sort -u | wc -l)
    assert_eq 3 "$regions" "regions holding $name"
done <"$WORK/segments"
stop_daemon

say "metadata.db and region us-east-1 (node-1, node-4) deleted"
rm -f "$DB" "$DB-wal" "$DB-shm"
rm -rf "$(node_dir 1)" "$(node_dir 4)"
start_daemon mount
grep -q 'rebuilt it from' "$DAEMON_LOG" || fail "the daemon did not rebuild the database"
namespace_fingerprint >"$WORK/after"
diff "$WORK/before" "$WORK/after" || fail "the namespace differs after losing the metadata and a region"

say "recovering the region restores every shard and the journal's copies"
ctl recover node-1 >/dev/null
ctl recover node-4 >/dev/null
health=$(ctlj health)
assert_eq 0 "$(jq .chunks_missing_shards <<<"$health")" "chunks missing shards after recovery"
assert_eq healthy "$(jq -r .status <<<"$health")" "health after recovery"
segment_copies $(nodes_all) >"$WORK/segments"
[ -s "$WORK/segments" ] || fail "no journal segment on the nodes after recovery"
while read -r name count; do
    [ "$count" -ge 3 ] || fail "journal segment $name has $count copies after recovery (3 wanted)"
done <"$WORK/segments"
[ -n "$(segment_copies "$(node_dir 1)" "$(node_dir 4)")" ] \
    || fail "no journal segment copy went back to the rebuilt region"
namespace_fingerprint >"$WORK/after2"
diff "$WORK/before" "$WORK/after2" || fail "the namespace differs after recovery"
stop_daemon
echo "ok: $TEST_NAME"
