#!/usr/bin/env bash
# Store paths that overlap are refused before anything starts: each bad layout
# (two nodes in one folder, also through a symlink; a node folder inside
# another; metadata.path or control.socket inside a node folder; a node
# folder, the metadata or the socket inside the mount point; the mount point
# inside a node folder) makes `minigcs serve` and `minigcs mount` exit 2 with
# a message naming the keys, leaves nothing mounted and creates no socket.
# A stale FUSE mount at the mount point does not hang the check. Deeply nested
# YAML is refused at once. At run time, a node folder re-pointed into the
# daemon's own mount is never written: the node is reported failed, writes go
# on with the other nodes and the daemon stops cleanly.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# Shard files are damaged or counted directly: every shard in its own file.
CFG_SEGMENT_MAX_SHARD=0
write_config

# If a check below fails with the daemon caught in its own mount, kill -9
# alone cannot end it: abort its FUSE connection (when fusectl is mounted).
abort_then_cleanup() {
    local rc=$? dev
    if [ -n "$DAEMON_PID" ]; then
        dev=$(awk -v m="$MNT" '$5 == m { print $3 }' /proc/self/mountinfo | tail -n 1)
        if [ -n "$dev" ] && [ -w "/sys/fs/fuse/connections/${dev#*:}/abort" ]; then
            echo 1 >"/sys/fs/fuse/connections/${dev#*:}/abort" || true
        fi
    fi
    (exit "$rc")
    cleanup
}
trap abort_then_cleanup EXIT

# bad_config NAME: $CONFIG with the node paths / files given in the environment
bad_config() { # bad_config FILE NODE1 NODE2 NODE3 METADATA SOCKET
    local file=$1
    sed -e "s|storage_path: \"./node-1\"|storage_path: \"$2\"|" \
        -e "s|storage_path: \"./node-2\"|storage_path: \"$3\"|" \
        -e "s|storage_path: \"./node-3\"|storage_path: \"$4\"|" \
        -e "s|path: \"./metadata.db\"|path: \"$5\"|" \
        -e "s|socket: \"./ctl.sock\"|socket: \"$6\"|" "$CONFIG" >"$file"
}

# expect_refused MODE CONFIG MOUNTPOINT EXPECTED_ERE: exit 2 naming the keys, nothing left behind
expect_refused() {
    local mode=$1 cfg=$2 mnt=$3 want=$4 rc=0 start=$SECONDS out
    out=$WORK/refused.out
    if [ "$mode" = mount ]; then
        (cd "$WORK" && timeout 30 "$MINIGCS_BIN" mount "$mnt" -c "$cfg") >"$out" 2>&1 || rc=$?
    else
        (cd "$WORK" && timeout 30 "$MINIGCS_BIN" serve -c "$cfg") >"$out" 2>&1 || rc=$?
    fi
    [ "$rc" = 2 ] || fail "$(basename "$cfg") ($mode): exit code $rc, expected 2: $(cat "$out")"
    grep -qE -- "$want" "$out" || fail "$(basename "$cfg") ($mode): message does not match '$want': $(cat "$out")"
    if awk -v m="$mnt" '$2 == m' /proc/mounts | grep -q .; then fail "$(basename "$cfg") ($mode): $mnt is mounted"; fi
    [ ! -e "$SOCK" ] && [ ! -e "$WORK/node-1/ctl.sock" ] && [ ! -e "$MNT/ctl.sock" ] ||
        fail "$(basename "$cfg") ($mode): a control socket was created"
    echo "ok: $(basename "$cfg" .yaml) ($mode, $((SECONDS - start))s): $(head -c 300 "$out")"
}

both_refused() { # both_refused CONFIG EXPECTED_ERE
    expect_refused serve "$1" "$MNT" "$2"
    expect_refused mount "$1" "$MNT" "$2"
}

mkdir -p "$WORK/node-1" "$WORK/disk"
ln -s "$WORK/node-1" "$WORK/node-1-link"
say "node folders that overlap: serve and mount exit 2 naming the keys"
bad_config "$WORK/same.yaml" ./node-1 ./node-2 ./node-1 ./metadata.db ./ctl.sock
both_refused "$WORK/same.yaml" 'nodes\[2\]\.storage_path \(".*/node-1"\) is the same folder as nodes\[0\]\.storage_path'
bad_config "$WORK/same-link.yaml" ./node-1 ./node-1-link ./node-3 ./metadata.db ./ctl.sock
both_refused "$WORK/same-link.yaml" 'nodes\[1\]\.storage_path .*node-1-link.* is the same folder as nodes\[0\]\.storage_path'
bad_config "$WORK/nested.yaml" ./node-1 ./node-2 ./node-1/inner ./metadata.db ./ctl.sock
both_refused "$WORK/nested.yaml" 'nodes\[2\]\.storage_path \(".*/node-1/inner"\) is inside nodes\[0\]\.storage_path'
bad_config "$WORK/nested-outer.yaml" ./disk/a/b ./node-2 ./disk/a ./metadata.db ./ctl.sock
both_refused "$WORK/nested-outer.yaml" 'nodes\[0\]\.storage_path .* is inside nodes\[2\]\.storage_path'
bad_config "$WORK/meta-in-node.yaml" ./node-1 ./node-2 ./node-3 ./node-2/metadata.db ./ctl.sock
both_refused "$WORK/meta-in-node.yaml" 'metadata\.path .* is inside nodes\[1\]\.storage_path'
bad_config "$WORK/sock-in-node.yaml" ./node-1 ./node-2 ./node-3 ./metadata.db ./node-1/ctl.sock
both_refused "$WORK/sock-in-node.yaml" 'control\.socket .* is inside nodes\[0\]\.storage_path'

say "the mount point and the store: mount exits 2 naming the keys (mount point absent, then present)"
bad_config "$WORK/node-in-mnt.yaml" ./node-1 ./node-2 ./mnt/node-3 ./metadata.db ./ctl.sock
bad_config "$WORK/meta-in-mnt.yaml" ./node-1 ./node-2 ./node-3 ./mnt/metadata.db ./ctl.sock
bad_config "$WORK/sock-in-mnt.yaml" ./node-1 ./node-2 ./node-3 ./metadata.db ./mnt/ctl.sock
for present in no yes; do
    [ "$present" = no ] || mkdir -p "$MNT"
    expect_refused mount "$WORK/node-in-mnt.yaml" "$MNT" "nodes\\[2\\]\\.storage_path \\(\".*/mnt/node-3\"\\) is inside the mount point $MNT"
    expect_refused mount "$WORK/meta-in-mnt.yaml" "$MNT" "metadata\\.path .* is inside the mount point $MNT"
    expect_refused mount "$WORK/sock-in-mnt.yaml" "$MNT" "control\\.socket .* is inside the mount point $MNT"
    expect_refused mount "$CONFIG" "$WORK/node-2/mnt" "the mount point $WORK/node-2/mnt is inside nodes\\[1\\]\\.storage_path"
    expect_refused mount "$CONFIG" "$WORK" "nodes\\[0\\]\\.storage_path .* is inside the mount point $WORK"
done
[ ! -e "$MNT/node-3" ] || fail "the refused daemon created a node folder inside the mount point"
[ ! -e "$WORK/node-2/mnt" ] || fail "the refused daemon created the mount point inside node-2"
# The same store serves from elsewhere (a serve has no mount point).
[ ! -e "$WORK/metadata.db" ] || fail "a refused daemon created the metadata database"

say "deeply nested YAML is refused at once"
for shape in flow block; do
    if [ $shape = flow ]; then
        python3 -c 'print("nodes: " + "[" * 100000)' >"$WORK/deep-$shape.yaml"
    else
        python3 -c 'print("nodes:\n" + "- " * 100000 + "x")' >"$WORK/deep-$shape.yaml"
    fi
    rc=0
    t0=$(date +%s%N)
    timeout 30 "$MINIGCS_BIN" serve -c "$WORK/deep-$shape.yaml" >"$WORK/out" 2>&1 || rc=$?
    ms=$((($(date +%s%N) - t0) / 1000000))
    assert_eq 2 "$rc" "exit code for $shape nesting 100,000 deep"
    grep -q 'nested more than 64 levels' "$WORK/out" || fail "$shape nesting: $(head -c 300 "$WORK/out")"
    echo "ok: $shape nesting 100,000 deep refused in ${ms} ms: $(head -c 200 "$WORK/out")"
done

if ! have_fuse; then need_fuse; fi

say "a stale FUSE mount at the mount point does not hang the check"
start_daemon mount
kill9_daemon
timeout 5 stat "$MNT" >/dev/null 2>&1 && fail "expected a stale mount at $MNT after kill -9"
is_mounted || fail "no stale mount at $MNT after kill -9"
expect_refused_stale() {
    local rc=0 start=$SECONDS
    (cd "$WORK" && timeout 30 "$MINIGCS_BIN" mount "$MNT" -c "$WORK/node-in-mnt.yaml") >"$WORK/out" 2>&1 || rc=$?
    assert_eq 2 "$rc" "exit code with a node inside a stale mount point"
    grep -qE "nodes\\[2\\]\\.storage_path .* is inside the mount point $MNT" "$WORK/out" || fail "stale mount point: $(cat "$WORK/out")"
    (( SECONDS - start < 10 )) || fail "the check took $((SECONDS - start))s on a stale mount point"
    echo "ok: refused in $((SECONDS - start))s: $(cat "$WORK/out")"
}
expect_refused_stale
unmount_mnt
is_mounted && fail "could not clear the stale mount"

say "run time: a node folder re-pointed into the daemon's own mount is never used"
rm -rf "$WORK"/node-* "$WORK"/metadata.db*
mkdir -p "$WORK/real-3"
ln -s "$WORK/real-3" "$WORK/node-3-link"
bad_config "$WORK/linked.yaml" ./node-1 ./node-2 ./node-3-link ./metadata.db ./ctl.sock
cp "$WORK/linked.yaml" "$CONFIG"
start_daemon mount
mkrand "$WORK/before" 3000000
timeout 30 cp "$WORK/before" "$MNT/before" || fail "write before the switch"
[ -f "$WORK/real-3/minigcs-node.json" ] || fail "node-3 was not initialized through its link"
# A copy of node-3's folder (identity and all) inside the mount, then the
# link moved onto it: only the guard keeps the daemon out of its own mount.
timeout 30 cp -r "$WORK/real-3" "$MNT/n3" || fail "copying node-3's folder into the mount"
copied=$(timeout 30 find "$MNT/n3" -name '*.shard' | wc -l)
(( copied > 0 )) || fail "no shards of the first file on node-3"
ln -sfn "$MNT/n3" "$WORK/node-3-link"
inside_reported() {
    timeout 10 "$MINIGCS_BIN" ctl -c "$CONFIG" --json health 2>/dev/null |
        jq -e '.nodes[] | select(.id == "node-3") | .state == "failed" and (.reason | test("own mount"))' >/dev/null
}
set +o pipefail
wait_until 20 inside_reported || fail "node-3 inside the mount not reported failed: $(timeout 10 "$MINIGCS_BIN" ctl -c "$CONFIG" --json health)"
set -o pipefail
mkrand "$WORK/after" 3000000
timeout 30 cp "$WORK/after" "$MNT/after" || fail "write through the mount after the switch"
api_code "$WORK/put.out" /objects/api-after -X PUT --data-binary "@$WORK/after" --max-time 30 >"$WORK/code" || true
assert_eq 200 "$(cat "$WORK/code")" "API PUT after the switch ($(cat "$WORK/put.out"))"
assert_eq "$(sha_of "$WORK/after")" "$(sha_of "$MNT/after")" "sha256 of the file written after the switch"
assert_eq "$(sha_of "$WORK/before")" "$(sha_of "$MNT/before")" "sha256 of the file written before the switch"
timeout 10 df "$MNT" >/dev/null || fail "df on the mount (statfs must not enter node-3)"
timeout 10 "$MINIGCS_BIN" ctl -c "$CONFIG" stats >/dev/null || fail "ctl stats after the switch"
n=$(timeout 30 find "$MNT/n3" -name '*.shard' | wc -l)
assert_eq "$copied" "$n" "shard files inside the daemon's own mount (the $copied copied there, none written)"
stop_daemon

echo "PASS: $TEST_NAME"
