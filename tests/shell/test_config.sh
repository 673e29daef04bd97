#!/usr/bin/env bash
# Configuration: the prototype's seed config.yaml and the shipped config.yaml
# load unchanged (relative paths resolve against the config file's folder);
# sizes take suffixes (512K, 32MiB); invalid values exit 2 with a message
# naming the key; a typo of a known key exits 2 suggesting it, unrelated
# unknown keys warn; paths in the log have no /./; a failed start removes
# the control socket it created and never another daemon's.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# --- helpers ---------------------------------------------------------------
port_free() { python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null; }

# run_bad NAME EXPECTED_ERE: write $WORK/bad/NAME.yaml from stdin, expect exit 2 and a message
# matching EXPECTED_ERE (case-insensitive; normally the key's name)
run_bad() {
    local name=$1 want=$2 rc=0
    mkdir -p "$WORK/bad"
    cat >"$WORK/bad/$name.yaml"
    timeout 20 "$MINIGCS_BIN" serve -c "$WORK/bad/$name.yaml" >"$WORK/bad/$name.out" 2>&1 || rc=$?
    if [ "$rc" != 2 ]; then
        cat "$WORK/bad/$name.out" >&2
        fail "config '$name': exit code $rc, expected 2"
    fi
    grep -qEi -- "$want" "$WORK/bad/$name.out" || fail "config '$name': message does not match '$want': $(cat "$WORK/bad/$name.out")"
    echo "ok: $name -> exit 2: $(grep -Ei -- "$want" "$WORK/bad/$name.out" | head -n 1)"
}

# good_nodes: a valid nodes section with storage under $WORK/bad
good_nodes() {
    cat <<'EOF2'
nodes:
  - id: "node-1"
    region: "us-east-1"
    storage_path: "./n1"
  - id: "node-2"
    region: "us-west-1"
    storage_path: "./n2"
  - id: "node-3"
    region: "eu-west-1"
    storage_path: "./n3"
EOF2
}
good_tail() {
    cat <<EOF2
api:
  port: $API_PORT
control:
  socket: "./bad.sock"
metadata:
  path: "./bad.db"
EOF2
}

# start_with CONFIG: serve a given config file from another cwd, wait for ctl health;
# RUN_OTHER_CHECK (a function name), when set, runs with the config file while
# the daemon is up.
RUN_OTHER_CHECK=
run_other() { # run_other CONFIG_FILE LABEL [HTTP_BASE]
    local cfg=$1 label=$2 base=${3:-} pid n=0 rc=0
    (cd "$WORK" && exec "$MINIGCS_BIN" serve -c "$cfg") >"$WORK/$label.log" 2>&1 &
    pid=$!
    track_bg $pid
    until "$MINIGCS_BIN" ctl -c "$cfg" --json health >"$WORK/$label.health" 2>/dev/null; do
        if ! pid_alive $pid; then cat "$WORK/$label.log" >&2; fail "$label: daemon exited at start-up"; fi
        n=$((n + 1))
        (( n < 150 )) || { cat "$WORK/$label.log" >&2; kill -KILL $pid; fail "$label: ctl health did not answer within 30s"; }
        sleep 0.2
    done
    jq -e '.status' "$WORK/$label.health" >/dev/null || fail "$label: ctl health answer: $(cat "$WORK/$label.health")"
    if [ -n "$base" ]; then
        wait_until 10 curl -s -o /dev/null "$base/" || fail "$label: API not answering at $base"
        curl -sS "$base/" | jq -e '.message == "MiniGCS API"' >/dev/null || fail "$label: GET / answer"
    fi
    if [ -n "$RUN_OTHER_CHECK" ]; then "$RUN_OTHER_CHECK" "$cfg"; fi
    if ! pid_alive $pid; then
        wait $pid || rc=$?
        cat "$WORK/$label.log" >&2
        fail "$label: daemon exited by itself (code $rc) right after answering ctl health"
    fi
    # A daemon that exits on its own in this window is reported with its
    # exit code and log below, not as a failed `kill`.
    kill -TERM $pid 2>/dev/null || echo "$label: daemon was already gone when SIGTERM was sent" >&2
    n=0
    while pid_alive $pid && (( n < 300 )); do sleep 0.1; n=$((n + 1)); done
    pid_alive $pid && { kill -KILL $pid 2>/dev/null || true; cat "$WORK/$label.log" >&2; fail "$label: no exit within 30s of SIGTERM"; }
    wait $pid || rc=$?
    [ "$rc" = 0 ] || cat "$WORK/$label.log" >&2
    assert_eq 0 "$rc" "$label: exit code after SIGTERM"
}

# --- the prototype's seed config, unchanged --------------------------------
say "prototype seed config.yaml loads unchanged"
mkdir -p "$WORK/seed"
SEED=
for c in "${MINIGCS_SEED_CONFIG:-}" "$REPO_ROOT/../shared/seed/config.yaml" /work/shared/seed/config.yaml; do
    if [ -n "$c" ] && [ -f "$c" ]; then SEED=$c; break; fi
done
if [ -n "$SEED" ]; then
    cp "$SEED" "$WORK/seed/config.yaml"
    echo "using $SEED"
else
    echo "(seed config not found beside the repo; using the embedded copy of the prototype's file)"
    cat >"$WORK/seed/config.yaml" <<'EOF2'
# MiniGCS Configuration
nodes:
  - id: "node-1"
    region: "us-east-1"
    host: "localhost"
    port: 8001
    storage_path: "./data/node-1"
  - id: "node-2"
    region: "us-west-1"
    host: "localhost"
    port: 8002
    storage_path: "./data/node-2"
  - id: "node-3"
    region: "eu-west-1"
    host: "localhost"
    port: 8003
    storage_path: "./data/node-3"

# Erasure coding parameters
erasure_coding:
  k: 2  # data shards
  m: 1  # parity shards
  block_size: 1024  # bytes per shard

# Replication settings
replication:
  factor: 3
  regions: ["us-east-1", "us-west-1", "eu-west-1"]

# API settings
api:
  host: "localhost"
  port: 8000
  max_file_size: 104857600  # 100MB

# Metrics
metrics:
  enabled: true
  output_file: "metrics.csv"
  
# Recovery settings
recovery:
  timeout: 30  # seconds
  retry_attempts: 3
EOF2
fi
if port_free 8000 && port_free 9000; then
    run_other "$WORK/seed/config.yaml" seed http://127.0.0.1:8000
    [ -f "$WORK/seed/data/node-1/minigcs-node.json" ] || fail "seed config: node-1 identity not under the config's folder ($WORK/seed/data/node-1)"
    [ ! -e "$WORK/data" ] || fail "seed config: relative paths resolved against the cwd, not the config's folder"
    grep -qE 'block_size' "$WORK/seed.log" || fail "seed config: no warning about block_size: $(cat "$WORK/seed.log")"
    grep -qE 'chunk_size' "$WORK/seed.log" || fail "seed config: block_size warning does not name chunk_size"
else
    echo "(port 8000 is busy on this machine: checking that the seed config is accepted, not served)"
    rc=0
    (cd "$WORK" && timeout 10 "$MINIGCS_BIN" serve -c "$WORK/seed/config.yaml") >"$WORK/seed.log" 2>&1 || rc=$?
    [ "$rc" != 2 ] || fail "seed config rejected as invalid: $(cat "$WORK/seed.log")"
fi

say "the shipped config.yaml loads unchanged"
mkdir -p "$WORK/shipped"
cp "$REPO_ROOT/config.yaml" "$WORK/shipped/config.yaml"
if port_free 8000 && port_free 9000; then
    run_other "$WORK/shipped/config.yaml" shipped http://127.0.0.1:8000
    [ -f "$WORK/shipped/data/node-3/minigcs-node.json" ] || fail "shipped config: node-3 identity not under ./data of the config's folder"
    [ -f "$WORK/shipped/data/metadata.db" ] || fail "shipped config: metadata not at ./data/metadata.db"
else
    echo "(port 8000 or 9000 is busy: skipping the start of the shipped config)"
fi

say "valid config with the extra keys (mount, recovery.auto, api.auth_token, cluster.id), sizes with suffixes"
{
    good_nodes
    good_tail
    cat <<'EOF2'
cluster:
  id: "test-cluster"
erasure_coding:
  chunk_size: 512K
mount:
  allow_other: false
  memory_budget: 32MiB
recovery:
  auto: true
  health_interval_secs: 2
  scrub_interval_secs: 0
EOF2
} >"$WORK/extra.yaml"
# While it runs: the sizes as read, and a second daemon (its own store) told
# to use the same control socket fails to start and leaves that socket alone.
check_extra() {
    "$MINIGCS_BIN" ctl -c "$1" --json stats | jq -e '.chunk_size == 524288' >/dev/null ||
        fail "chunk_size: 512K not read as 524288: $("$MINIGCS_BIN" ctl -c "$1" --json stats)"
    sed -e 's|\./n\([0-9]\)|./other-n\1|' -e 's|\./bad\.db|./other.db|' -e "s|port: $API_PORT|port: $(pick_port)|" \
        "$1" >"$WORK/same-socket.yaml"
    local rc=0
    (cd "$WORK" && timeout 20 "$MINIGCS_BIN" serve -c "$WORK/same-socket.yaml") >"$WORK/same-socket.log" 2>&1 || rc=$?
    [ "$rc" = 1 ] || fail "a daemon on another daemon's socket: exit $rc, expected 1: $(cat "$WORK/same-socket.log")"
    grep -q 'another minigcs daemon is listening' "$WORK/same-socket.log" || fail "same socket: $(cat "$WORK/same-socket.log")"
    "$MINIGCS_BIN" ctl -c "$1" ping >/dev/null || fail "the running daemon's socket was taken away by a failed start"
}
RUN_OTHER_CHECK=check_extra run_other "$WORK/extra.yaml" extra
grep -qi 'unknown' "$WORK/extra.log" && fail "documented extra keys reported as unknown: $(grep -i unknown "$WORK/extra.log")"

say "log lines: paths written plainly (no /./), the HTTP API announced once"
! grep -n '/\./\|//' "$WORK/extra.log" | grep -v 'http://' || fail "a path with /./ or // in the log"
assert_eq 1 "$(grep -c 'HTTP API' "$WORK/extra.log")" "lines announcing the HTTP API"

say "a failed start (API port in use) leaves no control socket behind"
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1); time.sleep(60)' "$API_PORT" &
BUSY=$!
track_bg $BUSY
wait_until 10 bash -c "! python3 -c 'import socket,sys; socket.socket().bind((\"127.0.0.1\", $API_PORT))' 2>/dev/null" ||
    fail "could not occupy port $API_PORT"
rm -f "$WORK/bad.sock"
rc=0
(cd "$WORK" && timeout 20 "$MINIGCS_BIN" serve -c "$WORK/extra.yaml") >"$WORK/port-busy.log" 2>&1 || rc=$?
assert_eq 1 "$rc" "exit code with the API port in use"
grep -q "cannot listen on" "$WORK/port-busy.log" || fail "port in use: $(cat "$WORK/port-busy.log")"
[ ! -e "$WORK/bad.sock" ] || fail "the control socket was left behind by a failed start"
kill "$BUSY" 2>/dev/null || true
wait "$BUSY" 2>/dev/null || true

say "unknown keys: a warning naming them, the daemon still starts"
{
    good_nodes
    good_tail
    echo "  bogus_nested_key: 1"     # lands in metadata: (the last section of good_tail)
    echo "bogus_top_key: true"
} >"$WORK/unknown.yaml"
run_other "$WORK/unknown.yaml" unknown
grep -q bogus_top_key "$WORK/unknown.log" || fail "no warning naming bogus_top_key: $(cat "$WORK/unknown.log")"
grep -q bogus_nested_key "$WORK/unknown.log" || fail "no warning naming the nested unknown key metadata.bogus_nested_key: $(cat "$WORK/unknown.log")"

say "invalid configs exit 2 naming the key"
printf 'nodes: [\n  - id: "node-1"\n    region: : :\n' | run_bad broken-yaml "yaml|parse|line"
{ echo "nodes:"; echo "  - { id: a"; } | run_bad broken-yaml-2 "yaml|parse|line"
{ good_nodes; printf 'erasure_coding:\n  k: 0\n  m: 1\n'; good_tail; } | run_bad k-zero "erasure_coding.k"
{ good_nodes; printf 'erasure_coding:\n  k: 200\n  m: 100\n'; good_tail; } | run_bad k-plus-m "erasure_coding"
{ good_nodes; printf 'erasure_coding:\n  k: 2\n  m: -1\n'; good_tail; } | run_bad m-negative "erasure_coding.m"
{ good_nodes; printf 'erasure_coding:\n  k: 2\n  m: 1\n  chunk_size: 0\n'; good_tail; } | run_bad chunk-zero "erasure_coding.chunk_size"
{ good_nodes; printf 'erasure_coding:\n  k: "two"\n'; good_tail; } | run_bad k-string "erasure_coding.k"
{ echo "nodes: []"; good_tail; } | run_bad no-nodes "nodes"
{ good_tail; } | run_bad nodes-missing "nodes"
{ good_nodes; echo '  - id: "node-1"'; echo '    region: "us-east-1"'; echo '    storage_path: "./n4"'; good_tail; } | run_bad duplicate-id "node-1"
{ good_nodes; printf 'replication:\n  factor: 3\n  regions: ["us-east-1", "us-west-1"]\n'; good_tail; } | run_bad region-not-listed 'replication\.regions|eu-west-1'
{ good_nodes; printf 'api:\n  port: 70000\n'; } | run_bad port-range "api.port"
{ good_nodes; printf 'erasure_coding:\n  k: 2\n  m: 1\n  chunk_size: 4Q\n'; good_tail; } | run_bad size-garbage 'erasure_coding\.chunk_size.*invalid size "4Q"'

say "a typo of a known key is an error suggesting it; unrelated keys only warn (above)"
{ good_nodes; printf 'erasure_codng:\n  k: 3\n  m: 0\n'; good_tail; } |
    run_bad section-typo 'unknown key erasure_codng: did you mean erasure_coding\?'
{ good_nodes; printf 'erasure_coding:\n  k: 2\n  m: 1\n  chunk_sise: 1M\n'; good_tail; } |
    run_bad key-typo 'unknown key erasure_coding\.chunk_sise: did you mean erasure_coding\.chunk_size\?'
{ good_nodes; printf 'API:\n  port: 8123\n'; } | run_bad case-typo 'unknown key API: did you mean api\?'
[ ! -e "$WORK/bad/bad.sock" ] || fail "a refused config left a control socket"
run_bad empty-file "nodes" </dev/null
rc=0
"$MINIGCS_BIN" serve -c "$WORK/bad/does-not-exist.yaml" >"$WORK/out" 2>&1 || rc=$?
assert_eq 2 "$rc" "exit code for a missing config file"
grep -q does-not-exist "$WORK/out" || fail "missing config message does not name the file: $(cat "$WORK/out")"

say "CLI: --help and usage errors"
"$MINIGCS_BIN" --help >"$WORK/out" || fail "minigcs --help"
for sub in mount serve ctl bench; do
    grep -q "$sub" "$WORK/out" || fail "minigcs --help does not list $sub"
    "$MINIGCS_BIN" "$sub" --help >/dev/null || fail "minigcs $sub --help"
done
rc=0; "$MINIGCS_BIN" no-such-subcommand >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "exit code of an unknown subcommand"

say "CLI: sizes take suffixes (bench --big-size 1M --block-size 64K --small-size 1K)"
mkdir -p "$WORK/benchdir"
"$MINIGCS_BIN" bench "$WORK/benchdir" --big-size 1M --block-size 64K --small-count 3 --small-size 1K \
    --no-drop-caches --json >"$WORK/bench.json" 2>"$WORK/bench.err" || fail "bench with size suffixes: $(cat "$WORK/bench.err")"
jq -e 'length > 0' "$WORK/bench.json" >/dev/null || fail "bench --json output: $(cat "$WORK/bench.json")"
rc=0; "$MINIGCS_BIN" bench "$WORK/benchdir" --big-size 1Q >"$WORK/out" 2>&1 || rc=$?
assert_eq 2 "$rc" "exit code of bench --big-size 1Q"
grep -q 'invalid size' "$WORK/out" || fail "bench --big-size 1Q: $(cat "$WORK/out")"

echo "PASS: $TEST_NAME"
