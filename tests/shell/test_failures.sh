#!/usr/bin/env bash
# Failures lose nothing:
#  - each node folder deleted in turn: every file reads back identical, the
#    failure is reported, `ctl recover` rebuilds it, health is healthy again,
#    scrub is clean;
#  - one flipped byte in a data shard and in a parity shard, and a truncated
#    shard: reads are correct, scrub finds them, scrub --repair fixes them;
#  - writes while a node is gone succeed; after recovery the repair queue and
#    the missing-shard count are 0;
#  - a whole region (2 nodes of a 6-node cluster) deleted: all readable,
#    recovery restores full redundancy.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# Shard files are damaged or counted directly: every shard in its own file.
CFG_SEGMENT_MAX_SHARD=0
write_config
need_fuse

C=$CFG_CHUNK
declare -A SHA       # key -> sha256
mkdir -p "$WORK/src"

put_mount() { # put_mount KEY SIZE
    mkrand "$WORK/src/${1//\//_}" "$2"
    mkdir -p "$(dirname "$MNT/$1")"
    cp "$WORK/src/${1//\//_}" "$MNT/$1"
    SHA[$1]=$(sha_of "$WORK/src/${1//\//_}")
}
put_api() { # put_api KEY SIZE
    mkrand "$WORK/src/${1//\//_}" "$2"
    api "/objects/$1" -X PUT --data-binary "@$WORK/src/${1//\//_}" --fail -o /dev/null || fail "upload of $1 failed"
    SHA[$1]=$(sha_of "$WORK/src/${1//\//_}")
}
verify_all() { # verify_all WHEN: every key via the API and via the mount (page cache dropped)
    local k
    drop_caches
    for k in "${!SHA[@]}"; do
        api "/objects/$k" --fail -o "$WORK/got" || fail "GET $k failed ($1)"
        assert_eq "${SHA[$k]}" "$(sha_of "$WORK/got")" "sha256 of $k via the API ($1)"
        assert_eq "${SHA[$k]}" "$(sha_of "$MNT/$k")" "sha256 of $k via the mount ($1)"
    done
    echo "verified ${#SHA[@]} objects via API and mount ($1)"
}
# ctl health exits 1 when degraded: that status is the answer, not a failure.
health() { ctlj health || [ $? = 1 ]; }
node_reported_failed() { health | jq -e --arg n "$1" '.status != "healthy" and any(.failed_nodes[]; . == $n)' >/dev/null; }
fully_healthy() { health | jq -e '.status == "healthy" and .failed_nodes == [] and .chunks_missing_shards == 0 and .repair_queue == 0' >/dev/null; }
expect_healthy() {
    wait_until 30 fully_healthy || fail "not healthy ($1): $(health)"
}
expect_scrub_clean() {
    local j
    j=$(ctlj scrub)
    jq -e '.corrupt == 0 and .missing == 0 and .shards_checked > 0' <<<"$j" >/dev/null || fail "scrub not clean ($1): $j"
}
recover() { # recover NODE: ctl recover, check the summary
    local j
    j=$(ctlj recover "$1") || fail "ctl recover $1 failed"
    jq -e --arg n "$1" '.node_id == $n and (.shards_rebuilt | type == "number") and (.mttr_ms | type == "number")' <<<"$j" >/dev/null || fail "recover $1 summary: $j"
    echo "recover $1: $(jq -c '{chunks_total, shards_rebuilt, bytes_rebuilt, mttr_ms}' <<<"$j")"
    [ -f "$WORK/$1/minigcs-node.json" ] || fail "identity file of $1 not re-created by recovery"
    RECOVER_JSON=$j
}

start_daemon mount

say "files of several chunks, through the mount and the API"
put_mount f1 $((C * 7 / 2))
put_mount f2 $((2 * C + 1))
put_mount sub/f3 1000
put_api a1 $((5 * C))
put_api a/b/nested $((C + C / 5))
verify_all "initial"
expect_healthy "initial"

for n in 1 2 3; do
    say "node-$n folder deleted"
    rm -rf "$(node_dir $n)"
    verify_all "node-$n deleted"
    wait_until 20 node_reported_failed node-$n || fail "deleted node-$n not reported as failed: $(health)"
    recover node-$n
    jq -e '.shards_rebuilt > 0' <<<"$RECOVER_JSON" >/dev/null || fail "recover node-$n rebuilt nothing: $RECOVER_JSON"
    expect_healthy "after recovering node-$n"
    expect_scrub_clean "after recovering node-$n"
    verify_all "node-$n recovered"
done

say "bit rot: flip the last byte of a data shard and of a parity shard (other chunk)"
shard_file() { # shard_file NODE CHUNK_ID INDEX
    local f cid=$2
    f=$(find "$WORK/$1/shards" -name "$cid.$3.shard" 2>/dev/null | head -n 1)
    if [ -z "$f" ] && [[ $cid =~ ^[0-9]+$ ]]; then
        f=$(find "$WORK/$1/shards" -name "$(printf '%016x' "$cid").$3.shard" 2>/dev/null | head -n 1)
    fi
    [ -n "$f" ] || { echo "no shard file for chunk $cid index $3 on $1" >&2; return 1; }
    echo "$f"
}
flip_last_byte() {
    python3 - "$1" <<'PY'
import os, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(-1, os.SEEK_END)
    b = f.read(1)
    f.seek(-1, os.SEEK_END)
    f.write(bytes([b[0] ^ 0xFF]))
PY
}
info=$(ctlj info f1)
d_cid=$(jq -r '.chunks[0].chunk_id' <<<"$info")
d_node=$(jq -r '.chunks[0].shards[] | select(.index == 0) | .node' <<<"$info")
p_cid=$(jq -r '.chunks[1].chunk_id' <<<"$info")
p_node=$(jq -r --argjson k "$CFG_K" '.chunks[1].shards[] | select(.index == $k) | .node' <<<"$info")
d_file=$(shard_file "$d_node" "$d_cid" 0) || fail "data shard file not found"
p_file=$(shard_file "$p_node" "$p_cid" "$CFG_K") || fail "parity shard file not found"
echo "data shard:   $d_file"
echo "parity shard: $p_file"
flip_last_byte "$d_file"
flip_last_byte "$p_file"
j=$(ctlj scrub)
echo "scrub: $(jq -c '{shards_checked, corrupt, missing, problems}' <<<"$j")"
jq -e '.corrupt == 2' <<<"$j" >/dev/null || fail "scrub should find exactly 2 corrupt shards: $j"
jq -e --arg d "$d_cid" --arg p "$p_cid" --argjson k "$CFG_K" \
    'any(.problems[]; (.chunk_id | tostring) == $d and .shard_index == 0) and any(.problems[]; (.chunk_id | tostring) == $p and .shard_index == $k)' \
    <<<"$j" >/dev/null || fail "scrub problems do not name the two flipped shards: $j"
verify_all "with two corrupt shards"
j=$(ctlj scrub --repair)
echo "scrub --repair: $(jq -c '{corrupt, missing, repaired}' <<<"$j")"
# (the shards may already have been rewritten by the background repair that
# the first scrub queued; either way --repair must fix whatever it still finds)
jq -e '.repaired == (.corrupt + .missing) and .unrepairable == 0' <<<"$j" >/dev/null || fail "scrub --repair did not repair what it found: $j"
expect_scrub_clean "second scrub after repair"
verify_all "after scrub --repair"

say "bit rot: truncated shard"
info=$(ctlj info a1)
t_cid=$(jq -r '.chunks[2].chunk_id' <<<"$info")
t_node=$(jq -r '.chunks[2].shards[] | select(.index == 1) | .node' <<<"$info")
t_file=$(shard_file "$t_node" "$t_cid" 1) || fail "shard file to truncate not found"
truncate -s $(($(stat -c %s "$t_file") / 2)) "$t_file"
verify_all "with a truncated shard"
j=$(ctlj scrub --repair)
echo "scrub --repair: $(jq -c '{corrupt, missing, repaired}' <<<"$j")"
jq -e '.repaired == (.corrupt + .missing) and .unrepairable == 0' <<<"$j" >/dev/null || fail "scrub --repair did not repair what it found: $j"
expect_scrub_clean "after repairing the truncated shard"
ctlj info a1 | jq -e 'all(.chunks[]; all(.shards[]; .healthy == true))' >/dev/null || fail "a1 not fully healthy after repair: $(ctlj info a1)"
[ "$(stat -c %s "$t_file" 2>/dev/null || echo 0)" -gt "$(($(stat -c %s "$d_file") / 2))" ] || [ ! -e "$t_file" ] || fail "truncated shard file $t_file left truncated"

say "writes while node-1 is gone succeed; recovery drains the repair queue"
rm -rf "$(node_dir 1)"
wait_until 20 node_reported_failed node-1 || fail "deleted node-1 not reported as failed: $(health)"
put_mount during/m1 $((3 * C + 17))
put_api during/a1 $((2 * C))
verify_all "written while node-1 is gone"
j=$(health)
echo "health while node-1 is gone: $(jq -c '{status, failed_nodes, chunks_missing_shards, repair_queue}' <<<"$j")"
jq -e '.chunks_missing_shards > 0 or .repair_queue > 0' <<<"$j" >/dev/null || fail "shards that could not be placed are not counted: $j"
recover node-1
expect_healthy "after recovering node-1 following degraded writes"
for k in during/m1 during/a1; do
    ctlj info "$k" | jq -e 'all(.chunks[]; (.shards | length == 3) and all(.shards[]; .healthy == true) and ([.shards[].node] | unique | length == 3))' >/dev/null \
        || fail "$k does not have 3 healthy shards on 3 nodes per chunk: $(ctlj info "$k")"
done
expect_scrub_clean "after degraded writes + recovery"
verify_all "after degraded writes + recovery"

if [ "$(id -u)" != 0 ]; then
    say "node-2 unreadable (chmod 000)"
    chmod 000 "$(node_dir 2)"
    verify_all "node-2 chmod 000"
    put_mount during/m2 $((C + 3))
    chmod 755 "$(node_dir 2)"
    recover node-2
    expect_healthy "after chmod 000 + recovery"
else
    echo "(running as root: chmod 000 does not stop root, so the unreadable-folder case is covered by removal)"
fi

say "state survives a restart"
stop_daemon
start_daemon mount
verify_all "after restart"
expect_healthy "after restart"

say "region loss: 6 nodes (2 per region), us-west-1 (node-2, node-5) deleted"
stop_daemon
rm -rf "$WORK"/node-* "$WORK"/metadata.db* "$WORK/src"
mkdir -p "$WORK/src"
SHA=()
CFG_NODES=6
write_config
start_daemon mount
put_mount r/f1 $((4 * C + 3))
put_mount r/f2 $((C - 1))
put_api r/a1 $((3 * C + C / 2))
verify_all "6 nodes"
rm -rf "$(node_dir 2)" "$(node_dir 5)"
verify_all "region us-west-1 deleted"
wait_until 20 node_reported_failed node-2 || fail "node-2 not reported as failed: $(health)"
recover node-2
recover node-5
expect_healthy "after recovering the region"
expect_scrub_clean "after recovering the region"
for k in r/f1 r/a1; do
    ctlj info "$k" | jq -e 'all(.chunks[]; all(.shards[]; .healthy == true))' >/dev/null || fail "$k not fully healthy after region recovery"
done
verify_all "region recovered"

stop_daemon
echo "PASS: $TEST_NAME"
