#!/usr/bin/env bash
# One daemon per store, and lost metadata is never silent.
#
# 1. While a first daemon writes a large file through its mount (file still
#    open, some shards already on the nodes), a second daemon on the same
#    store — `serve` and `mount`, with its own socket and port; then one with
#    its own metadata but the same node folders — exits 1 naming the holder's
#    pid and what is held, and touches nothing: the first daemon's file reads
#    back intact after close and after a restart. After kill -9 of the first
#    daemon a new one starts at once (no stale lock).
# 2. metadata.db deleted under a running daemon: writes through the mount and
#    the API fail (EROFS / 503), reads go on, `ctl health` says error and why,
#    and a copy of the database is saved. Stopped, a start over node folders
#    without metadata (and without metadata snapshots) is refused (exit 1, saying what to do); the saved copy
#    put back brings every acknowledged file back; --accept-empty-metadata
#    starts an empty store over the same folders.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# Shard files are damaged or counted directly: every shard in its own file.
CFG_SEGMENT_MAX_SHARD=0
write_config
need_fuse

C=$CFG_CHUNK
mkdir -p "$WORK/src"
MNT2=$WORK/mnt2
EXTRA_MNTS+=("$MNT2")

# other_config FILE [METADATA_PATH]: the same store for a second daemon, with
# its own control socket and API port (and metadata path, if given).
other_config() {
    local port
    port=$(pick_port)
    sed -e "s|port: $API_PORT\$|port: $port|" \
        -e 's|socket: "./ctl.sock"|socket: "./ctl2.sock"|' \
        -e "s|path: \"./metadata.db\"|path: \"${2:-./metadata.db}\"|" \
        "$CONFIG" >"$1"
}

# expect_refused WHAT CMD ARGS...: CMD (run in $WORK) must exit 1 within 30 s.
# Its output is left in $OUT.
OUT=
expect_refused() {
    local what=$1 rc=0
    shift
    OUT=$(cd "$WORK" && timeout 30 "$@" 2>&1) || rc=$?
    echo "$what: exit $rc: $(grep -v '^\[' <<<"$OUT" | tail -n 2)"
    assert_eq 1 "$rc" "exit code of $what"
}
expect_out() { # expect_out TEXT WHAT
    grep -qF -- "$1" <<<"$OUT" || fail "$2: output does not say '$1': $OUT"
}
shard_count() { find "$WORK"/node-* -name '*.shard' 2>/dev/null | wc -l; }
health_json() { ctlj health 2>/dev/null || true; }

start_daemon mount

say "a large file is being written through the mount (open, shards already stored)"
mkrand "$WORK/src/big" $((24 * C + 123))
python3 - "$MNT/big" "$WORK/src/big" "$WORK/big.ready" "$WORK/big.go" <<'PY' &
import os, sys, time
dst, src, ready, go = sys.argv[1:]
data = open(src, "rb").read()
fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
def write_all(part):
    view = memoryview(part)
    while view:
        view = view[os.write(fd, view[:1 << 20]):]
write_all(data[: len(data) // 2])
time.sleep(2.5)   # older than a start-up orphan sweep's grace period
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.05)
write_all(data[len(data) // 2 :])
os.close(fd)      # raises (exit 1) if the commit fails
PY
writer=$!
track_bg $writer
wait_until 60 test -e "$WORK/big.ready" || fail "the writer did not get half way"
in_flight=$(shard_count)
echo "shard files on the nodes while the file is open: $in_flight"
[ "$in_flight" -gt 0 ] || fail "no shard stored yet for the open file"

say "second daemon, same store, own socket and port: serve and mount are refused"
other_config "$WORK/config2.yaml"
expect_refused "second serve" "$MINIGCS_BIN" serve -c "$WORK/config2.yaml"
expect_out "store is in use" "second serve"
expect_out "metadata database" "second serve"
expect_out "locked by pid $DAEMON_PID (another minigcs daemon); stop it first" "second serve"
expect_refused "second mount" "$MINIGCS_BIN" mount "$MNT2" -c "$WORK/config2.yaml"
expect_out "locked by pid $DAEMON_PID" "second mount"
awk -v m="$MNT2" '$2 == m { exit 1 }' /proc/mounts || fail "the refused daemon mounted $MNT2"
[ ! -e "$WORK/ctl2.sock" ] || fail "the refused daemon left a control socket"

say "a daemon with its own metadata but the same node folders is refused too"
other_config "$WORK/config3.yaml" ./other.db
expect_refused "daemon over the same nodes" "$MINIGCS_BIN" serve -c "$WORK/config3.yaml"
expect_out "node node-1's folder" "daemon over the same nodes"
expect_out "locked by pid $DAEMON_PID" "daemon over the same nodes"
[ ! -e "$WORK/other.db" ] || fail "the refused daemon created a metadata database"
[ "$(shard_count)" -ge "$in_flight" ] || fail "shard files disappeared while the second daemons ran"
ctl_answers || fail "the first daemon's control socket stopped answering"

say "the first daemon's file is intact after close and after a restart"
touch "$WORK/big.go"
rc=0
wait $writer || rc=$?
assert_eq 0 "$rc" "exit code of the writer (close of the big file)"
WANT=$(sha_of "$WORK/src/big")
drop_caches
assert_eq "$WANT" "$(sha_of "$MNT/big")" "sha256 of big after close"
stop_daemon
start_daemon mount
assert_eq "$WANT" "$(sha_of "$MNT/big")" "sha256 of big after a restart"

say "kill -9 leaves no stale lock"
kill9_daemon
start_daemon mount
assert_eq "$DAEMON_PID" "$(tr -d '[:space:]' <"$WORK/metadata.db.lock")" "pid in metadata.db.lock"
assert_eq "$DAEMON_PID" "$(tr -d '[:space:]' <"$(node_dir 2)/minigcs-node.lock")" "pid in node-2's lock file"
assert_eq "$WANT" "$(sha_of "$MNT/big")" "sha256 of big after kill -9 and restart"

say "metadata.db deleted under the running daemon"
mkrand "$WORK/src/small" $((C + 7))
cp "$WORK/src/small" "$MNT/small"
curl -sS -f -X PUT --data-binary @"$WORK/src/small" "$API_URL/objects/api-small" >/dev/null || fail "PUT before the deletion failed"
rm "$WORK/metadata.db"
# The health worker notices on its own, before anything writes or asks.
wait_until 15 grep -q "metadata.db was deleted while minigcs was running" "$DAEMON_LOG" \
    || fail "the daemon did not notice the deleted database by itself"
ctlj workers | jq -e '.. | strings | select(test("metadata database lost"))' >/dev/null \
    || fail "ctl workers does not show the lost metadata: $(ctlj workers)"
rc=0
cp "$WORK/src/small" "$MNT/after" 2>"$WORK/cp.err" || rc=$?
echo "cp of a new file: exit $rc: $(cat "$WORK/cp.err")"
[ "$rc" -ne 0 ] || fail "a new file was accepted after the metadata was deleted"
grep -q "Read-only file system" "$WORK/cp.err" || fail "the mount should answer EROFS: $(cat "$WORK/cp.err")"
rc=0
printf 'changed' | dd of="$MNT/small" conv=notrunc status=none 2>/dev/null || rc=$?
[ "$rc" -ne 0 ] || fail "an overwrite was accepted after the metadata was deleted"
code=$(api_code "$WORK/put.json" /objects/api-after -X PUT --data-binary @"$WORK/src/small")
echo "PUT after the deletion: HTTP $code $(cat "$WORK/put.json")"
assert_eq 503 "$code" "HTTP status of a PUT after the deletion"
jq -e '.detail | test("metadata database .* was deleted")' "$WORK/put.json" >/dev/null || fail "503 detail does not say why"
h=$(health_json)
echo "health: $(jq -c '{status, message}' <<<"$h")"
jq -e '.status == "error" and (.message | test("was deleted")) and (.message | test("start it again"))' <<<"$h" >/dev/null \
    || fail "ctl health does not report the lost metadata: $h"
say "reads go on"
assert_eq "$(sha_of "$WORK/src/small")" "$(sha_of "$MNT/small")" "sha256 of small (mount)"
assert_eq "$WANT" "$(sha_of "$MNT/big")" "sha256 of big (mount)"
api /objects/api-small -o "$WORK/api-small.out" -f
assert_eq "$(sha_of "$WORK/src/small")" "$(sha_of "$WORK/api-small.out")" "sha256 of api-small (API)"
[ ! -e "$MNT/after" ] || fail "the refused file exists"
rescued=$(ls "$WORK"/metadata.db.rescued-* 2>/dev/null | head -n 1)
[ -n "$rescued" ] || fail "no rescued copy of the database next to it"
echo "rescued copy: $rescued"
stop_daemon

say "a start over node folders holding shards, with no metadata and no snapshot, is refused"
# Metadata snapshots in the node folders would be restored instead
# (test_meta_snapshot.sh): this is the case where none exists.
rm -rf "$WORK"/node-*/meta
expect_refused "serve without metadata" "$MINIGCS_BIN" serve -c "$CONFIG"
expect_out "metadata missing for an existing store" "serve without metadata"
expect_out "node-1 (" "serve without metadata"
expect_out "--accept-empty-metadata" "serve without metadata"
expect_out "$rescued" "serve without metadata"
expect_refused "mount without metadata (again)" "$MINIGCS_BIN" mount "$MNT" -c "$CONFIG"
! is_mounted || fail "the refused daemon mounted $MNT"
[ ! -e "$WORK/metadata.db" ] || fail "a refused start left a new metadata.db behind"

say "the rescued copy put back: everything acknowledged is there"
rm -f "$WORK/metadata.db" "$WORK/metadata.db-wal" "$WORK/metadata.db-shm"
mv "$rescued" "$WORK/metadata.db"
start_daemon mount
assert_eq "$WANT" "$(sha_of "$MNT/big")" "sha256 of big from the rescued metadata"
assert_eq "$(sha_of "$WORK/src/small")" "$(sha_of "$MNT/small")" "sha256 of small from the rescued metadata"
assert_eq "$(sha_of "$WORK/src/small")" "$(sha_of "$MNT/api-small")" "sha256 of api-small from the rescued metadata"
[ ! -e "$MNT/after" ] || fail "a refused write appeared after the restart"
stop_daemon

say "--accept-empty-metadata starts an empty store over the same folders (no snapshot there)"
rm -f "$WORK"/metadata.db "$WORK"/metadata.db-wal "$WORK"/metadata.db-shm
rm -rf "$WORK"/node-*/meta
DAEMON_ARGS=(--accept-empty-metadata)
start_daemon mount
DAEMON_ARGS=()
assert_eq "" "$(ls -A "$MNT")" "listing of the new, empty store"
jq -e '.status == "healthy"' <<<"$(health_json)" >/dev/null || fail "empty store over the old folders is not healthy: $(health_json)"
cp "$WORK/src/small" "$MNT/fresh"
assert_eq "$(sha_of "$WORK/src/small")" "$(sha_of "$MNT/fresh")" "sha256 of a file in the new store"
stop_daemon
echo "PASS: $TEST_NAME"
