#!/usr/bin/env bash
# Migrating a MiniGCS Python prototype install. A Python script writes one
# in the prototype's exact format (seed config.yaml, metadata.db, node
# folders with node_metadata.json and objects/<key>/shard_NNN, shards
# encoded by the prototype's code, checked against prototype-ec-vectors.json
# first): intact objects, an empty one, keys with '/', trailing zero bytes,
# objects bigger than a chunk, a missing or truncated data shard, a missing
# parity shard, a corrupt data shard (found by the SHA-256), two shards lost
# of a k=3 m=2 object, and objects beyond repair.
#  1. `serve`/`mount` on the prototype's node folders (a minigcs config
#     pointing at them, or the prototype's own config.yaml) exit 2 naming
#     `minigcs import-prototype`, and write nothing.
#  2. `import-prototype` while a daemon serves the store exits 1 (locked).
#  3. The import reports imported / repaired / unrecoverable (with reasons)
#     and exits 1; over the HTTP API every recovered object has its bytes,
#     content type, version, times and SHA-256; the others are absent.
#  4. A second run skips everything and changes nothing; after objects are
#     deleted (an interrupted run) it brings back just those, and leaves a
#     key the user rewrote alone (not imported, exit 1).
#  5. An install with only recoverable objects imports with exit 0.
# After all of it the prototype's folder is byte-identical, times included.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || skip "jq is missing"
python3 -c 'import sqlite3' 2>/dev/null || fail "python3 with its sqlite3 module is needed"

PROTO=$WORK/prototype
ORIG=$WORK/originals
python3 "$LIB_DIR/prototype_install.py" "$REPO_ROOT/tests/data/prototype-ec-vectors.json" \
    "$REPO_ROOT/tests/data/seed-config.yaml" "$PROTO" "$ORIG"

# Everything about the prototype's folder that an import could change.
snapshot() {
    (cd "$1" && find . -printf '%p %y %s %m %T@\n' | LC_ALL=C sort &&
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
}
snapshot "$PROTO" >"$WORK/proto.before"
untouched() {
    snapshot "$PROTO" >"$WORK/proto.now"
    diff "$WORK/proto.before" "$WORK/proto.now" >&2 || fail "the prototype's folder changed ($1)"
}

# run_expect CODE WHAT CMD...: run CMD (in $WORK, bounded), require exit CODE;
# its output is in $OUT.
OUT=
run_expect() {
    local code=$1 what=$2 rc=0
    shift 2
    OUT=$(cd "$WORK" && timeout 120 "$@" 2>&1) || rc=$?
    [ "$rc" = "$code" ] || fail "$what: exit $rc, expected $code: $OUT"
}
expect_out() { grep -qF -- "$1" <<<"$OUT" || fail "$2: output does not say '$1': $OUT"; }

say "serve and mount refuse the prototype's node folders"
cat >"$WORK/on-prototype.yaml" <<EOF
nodes:
  - {id: "node-1", region: "us-east-1", storage_path: "./prototype/data/node-1"}
  - {id: "node-2", region: "us-west-1", storage_path: "./prototype/data/node-2"}
  - {id: "node-3", region: "eu-west-1", storage_path: "./prototype/data/node-3"}
erasure_coding: {k: 2, m: 1}
api: {host: "127.0.0.1", port: $(pick_port)}
metadata: {path: "./refused/metadata.db"}
control: {socket: "./refused/ctl.sock"}
EOF
run_expect 2 "serve on prototype folders" "$MINIGCS_BIN" serve -c "$WORK/on-prototype.yaml"
expect_out "minigcs import-prototype $PROTO -c $WORK/on-prototype.yaml" "serve refusal"
expect_out "holds data of the MiniGCS Python prototype" "serve refusal"
run_expect 2 "mount on prototype folders" "$MINIGCS_BIN" mount "$WORK/refused-mnt" -c "$WORK/on-prototype.yaml"
expect_out "minigcs import-prototype" "mount refusal"
[ ! -e "$WORK/refused" ] || fail "a refused start created $WORK/refused"
OUT=$(cd "$PROTO" && timeout 60 "$MINIGCS_BIN" serve -c config.yaml 2>&1) && rc=0 || rc=$?
assert_eq 2 "$rc" "exit code of serve with the prototype's own config.yaml"
expect_out "minigcs import-prototype $PROTO" "serve with the prototype's config"
untouched "after the refused starts"
find "$PROTO" -name 'minigcs-node.*' | grep -q . && fail "an identity or lock file was written"

say "the import needs the store to itself"
start_daemon serve
run_expect 1 "import while the daemon runs" "$MINIGCS_BIN" import-prototype "$PROTO" -c "$CONFIG"
expect_out "locked by pid $DAEMON_PID" "import while the daemon runs"
stop_daemon

# counts_are IMPORTED REPAIRED PRESENT UNRECOVERABLE NOT_IMPORTED: the table in $OUT
counts_are() {
    local want="$1 $2 $3 $4 $5" got
    got=$(awk '/^  imported /{i=$NF} /^  repaired from parity /{r=$NF} /^  already present/{p=$NF}
               /^  unrecoverable /{u=$NF} /^  not imported /{n=$NF} END {print i, r, p, u, n}' <<<"$OUT")
    assert_eq "$want" "$got" "imported repaired present unrecoverable not-imported"
}

say "import"
start=$(date +%s%N)
run_expect 1 "first import" "$MINIGCS_BIN" import-prototype "$PROTO" -c "$CONFIG"
echo "first import took $(( ($(date +%s%N) - start) / 1000000 )) ms"
echo "$OUT"
counts_are 6 7 0 3 0
# Every repaired and unrecoverable object is listed with what happened.
jq -r 'to_entries[] | select(.value.outcome != "imported") | "\(.key)\t\(.value.hint)"' "$ORIG/manifest.json" |
    while IFS=$'\t' read -r key hint; do
        line=$(grep -F "  $key  (" <<<"$OUT") || fail "the report does not list $key"
        grep -qF -- "$hint" <<<"$line" || fail "the report line of $key lacks '$hint': $line"
    done
untouched "after the first import"

# check_store: every object as the manifest says, over the HTTP API.
check_store() {
    python3 - "$API_URL" "$ORIG" "$@" <<'PY'
import datetime, hashlib, json, sys, urllib.error, urllib.parse, urllib.request
api, orig, *skip = sys.argv[1:]
manifest = json.load(open(f"{orig}/manifest.json"))
def get(path):
    try:
        with urllib.request.urlopen(api + path) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers
def utc(text):
    t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t.replace(tzinfo=None) if t.tzinfo is None else t.astimezone(datetime.timezone.utc).replace(tzinfo=None)
bad = []
for key, m in sorted(manifest.items()):
    if key in skip:
        continue
    path = "/objects/" + urllib.parse.quote(key)
    status, body, headers = get(path)
    if m["outcome"] == "unrecoverable":
        if status != 404:
            bad.append(f"{key}: unrecoverable but GET gave {status}")
        continue
    original = open(f"{orig}/{m['file']}", "rb").read()
    if status != 200 or body != original:
        bad.append(f"{key}: GET {status}, {len(body)} bytes, original {len(original)} bytes, same: {body == original}")
        continue
    status, body, _ = get(path + "/info")
    info = json.loads(body)
    want = {"size": m["size"], "checksum": m["sha256"], "content_type": m["content_type"],
            "version": m["version"]}
    for name, value in want.items():
        if info.get(name) != value:
            bad.append(f"{key}: info {name} {info.get(name)!r}, expected {value!r}")
    for name in ("created_at", "updated_at"):
        if utc(info[name]) != utc(m[name]):
            bad.append(f"{key}: info {name} {info[name]}, the prototype's {m[name]} (UTC)")
if bad:
    sys.exit("\n".join(bad))
print(f"checked {len(manifest) - len(skip)} objects over the API")
PY
}
# The store as the API describes it, to compare runs.
store_state() {
    python3 - "$API_URL" <<'PY'
import json, sys, urllib.parse, urllib.request
api = sys.argv[1]
keys = json.load(urllib.request.urlopen(api + "/objects"))["objects"]
for key in keys:
    info = json.load(urllib.request.urlopen(api + "/objects/" + urllib.parse.quote(key) + "/info"))
    print(key, info["size"], info["version"], info["checksum"], info["created_at"], info["updated_at"])
PY
}

say "every recovered object over the API: bytes, content type, version, times"
start_daemon serve
check_store || fail "the store does not hold the prototype's objects"
store_state >"$WORK/state.first"
stop_daemon

say "a second run skips everything and changes nothing"
run_expect 1 "second import" "$MINIGCS_BIN" import-prototype "$PROTO" -c "$CONFIG"
counts_are 0 0 13 3 0
start_daemon serve
store_state >"$WORK/state.second"
diff "$WORK/state.first" "$WORK/state.second" >&2 || fail "the second run changed the store"

say "an interrupted run is run again: only what is missing comes in"
api /objects/reports/2026/q1.csv -X DELETE >/dev/null
api /objects/notes/missing-data-1.txt -X DELETE >/dev/null
echo "the user's own version" >"$WORK/mine.txt"
api /objects/hello.txt -X PUT --data-binary @"$WORK/mine.txt" >/dev/null
stop_daemon
run_expect 1 "import after deletions" "$MINIGCS_BIN" import-prototype "$PROTO" -c "$CONFIG"
counts_are 1 1 10 3 1
line=$(grep -F "  hello.txt  (" <<<"$OUT") || fail "hello.txt is not reported"
grep -qF "already holds a different object" <<<"$line" || fail "hello.txt: $line"
start_daemon serve
check_store hello.txt || fail "objects brought back wrong"
[ "$(api /objects/hello.txt)" = "the user's own version" ] || fail "the user's hello.txt was replaced"
stop_daemon
untouched "after every import"

say "an install whose every object is recoverable imports with exit 0"
python3 "$LIB_DIR/prototype_install.py" "$REPO_ROOT/tests/data/prototype-ec-vectors.json" \
    "$REPO_ROOT/tests/data/seed-config.yaml" "$WORK/prototype-2" "$WORK/originals-2" --recoverable-only
sed -e 's|"./node-|"./store-2/node-|' -e 's|"./metadata.db"|"./store-2/metadata.db"|' \
    -e 's|"./ctl.sock"|"./store-2/ctl.sock"|' "$CONFIG" >"$WORK/store-2.yaml"
run_expect 0 "import of a recoverable install" "$MINIGCS_BIN" import-prototype "$WORK/prototype-2" -c "$WORK/store-2.yaml"
counts_are 6 7 0 0 0

say "bad usage exits 2"
run_expect 2 "import of a folder that is no install" "$MINIGCS_BIN" import-prototype "$ORIG" -c "$CONFIG"
expect_out "config.yaml" "import of a folder that is no install"
run_expect 2 "import into the prototype's own folders" "$MINIGCS_BIN" import-prototype "$PROTO" -c "$WORK/on-prototype.yaml"
expect_out "never writes into the prototype's folders" "import into the prototype's own folders"
untouched "at the end"
echo "PASS: $TEST_NAME"
