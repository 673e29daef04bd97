#!/usr/bin/env bash
# Nodes that are buckets on S3 servers: three regions, each a real S3
# endpoint on loopback, hold a 2+1 store mounted here. The servers are
# minigcs daemons serving their own S3 API over a local folder, or with
# REGION_SERVER=s3s-fs (test_s3_nodes_s3sfs.sh) s3s-fs servers from
# crates.io (S3S_FS names the binary).
# - files of every size boundary round-trip through the mount and the API;
#   the shards are objects under the configured prefix; one node's keys come
#   from environment variables;
# - one region's server frozen (SIGSTOP): reads still return the right
#   bytes, writes complete on the other two, health names the node; thawed,
#   the repair queue drains and health is healthy again;
# - kill -9 of the daemon right after acknowledged writes loses nothing;
# - the metadata database lost: the start restores it from the snapshot and
#   journal kept in the buckets (journal appends are part objects there);
# - a region's bucket emptied (its server's store replaced by a new one):
#   `ctl recover` rebuilds it, and reads work from it with another region
#   frozen;
# - a mixed store (a local folder and two buckets) round-trips and reads
#   with a region frozen.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_fuse

ACCESS=regionkey
SECRET=region-secret-123
REGIONS=(us-east-1 us-west-1 eu-west-1)
REGION_PIDS=()
REGION_PORTS=()
FROZEN=

thaw_all() {
    local p
    for p in "${REGION_PIDS[@]}"; do kill -CONT "$p" 2>/dev/null || true; done
}
stop_regions() {
    local p n
    for p in "${REGION_PIDS[@]}"; do
        own_child "$p" || continue
        kill -TERM "$p" 2>/dev/null
        n=0
        while kill -0 "$p" 2>/dev/null && (( n < 50 )); do sleep 0.1; n=$((n + 1)); done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
}
CLEANUP_FIRST=thaw_all
CLEANUP_LAST=stop_regions

REGION_SERVER=${REGION_SERVER:-minigcs}
# start_region N: the S3 server of region N (a one-node minigcs store, or
# s3s-fs over a folder), with a bucket "nodes".
start_region() {
    local n=$1 dir=$WORK/region-$1 port api
    mkdir -p "$dir"
    port=$(pick_port)
    if [ "$REGION_SERVER" = s3s-fs ]; then
        mkdir -p "$dir/root"
        "$S3S_FS" --host 127.0.0.1 --port "$port" --access-key "$ACCESS" --secret-key "$SECRET" \
            "$dir/root" >>"$dir/server.log" 2>&1 &
        REGION_PIDS[$n]=$!
        REGION_PORTS[$n]=$port
        create_bucket "$n"
        return
    fi
    api=$(pick_port)
    cat >"$dir/config.yaml" <<EOF
nodes:
  - id: "r$n-node"
    region: "${REGIONS[$((n - 1))]}"
    storage_path: "./node"
erasure_coding: {k: 1, m: 0}
api: {enabled: true, host: "127.0.0.1", port: $api}
metrics: {enabled: false}
metadata: {path: "./metadata.db"}
control: {socket: "./ctl.sock"}
s3: {enabled: true, host: "127.0.0.1", port: $port, region: "${REGIONS[$((n - 1))]}", access_key: "$ACCESS", secret_key: "$SECRET"}
EOF
    (cd "$dir" && exec "$MINIGCS_BIN" serve -c "$dir/config.yaml") >>"$dir/server.log" 2>&1 &
    REGION_PIDS[$n]=$!
    REGION_PORTS[$n]=$port
    create_bucket "$n"
}
create_bucket() {
    local n=$1 port=${REGION_PORTS[$1]} dir=$WORK/region-$1
    wait_until 30 curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/" ||
        fail "region $n's S3 server does not answer: $(tail -5 "$dir/server.log")"
    # The bucket the node lives in.
    curl -sS -f -o /dev/null --aws-sigv4 "aws:amz:${REGIONS[$((n - 1))]}:s3" \
        --user "$ACCESS:$SECRET" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -X PUT "http://127.0.0.1:$port/nodes" ||
        fail "creating the bucket on region $n"
}
region_objects() { # region_objects N PREFIX: objects of bucket "nodes" on region N's server
    local api
    if [ "$REGION_SERVER" = s3s-fs ]; then
        (cd "$WORK/region-$1/root/nodes" && find . -type f -printf '%P\n') |
            awk -v p="$2" 'index($0, p) == 1' | wc -l
        return
    fi
    api=$(sed -n 's/.*api: {enabled: true, host: "127.0.0.1", port: \([0-9]*\)}.*/\1/p' "$WORK/region-$1/config.yaml")
    curl -sS "http://127.0.0.1:$api/objects?prefix=nodes/$2" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["count"])'
}

for n in 1 2 3; do start_region "$n"; done

export MINIGCS_TEST_NODE3_KEY=$ACCESS MINIGCS_TEST_NODE3_SECRET=$SECRET
API_PORT=$(pick_port)
cat >"$CONFIG" <<EOF
nodes:
  - id: "node-1"
    region: "us-east-1"
    s3: {endpoint: "http://127.0.0.1:${REGION_PORTS[1]}", bucket: "nodes", prefix: "store-a/", region: "us-east-1", access_key: "$ACCESS", secret_key: "$SECRET"}
  - id: "node-2"
    region: "us-west-1"
    s3: {endpoint: "http://127.0.0.1:${REGION_PORTS[2]}", bucket: "nodes", prefix: "store-a/", region: "us-west-1", access_key: "$ACCESS", secret_key: "$SECRET"}
  - id: "node-3"
    region: "eu-west-1"
    s3: {endpoint: "http://127.0.0.1:${REGION_PORTS[3]}", bucket: "nodes", prefix: "store-a/", region: "eu-west-1", access_key_env: "MINIGCS_TEST_NODE3_KEY", secret_key_env: "MINIGCS_TEST_NODE3_SECRET"}
erasure_coding: {k: 2, m: 1, chunk_size: 1048576}
api: {enabled: true, host: "127.0.0.1", port: $API_PORT}
metrics: {enabled: true, output_file: "metrics.csv"}
recovery: {auto: false, node_timeout_ms: 2000, health_interval_secs: 1, scrub_interval_secs: 0}
metadata: {path: "./metadata.db"}
control: {socket: "./ctl.sock"}
mount: {allow_other: $CFG_ALLOW_OTHER}
EOF
API_URL=http://127.0.0.1:$API_PORT
start_daemon mount

say "files of every boundary size round-trip through the mount and the API"
CHUNK=1048576
mkdir -p "$WORK/src"
for size in 0 1 $((CHUNK - 1)) $CHUNK $((CHUNK + 1)) $((3 * CHUNK + 12345)); do
    mkrand "$WORK/src/f$size" "$size"
    cp "$WORK/src/f$size" "$MNT/f$size"
done
drop_caches
for f in "$WORK"/src/*; do
    assert_eq "$(sha_of "$f")" "$(sha_of "$MNT/$(basename "$f")")" "content of $(basename "$f") through the mount"
done
big=f$((3 * CHUNK + 12345))
api "/objects/$big" -o "$WORK/big.api"
assert_eq "$(sha_of "$WORK/src/$big")" "$(sha_of "$WORK/big.api")" "content over the API"
ctl health >/dev/null || fail "health is not healthy: $(ctl health)"
for n in 1 2 3; do
    count=$(region_objects "$n" "store-a/shards/")
    (( count >= 5 )) || fail "region $n holds $count shard objects under the prefix, expected the store's shards"
done
[ "$(region_objects 1 "store-a/minigcs-node.json")" = 1 ] || fail "no identity object on region 1"

say "one region frozen: reads are right, writes complete, health names the node"
kill -STOP "${REGION_PIDS[2]}"
FROZEN=2
drop_caches
start=$SECONDS
assert_eq "$(sha_of "$WORK/src/$big")" "$(sha_of "$MNT/$big")" "read with region 2 frozen"
(( SECONDS - start < 60 )) || fail "the read took $((SECONDS - start)) s with one region frozen"
mkrand "$WORK/src/during" $((2 * CHUNK + 7))
cp "$WORK/src/during" "$MNT/during"
node2_failed() {
    { ctlj health || true; } | python3 -c 'import json, sys; sys.exit("node-2" not in json.load(sys.stdin)["failed_nodes"])'
}
wait_until 30 node2_failed || fail "health does not name node-2 failed: $(ctlj health)"
missing=$( { ctlj health || true; } | python3 -c 'import json, sys; print(json.load(sys.stdin)["chunks_missing_shards"])')
(( missing > 0 )) || fail "a write with node-2 frozen left no chunk missing a shard"

say "thawed: the repair queue drains and every chunk has its shards"
kill -CONT "${REGION_PIDS[2]}"
FROZEN=
all_repaired() {
    { ctlj health || true; } | python3 -c 'import json, sys; d = json.load(sys.stdin); sys.exit(not (d["status"] == "healthy" and d["chunks_missing_shards"] == 0))'
}
wait_until 120 all_repaired || fail "the repair queue did not drain: $(ctlj health)"

say "kill -9 right after acknowledged writes loses nothing"
for i in 1 2 3 4 5; do
    mkrand "$WORK/src/k$i" $((i * 300000))
    cp "$WORK/src/k$i" "$MNT/k$i"
done
kill9_daemon
unmount_mnt
start_daemon mount
drop_caches
for f in "$WORK"/src/*; do
    assert_eq "$(sha_of "$f")" "$(sha_of "$MNT/$(basename "$f")")" "$(basename "$f") after kill -9"
done

say "the metadata database lost: restored at start from the snapshot and journal in the buckets"
for i in $(seq 1 40); do
    printf 'small %s\n' "$i" >"$WORK/src/s$i"
    cp "$WORK/src/s$i" "$MNT/s$i"
done
stop_daemon
rm -f "$WORK"/metadata.db*
start_daemon mount
grep -q "Every acknowledged change is back" "$DAEMON_LOG" || fail "the daemon log does not say the metadata was restored whole"
drop_caches
for f in "$WORK"/src/*; do
    assert_eq "$(sha_of "$f")" "$(sha_of "$MNT/$(basename "$f")")" "$(basename "$f") after the metadata restore"
done

say "a region's bucket emptied: ctl recover rebuilds it"
kill -TERM "${REGION_PIDS[3]}"
wait "${REGION_PIDS[3]}" 2>/dev/null || true
rm -rf "$WORK/region-3"
start_region 3
# The new server listens on a new port: point node-3 at it.
sed -i "s#http://127.0.0.1:[0-9]*\", bucket: \"nodes\", prefix: \"store-a/\", region: \"eu-west-1\"#http://127.0.0.1:${REGION_PORTS[3]}\", bucket: \"nodes\", prefix: \"store-a/\", region: \"eu-west-1\"#" "$CONFIG"
stop_daemon
start_daemon mount
[ "$(region_objects 3 "store-a/shards/")" = 0 ] || fail "the new region 3 bucket is not empty"
ctl recover node-3 >"$WORK/recover.out" || fail "ctl recover node-3 failed: $(cat "$WORK/recover.out")"
(( $(region_objects 3 "store-a/shards/") >= 5 )) || fail "recover put no shards back on region 3"
ctl health >/dev/null || fail "not healthy after recover: $(ctl health)"
kill -STOP "${REGION_PIDS[1]}"
FROZEN=1
drop_caches
for f in "$WORK"/src/*; do
    assert_eq "$(sha_of "$f")" "$(sha_of "$MNT/$(basename "$f")")" "$(basename "$f") read from the rebuilt region with region 1 frozen"
done
kill -CONT "${REGION_PIDS[1]}"
FROZEN=
stop_daemon

say "a mixed store: one local folder and two buckets (another prefix of the same servers)"
rm -rf "$WORK/metadata.db"* "$WORK/mixed-node-1"
python3 - "$CONFIG" "$WORK/mixed-node-1" <<'PY'
import re, sys
path, folder = sys.argv[1], sys.argv[2]
text = open(path).read().replace('prefix: "store-a/"', 'prefix: "store-b/"')
text = re.sub(r'(- id: "node-1"\n    region: "us-east-1"\n)    s3: \{[^}]*\}\n',
              lambda m: m.group(1) + f'    storage_path: "{folder}"\n', text)
open(path, "w").write(text)
PY
grep -q "storage_path" "$CONFIG" || fail "the mixed config has no folder node"
start_daemon mount
for f in "$WORK"/src/*; do cp "$f" "$MNT/"; done
[ -n "$(ls "$WORK/mixed-node-1/shards"/*/ 2>/dev/null)" ] || fail "no shard in the local folder node"
(( $(region_objects 2 "store-b/shards/") >= 5 )) || fail "no shards under store-b/ on region 2"
kill -STOP "${REGION_PIDS[3]}"
FROZEN=3
drop_caches
for f in "$WORK"/src/*; do
    assert_eq "$(sha_of "$f")" "$(sha_of "$MNT/$(basename "$f")")" "$(basename "$f") in the mixed store with region 3 frozen"
done
kill -CONT "${REGION_PIDS[3]}"
FROZEN=
stop_daemon
echo "ok: $TEST_NAME"
