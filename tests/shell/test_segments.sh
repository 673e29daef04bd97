#!/usr/bin/env bash
# Small files live in the nodes' segment files: a writer closes small files
# through the mount, the daemon is killed with -9 while it writes, and after
# a restart every file whose close was acknowledged reads back by sha256.
# Then most files are deleted, the segment cleaner rewrites the mostly-dead
# segments and removes them (its figures say so), and the rest still read
# back, also after a restart, and after fsck --rebuild from the shards
# alone.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_fuse

CFG_EXTRA="segments:
  segment_size: 1M
  max_shard: 64K
  cleaner_interval_secs: 1
  cleaner_dead_fraction: 0.5"
write_config

ACKED=$WORK/acked.txt
: >"$ACKED"
mkdir -p "$WORK/src"

# writer FIRST COUNT: create, write 1-12 KiB, close each file under $MNT/f;
# a file's name goes to $ACKED only after its close returned.
writer() {
    python3 - "$MNT/f" "$WORK/src" "$ACKED" "$1" "$2" <<'PY'
import os, sys
dst, src, acked, first, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
os.makedirs(dst, exist_ok=True)
log = open(acked, "a")
for i in range(first, first + count):
    name = "file-%05d" % i
    data = os.urandom(1024 + (i * 7919) % (11 * 1024))
    with open(os.path.join(src, name), "wb") as f:
        f.write(data)
    fd = os.open(os.path.join(dst, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, data)
    os.close(fd)
    log.write(name + "\n")
    log.flush()
PY
}

verify_acked() { # verify_acked WHEN: every acknowledged, not deleted file reads back
    local name n=0
    while read -r name; do
        [ -e "$WORK/deleted/$name" ] && continue
        [ -f "$MNT/f/$name" ] || fail "$name missing ($1)"
        assert_eq "$(sha_of "$WORK/src/$name")" "$(sha_of "$MNT/f/$name")" "sha256 of $name ($1)"
        n=$((n + 1))
    done <"$ACKED"
    echo "verified $n files ($1)"
}

seg_files() { find "$WORK"/node-*/segments -name 'seg-*.seg' 2>/dev/null | wc -l; }
shard_files() { find "$WORK"/node-*/shards -name '*.shard' 2>/dev/null | wc -l; }

start_daemon mount

say "small files closed through the mount go to segments, not files"
writer 0 200 || fail "writer failed before any kill"
[ "$(seg_files)" -ge 3 ] || fail "no segment files: $(find "$WORK"/node-* -maxdepth 2 | head -n 20)"
assert_eq 0 "$(shard_files)" "shard files for small files"

say "kill -9 while a writer closes small files"
writer 200 100000 >/dev/null 2>&1 &
WRITER=$!
track_bg "$WRITER"
wait_until 60 bash -c "[ \$(wc -l <'$ACKED') -ge 600 ]" || fail "writer too slow: $(wc -l <"$ACKED") files"
kill9_daemon
wait "$WRITER" 2>/dev/null || true
echo "$(wc -l <"$ACKED") closes acknowledged before the kill"

start_daemon mount
verify_acked "after kill -9"

say "deletes, then the cleaner reclaims the dead segments"
mkdir -p "$WORK/deleted"
mapfile -t names <"$ACKED"
for ((i = 0; i < ${#names[@]}; i++)); do
    if (( i % 8 != 0 )); then
        rm "$MNT/f/${names[$i]}"
        : >"$WORK/deleted/${names[$i]}"
    fi
done
reclaimed() { ctlj stats | jq -e '[.node_stats[].segments.reclaimed_bytes // 0] | add > 0' >/dev/null; }
wait_until 60 reclaimed || fail "the cleaner reclaimed nothing: $(ctlj stats | jq -c '[.node_stats[] | .segments]') workers: $(ctl workers)"
j=$(ctlj stats)
jq -e 'all(.node_stats[]; .segments.segments >= 1 and (.segments.live_bytes | type == "number") and (.segments.dead_bytes | type == "number") and .segments.moved_bytes > 0)' <<<"$j" >/dev/null \
    || fail "segment figures: $(jq -c '[.node_stats[] | .segments]' <<<"$j")"
ctlj workers | jq -e '.workers[] | select(.name == "seg-cleaner") | .done > 0 and (.doing | test("reclaimed [1-9]"))' >/dev/null \
    || fail "seg-cleaner status: $(ctlj workers | jq -c '.workers[] | select(.name == "seg-cleaner")')"
curl -sS "$API_URL/metrics" >"$WORK/metrics.txt"
grep -q '^minigcs_node_segment_reclaimed_bytes_total{node="node-1"}' "$WORK/metrics.txt" \
    || fail "Prometheus lacks the segment figures"
verify_acked "after cleaning"

say "after a clean restart"
stop_daemon
start_daemon mount
verify_acked "after restart"
for ((i = 0; i < ${#names[@]}; i++)); do
    if [ -e "$WORK/deleted/${names[$i]}" ] && [ -e "$MNT/f/${names[$i]}" ]; then
        fail "deleted ${names[$i]} is back"
    fi
done
j=$(ctlj scrub)
jq -e '.corrupt == 0 and .missing == 0 and .shards_checked > 0' <<<"$j" >/dev/null || fail "scrub: $j"
# The acknowledged survivors, and perhaps the file whose close the kill cut
# short when its bytes were stored all the same (an empty one has no shards
# for fsck to find).
present=$(find "$MNT/f" -type f -size +0 | wc -l)
stop_daemon

say "metadata lost: fsck --rebuild finds the files in the segments"
rm -f "$WORK/metadata.db" "$WORK/metadata.db-wal" "$WORK/metadata.db-shm"
rm -rf "$WORK"/node-*/meta
(cd "$WORK" && "$MINIGCS_BIN" fsck -c "$CONFIG" --rebuild) >"$WORK/rebuild.out" 2>&1 \
    || { cat "$WORK/rebuild.out"; fail "fsck --rebuild failed"; }
grep -q "files recovered now  *$present$" "$WORK/rebuild.out" \
    || { cat "$WORK/rebuild.out"; fail "expected $present files recovered (no deleted one)"; }
start_daemon mount
n=0
while read -r name; do
    if [ -e "$WORK/deleted/$name" ]; then
        [ -z "$(find "$MNT" -name "$name")" ] || fail "deleted $name came back in the rebuild"
        continue
    fi
    found=$(find "$MNT" -name "$name" -type f | head -n 1)
    [ -n "$found" ] || fail "$name not rebuilt"
    assert_eq "$(sha_of "$WORK/src/$name")" "$(sha_of "$found")" "sha256 of rebuilt $name"
    n=$((n + 1))
done <"$ACKED"
echo "verified $n rebuilt files"
stop_daemon
echo "PASS: $TEST_NAME"
