#!/usr/bin/env bash
# Every ctl command in human and --json mode; socket mode 0600; malformed socket
# input (garbage, empty line, 10 MiB line, half-written line) answered with
# errors while the daemon keeps serving; metrics counts agree with a known
# workload across /metrics/summary, ctl metrics, /metrics and the CSV; ctl
# ping; a closed stdout (`| head`) ends every command quietly by SIGPIPE, as
# for `ls`; ctl health exits 0 healthy, 1 degraded; ctl with no daemon exits 1
# with a clear message.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start_daemon serve
C=$CFG_CHUNK

say "some objects"
mkrand "$WORK/obj" $((C * 5 / 2))
api /objects/dir/obj.bin -X PUT --data-binary "@$WORK/obj" --fail -o /dev/null
api /objects/small.txt -X PUT --data-binary "small" --fail -o /dev/null

say "socket file mode is 0600"
[ -S "$SOCK" ] || fail "control socket $SOCK missing"
assert_eq 600 "$(stat -c %a "$SOCK")" "socket file mode"

say "ping"
ctl ping >"$WORK/out" || fail "ctl ping failed"
grep -q '^pong' "$WORK/out" || fail "ctl ping (human): $(cat "$WORK/out")"
ctlj ping | jq -e '.pong == true and (.version | type == "string")' >/dev/null || fail "ctl --json ping: $(ctlj ping)"
printf '{"cmd": "ping"}\n' | python3 -c '
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(30); s.connect(sys.argv[1])
s.sendall(sys.stdin.buffer.read()); r = json.loads(s.makefile("rb").readline())
assert r["ok"] is True and r["data"]["pong"] is True, r
' "$SOCK" || fail "socket request {\"cmd\": \"ping\"}"

say "stats"
ctl stats >"$WORK/out" || fail "ctl stats failed"
grep -q node-1 "$WORK/out" || fail "ctl stats (human) does not mention node-1: $(cat "$WORK/out")"
j=$(ctlj stats)
jq -e '.total_nodes == 3 and .k == 2 and .m == 1 and .chunk_size == 1048576' <<<"$j" >/dev/null || fail "stats --json: $j"
jq -e '.total_objects == 2 and .total_size == (2621440 + 5)' <<<"$j" >/dev/null || fail "stats --json totals: $j"
jq -e '(.nodes_by_region | length == 3) and (.region_stats | length == 3)' <<<"$j" >/dev/null || fail "stats --json regions: $j"
jq -e '.node_stats["node-1"] | has("region") and has("state") and has("shards") and has("bytes") and has("free_bytes")' <<<"$j" >/dev/null || fail "stats --json node_stats: $j"
# 3 chunks of obj.bin + 1 of small.txt, 3 shards each
jq -e '([.node_stats[].shards] | add) == 12' <<<"$j" >/dev/null || fail "stats --json: expected 12 shards in all: $j"

say "health"
ctl health >"$WORK/out" || fail "ctl health failed"
grep -qi healthy "$WORK/out" || fail "ctl health (human) does not say healthy: $(cat "$WORK/out")"
j=$(ctlj health)
jq -e '.status == "healthy" and .failed_nodes == [] and (.message | type == "string")' <<<"$j" >/dev/null || fail "health --json: $j"
jq -e '(.nodes | length == 3) and all(.nodes[]; .state == "up" and has("id") and has("region") and has("path") and has("reason"))' <<<"$j" >/dev/null || fail "health --json nodes: $j"
jq -e '.chunks_missing_shards == 0 and .repair_queue == 0' <<<"$j" >/dev/null || fail "health --json counts: $j"

say "nodes"
ctl nodes >"$WORK/out" || fail "ctl nodes failed"
for n in node-1 node-2 node-3 us-east-1 us-west-1 eu-west-1; do grep -q "$n" "$WORK/out" || fail "ctl nodes lacks $n"; done
j=$(ctlj nodes)
jq -e '(.nodes | length == 3) and all(.nodes[]; has("id") and has("region") and has("path") and .state == "up" and (.shards | type == "number") and (.bytes | type == "number") and (.free_bytes | type == "number"))' <<<"$j" >/dev/null || fail "nodes --json: $j"
jq -e '[.nodes[].id] | sort == ["node-1", "node-2", "node-3"]' <<<"$j" >/dev/null || fail "nodes --json ids: $j"

say "info KEY"
ctl info dir/obj.bin >"$WORK/out" || fail "ctl info failed"
grep -q node- "$WORK/out" || fail "ctl info (human) shows no node: $(cat "$WORK/out")"
j=$(ctlj info dir/obj.bin)
jq -e '.key == "dir/obj.bin" and .size == 2621440 and (.version | type == "number") and (.content_type | type == "string")' <<<"$j" >/dev/null || fail "info --json: $j"
assert_eq "$(sha_of "$WORK/obj")" "$(jq -r .checksum <<<"$j")" "info checksum"
jq -e '(.chunks | length == 3) and ([.chunks[].len] | add == 2621440) and all(.chunks[]; (.shards | length == 3) and all(.shards[]; .healthy == true))' <<<"$j" >/dev/null || fail "info --json chunks: $j"
jq -e 'all(.chunks[]; [.shards[].node] | unique | length == 3)' <<<"$j" >/dev/null || fail "info --json: shards of a chunk not on 3 distinct nodes: $j"
if ctl info no/such/key >"$WORK/out" 2>&1; then fail "ctl info of a missing key succeeded"; fi

say "scrub and scrub --repair"
ctl scrub >"$WORK/out" || fail "ctl scrub failed"
j=$(ctlj scrub)
jq -e '.shards_checked == 12 and .corrupt == 0 and .missing == 0 and .problems == []' <<<"$j" >/dev/null || fail "scrub --json: $j"
j=$(ctlj scrub --repair)
jq -e '.corrupt == 0 and .repaired == 0' <<<"$j" >/dev/null || fail "scrub --repair --json: $j"

say "recover"
ctl recover node-2 >"$WORK/out" || fail "ctl recover failed: $(cat "$WORK/out")"
j=$(ctlj recover node-3)
jq -e '.node_id == "node-3" and (.chunks_total | type == "number") and (.shards_rebuilt | type == "number") and (.bytes_rebuilt | type == "number") and (.mttr_ms | type == "number") and (.message | type == "string")' <<<"$j" >/dev/null || fail "recover --json: $j"
rc=0
ctl recover no-such-node >"$WORK/out" 2>&1 || rc=$?
assert_eq 1 "$rc" "exit code of ctl recover of an unknown node"
grep -q no-such-node "$WORK/out" || fail "error for unknown node does not name it: $(cat "$WORK/out")"

say "metrics"
ctl metrics >"$WORK/out" || fail "ctl metrics failed"
j=$(ctlj metrics)
jq -e '(.total_operations | type == "number") and (.operation_summary | type == "object") and has("recovery_summary")' <<<"$j" >/dev/null || fail "metrics --json: $j"

say "workers"
ctl workers >"$WORK/out" || fail "ctl workers failed"
for w in WORKER collector repair recovery scrub health orphan-sweep meta-snapshot meta-journal seg-cleaner; do grep -q "$w" "$WORK/out" || fail "ctl workers (human) lacks $w: $(cat "$WORK/out")"; done
j=$(ctlj workers)
jq -e '[.workers[].name] == ["collector", "repair", "recovery", "scrub", "health", "orphan-sweep", "meta-snapshot", "meta-journal", "seg-cleaner"]' <<<"$j" >/dev/null || fail "workers --json names: $j"
jq -e 'all(.workers[]; (.state | IN("idle", "running", "stopped")) and (.doing | type == "string") and (.queue | type == "number") and (.done | type == "number") and has("last_error") and has("last_run"))' <<<"$j" >/dev/null || fail "workers --json rows: $j"
jq -e '.workers[] | select(.name == "collector") | .done >= 0 and .last_error == null' <<<"$j" >/dev/null || fail "workers --json collector: $j"
printf '{"cmd": "workers"}\n' | python3 -c '
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(30); s.connect(sys.argv[1])
s.sendall(sys.stdin.buffer.read()); r = json.loads(s.makefile("rb").readline())
assert r["ok"] is True and len(r["data"]["workers"]) == 9, r
' "$SOCK" || fail "socket request {\"cmd\": \"workers\"}"

say "snapshot"
# (`ctl recover` above already took one: the newest may be #1 or later.)
ctl snapshot >"$WORK/out" || fail "ctl snapshot failed"
grep -Eq 'metadata (snapshot|unchanged since snapshot) #[0-9]+' "$WORK/out" || fail "ctl snapshot (human): $(cat "$WORK/out")"
j=$(ctlj snapshot)
jq -e '.taken == false and .seq >= 1 and (.nodes | length == 2) and .wanted_copies == 2' <<<"$j" >/dev/null || fail "snapshot --json (unchanged): $j"
seq=$(jq .seq <<<"$j")
ctlj health | jq -e --argjson s "$seq" '.metadata_snapshot.seq == $s and .metadata_snapshot.copies == 2' >/dev/null || fail "health --json lacks the snapshot: $(ctlj health)"

say "usage errors exit 2; --socket and MINIGCS_CONFIG work"
rc=0; ctl no-such-command >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "exit code of an unknown ctl command"
rc=0; ctl recover >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "exit code of ctl recover without a node"
"$MINIGCS_BIN" ctl --socket "$SOCK" --json health | jq -e '.status == "healthy"' >/dev/null || fail "ctl --socket"
(cd / && MINIGCS_CONFIG=$CONFIG "$MINIGCS_BIN" ctl --json health) | jq -e '.status == "healthy"' >/dev/null || fail "ctl with MINIGCS_CONFIG"
"$MINIGCS_BIN" ctl health --json -c "$CONFIG" | jq -e '.status == "healthy"' >/dev/null || fail "ctl health --json -c CONFIG (options after the command)"
"$MINIGCS_BIN" ctl ping --socket "$SOCK" | grep -q pong || fail "ctl ping --socket SOCK (option after the command)"

say "a closed stdout ends every command quietly (SIGPIPE, as for ls), never a panic"
# The reader is gone before ctl writes: the write must end ctl by SIGPIPE.
python3 - "$MINIGCS_BIN" "$CONFIG" <<'PY' || fail "ctl into a closed pipe"
import os, signal, subprocess, sys
binary, config = sys.argv[1], sys.argv[2]
commands = [["ping"], ["stats"], ["health"], ["nodes"], ["metrics"], ["workers"],
            ["scrub"], ["info", "dir/obj.bin"], ["recover", "node-1"]]
bad = []
for mode in ([], ["--json"]):
    for cmd in commands:
        r, w = os.pipe()
        os.close(r)
        p = subprocess.run([binary, "ctl", "-c", config] + mode + cmd, stdout=w,
                           stderr=subprocess.PIPE, timeout=120)
        os.close(w)
        err = p.stderr.decode(errors="replace")
        if p.returncode != -signal.SIGPIPE or err.strip():
            bad.append("%s: status %s, stderr %r" % (" ".join(mode + cmd), p.returncode, err[:300]))
for b in bad:
    print("FAIL:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
# The everyday form: the status a shell sees is 141 (or 0 if head read it all).
set +o pipefail
ctl stats 2>"$WORK/err" | head -n 1 >/dev/null
rc=${PIPESTATUS[0]}
set -o pipefail
case $rc in 0 | 141) ;; *) fail "ctl stats | head -1: exit $rc: $(cat "$WORK/err")" ;; esac
[ ! -s "$WORK/err" ] || fail "ctl stats | head -1 wrote to stderr: $(cat "$WORK/err")"

say "malformed socket input gets errors, the daemon keeps serving"
python3 - "$SOCK" <<'PY'
import json, socket, sys
path = sys.argv[1]

def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    return s, s.makefile("rb")

def reply(f):
    while True:
        line = f.readline()
        if not line:
            return None
        obj = json.loads(line)
        if "progress" in obj:
            continue
        return obj

def expect_error(f, what):
    r = reply(f)
    assert r is not None, "%s: connection closed without a reply" % what
    assert r.get("ok") is False and isinstance(r.get("error"), str) and r["error"], "%s: expected ok=false with an error, got %r" % (what, r)
    print("ok: %s -> error %r" % (what, r["error"][:80]))

s, f = conn()
for what, line in [("garbage", b"this is not json\n"), ("empty line", b"\n"),
                   ("non-object", b"[1, 2, 3]\n"), ("unknown cmd", b'{"cmd": "no-such-cmd"}\n'),
                   ("recover without node", b'{"cmd": "recover"}\n'),
                   ("recover unknown node", b'{"cmd": "recover", "node": "nope"}\n'),
                   ("binary junk", b"\x00\xff\xfe{{{\n")]:
    s.sendall(line)
    expect_error(f, what)
s.sendall(b'{"cmd": "health"}\n')
r = reply(f)
assert r and r.get("ok") is True and "status" in r["data"], "health on the same connection after errors: %r" % r
print("ok: same connection still answers health")
s.close()

s, f = conn()
big = b"a" * (10 * 1024 * 1024) + b"\n"
try:
    s.sendall(big)
except (BrokenPipeError, ConnectionResetError) as e:
    print("note: server stopped reading the 10 MiB line early (%s)" % e)
expect_error(f, "10 MiB line")
s.close()

s, f = conn()
s.sendall(b'{"cmd": "hea')
s.shutdown(socket.SHUT_WR)
r = reply(f)
if r is None:
    print("ok: half-written line -> connection closed")
else:
    assert r.get("ok") is False, "half-written line answered with %r" % r
    print("ok: half-written line -> error %r" % r.get("error"))
s.close()

s, f = conn()
s.sendall(b'{"cmd": "stats"')   # half line, then just vanish
s.close()
PY
j=$(ctlj health) || fail "ctl health after malformed input"
assert_eq healthy "$(jq -r .status <<<"$j")" "health after malformed input"

say "metrics agree with a known workload (N uploads, M downloads)"
N=5
M=7
op_count() { # op_count JSON upload|download: count for that op (exact name, else any name containing it)
    jq -r --arg op "$2" '.operation_summary as $s
        | if $s[$op] then $s[$op].count
          else ([$s | to_entries[] | select(.key | test($op)) | .value.count] | add // 0) end' <<<"$1"
}
csv_rows() { if [ -f "$METRICS_CSV" ]; then wc -l <"$METRICS_CSV"; else echo 0; fi; }
before=$(api /metrics/summary)
up0=$(op_count "$before" upload)
down0=$(op_count "$before" download)
sleep 1
csv0=$(csv_rows)
for i in $(seq 1 $N); do api "/objects/metrics/k$i" -X PUT --data-binary "payload $i" --fail -o /dev/null; done
for i in $(seq 1 $M); do api "/objects/metrics/k$(( (i - 1) % N + 1 ))" --fail -o /dev/null; done
csv_has() { [ "$(csv_rows)" -ge "$1" ]; }
wait_until 10 csv_has $((csv0 + N + M)) || fail "CSV grew by $(( $(csv_rows) - csv0 )) rows, expected $((N + M))"
sleep 1
csv1=$(csv_rows)
after=$(api /metrics/summary)
after_ctl=$(ctlj metrics)
up1=$(op_count "$after" upload)
down1=$(op_count "$after" download)
echo "upload count $up0 -> $up1, download count $down0 -> $down1, CSV rows $csv0 -> $csv1"
(( up1 - up0 >= N )) || fail "upload count rose by $((up1 - up0)), expected >= $N"
(( down1 - down0 >= M )) || fail "download count rose by $((down1 - down0)), expected >= $M"
assert_eq "$up1" "$(op_count "$after_ctl" upload)" "upload count: ctl metrics vs /metrics/summary"
assert_eq "$down1" "$(op_count "$after_ctl" download)" "download count: ctl metrics vs /metrics/summary"
(( csv1 - csv0 >= N + M )) || fail "CSV grew by $((csv1 - csv0)) rows, expected >= $((N + M))"
head -n 1 "$METRICS_CSV" | grep -q 'timestamp,operation_type,object_key,size_bytes,duration_ms,throughput_mbps,success,error_message,node_id,metrics_type' \
    || fail "CSV header is not the prototype's: $(head -n 1 "$METRICS_CSV")"
new_up=$(tail -n +$((csv0 + 1)) "$METRICS_CSV" | cut -d, -f2 | grep -c upload || true)
new_down=$(tail -n +$((csv0 + 1)) "$METRICS_CSV" | cut -d, -f2 | grep -c download || true)
assert_eq "$N" "$new_up" "new upload rows in the CSV"
assert_eq "$M" "$new_down" "new download rows in the CSV"
api /metrics -o "$WORK/prom" --fail
grep -q '^minigcs_' "$WORK/prom" || fail "/metrics has no minigcs_ lines"

say "ctl health exits 1 while degraded, 0 once healthy again"
rm -rf "$(node_dir 3)"
degraded() { ctlj health 2>/dev/null | jq -e '.status == "degraded"' >/dev/null; }
set +o pipefail
wait_until 20 degraded || fail "node-3 deleted but health not degraded: $(ctlj health)"
set -o pipefail
rc=0; ctl health >"$WORK/out" 2>&1 || rc=$?
assert_eq 1 "$rc" "exit code of ctl health while degraded"
grep -q 'status: degraded' "$WORK/out" || fail "ctl health (human) while degraded: $(cat "$WORK/out")"
rc=0; ctlj health >"$WORK/out" 2>&1 || rc=$?
assert_eq 1 "$rc" "exit code of ctl --json health while degraded"
jq -e '.status == "degraded" and .failed_nodes == ["node-3"]' "$WORK/out" >/dev/null || fail "ctl --json health while degraded: $(cat "$WORK/out")"
ctl recover node-3 >/dev/null || fail "ctl recover node-3"
wait_until 20 ctl health >/dev/null 2>&1 || fail "ctl health does not exit 0 after recovering node-3: $(ctlj health)"

say "ctl with no daemon: exit 1, clear message"
stop_daemon
rc=0
ctl health >"$WORK/out" 2>&1 || rc=$?
assert_eq 1 "$rc" "exit code of ctl health with no daemon"
grep -Eqi 'daemon|socket|connect|running' "$WORK/out" || fail "unclear message with no daemon: $(cat "$WORK/out")"
echo "message: $(head -n 2 "$WORK/out")"

echo "PASS: $TEST_NAME"
