#!/usr/bin/env bash
# Replays the Python prototype's documented requests and responses
# (PROTOTYPE-FACTS.md, "HTTP responses") against a real daemon and checks
# that every key the prototype answers with is there, with its JSON type,
# scale and value: status codes, the Content-Disposition of downloads,
# FastAPI's 422 body, percentages in /metrics/summary, node_stats' keys, the
# export's file name. A missing key fails the test. Then checks the places
# where minigcs differs from the prototype on purpose (README, "Where
# minigcs differs from the prototype on purpose"): keys with `/`, empty
# objects, HEAD, ranges, a 404 for an unknown node, a recovery that returns,
# shards of a chunk on distinct nodes. API only: runs on `minigcs serve`.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start_daemon serve

B=$WORK/body
H=$WORK/headers
# call STATUS PATH [curl args]: the status must be STATUS; body in $B, headers in $H
call() {
    local want=$1 path=$2 got
    shift 2
    got=$(curl -sS -D "$H" -o "$B" -w '%{http_code}' "$@" "$API_URL$path")
    [ "$got" = "$want" ] || fail "$path $* -> HTTP $got, expected $want; body: $(head -c 500 "$B")"
}
# check JQ_EXPR: must be true of $B
check() { jq -e "$1" "$B" >/dev/null || fail "expected $1 of: $(head -c 1500 "$B")"; }
# need JQ_PATH TYPE: the key exists in $B (null counts as present) and has
# the type: string, number, integer, boolean, array, object, null, or
# iso8601 (a string such as 2026-11-25T12:52:37.192944, zone optional)
need() {
    local path=$1 type=$2 p
    p=$(jq -cn "[path($path)][0]") || fail "bad path $path"
    jq -e --argjson p "$p" 'any(paths; . == $p)' "$B" >/dev/null \
        || fail "missing key $path in: $(head -c 1500 "$B")"
    jq -e --argjson p "$p" --arg t "$type" '
        getpath($p) as $v
        | if $t == "integer" then ($v | type) == "number" and $v == ($v | floor)
          elif $t == "iso8601" then ($v | type) == "string"
               and ($v | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?Z?$"))
          else ($v | type) == $t end' "$B" >/dev/null \
        || fail "$path is not of type $type: $(jq -c --argjson p "$p" 'getpath($p)' "$B")"
}
# header NAME: the value of response header NAME in $H (CR stripped)
header() { grep -i "^$1:" "$H" | head -n 1 | cut -d: -f2- | sed 's/^ //' | tr -d '\r'; }

printf 'hello\n' >"$WORK/docs.txt"
DOCS_SHA=$(sha_of "$WORK/docs.txt")

say "GET /"
call 200 /
check '.message == "MiniGCS API"'
need .version string

say "POST /metrics/clear (from here on, every operation is counted)"
call 200 /metrics/clear -X POST
check '. == {"message": "Metrics cleared successfully"}'

say "POST /objects/docs.txt (multipart, field file)"
call 200 /objects/docs.txt -X POST -F "file=@$WORK/docs.txt;type=text/plain"
check '.message == "Object docs.txt uploaded successfully"'
need .size integer
check '.size == 6'
check '.content_type == "text/plain"'

say "POST without a file field: FastAPI's 422"
call 422 /objects/nofile.txt -X POST -F "upload=@$WORK/docs.txt"
need .detail array
check '.detail | length == 1'
need '.detail[0].type' string
need '.detail[0].loc' array
need '.detail[0].msg' string
need '.detail[0].input' null
check '.detail[0] | .type == "missing" and .loc == ["body", "file"] and .msg == "Field required"'
call 404 /objects/nofile.txt

say "GET /objects/docs.txt: the bytes, as an attachment"
call 200 /objects/docs.txt
cmp -s "$B" "$WORK/docs.txt" || fail "downloaded bytes differ"
assert_eq "attachment; filename=docs.txt" "$(header content-disposition)" "content-disposition"
[ -n "$(header content-type)" ] || fail "no content-type on the download"
call 200 /objects/docs.txt -I
assert_eq "attachment; filename=docs.txt" "$(header content-disposition)" "HEAD content-disposition"

say "GET /objects and ?prefix=do"
for q in "" "?prefix=do"; do
    call 200 "/objects$q"
    need .objects array
    need .count integer
    check '.objects == ["docs.txt"] and .count == 1'
done
call 200 "/objects?prefix=zz"
check '.objects == [] and .count == 0'

say "GET /objects/docs.txt/info"
call 200 /objects/docs.txt/info
need .key string
need .size integer
need .content_type string
need .created_at iso8601
need .updated_at iso8601
need .version integer
need .checksum string
check '.key == "docs.txt" and .size == 6 and .content_type == "text/plain" and .version >= 1'
assert_eq "$DOCS_SHA" "$(jq -r .checksum "$B")" "info.checksum (sha256 of the whole object)"

say "GET /objects/missing: 404 Object not found"
call 404 /objects/missing
check '. == {"detail": "Object not found"}'
call 404 /objects/missing/info
check '. == {"detail": "Object not found"}'

say "GET /cluster/stats"
call 200 /cluster/stats
need .total_nodes integer
need .nodes_by_region object
need .total_objects integer
need .total_size integer
need .node_stats object
check '.total_nodes == 3 and .total_objects == 1 and .total_size == 6'
check '.nodes_by_region == {"us-east-1": 1, "us-west-1": 1, "eu-west-1": 1}'
check '.node_stats | keys == ["node-1", "node-2", "node-3"]'
for n in 1 2 3; do
    s=".node_stats[\"node-$n\"]"
    need "$s.node_id" string
    need "$s.region" string
    need "$s.created_at" iso8601
    need "$s.storage_path" string
    need "$s.total_shards" integer
    need "$s.total_size" integer
    # Every node holds one shard of docs.txt (k=2, m=1), so each was updated.
    need "$s.updated_at" iso8601
    check "$s | .node_id == \"node-$n\" and .storage_path == \"./node-$n\" and .total_shards == 1 and .total_size > 0"
    check "$s | .updated_at >= .created_at"
done
check '[.node_stats[].region] | sort == ["eu-west-1", "us-east-1", "us-west-1"]'

say "GET /cluster/health"
call 200 /cluster/health
check '.status == "healthy" and .failed_nodes == [] and .message == "All nodes are healthy"'

say "GET /metrics/summary: the prototype's keys, rates in percent"
# So far: uploads 1 ok + 1 refused (422); downloads 1 ok + 3 failed (the
# refused key, missing, missing/info); head 1; list 3; info 1.
call 200 /metrics/summary
for k in total_operations total_recoveries; do need ".$k" integer; done
for k in overall_success_rate recovery_success_rate overall_throughput_mbps total_data_processed_mb; do
    need ".$k" number
done
need .operation_summary object
need .recovery_summary object
for op in upload download list; do
    s=".operation_summary.$op"
    need "$s.count" integer
    for k in success_rate avg_duration_ms min_duration_ms max_duration_ms avg_throughput_mbps; do
        need "$s.$k" number
    done
    need "$s.total_size_bytes" integer
done
check '.operation_summary.upload | .count == 2 and .success_rate == 50 and .total_size_bytes == 6'
check '.operation_summary.download | .count == 4 and .success_rate == 25'
check '.operation_summary.head.count == 1 and .operation_summary.info.count == 1'
check '.operation_summary.list | .count == 3 and .success_rate == 100'
check '.total_recoveries == 0 and .recovery_success_rate == 0'
# The overall rate is the percentage of successful operations, 0-100.
check '([.operation_summary[] | .count] | add) as $n
       | ([.operation_summary[] | .count * .success_rate / 100] | add) as $ok
       | .total_operations == $n and ((.overall_success_rate - $ok / $n * 100) | fabs) < 0.01
         and .overall_success_rate > 1 and .overall_success_rate < 100'
# Megabytes are the prototype's: 2^20 bytes.
check '([.operation_summary[] | .total_size_bytes] | add) as $b
       | ((.total_data_processed_mb - $b / 1048576) | fabs) < 0.000001'

say "POST /metrics/export"
call 200 /metrics/export -X POST
need .message string
need .filename string
check '.filename | test("^metrics_export_[0-9]{8}_[0-9]{6}\\.json$")'
check '.message == "Metrics exported to \(.filename)"'
f=$(jq -r .filename "$B")
[ -f "$WORK/$f" ] || fail "the export $f is not beside metrics.csv in $WORK"
jq -e '.summary.total_operations > 0' "$WORK/$f" >/dev/null || fail "the export $f lacks the summary"

say "DELETE /objects/docs.txt (200 also when absent)"
for _ in 1 2; do
    call 200 /objects/docs.txt -X DELETE
    check '. == {"message": "Object docs.txt deleted successfully"}'
done
call 404 /objects/docs.txt

say "POST /metrics/clear"
call 200 /metrics/clear -X POST
check '. == {"message": "Metrics cleared successfully"}'
call 200 /metrics/summary
check '.total_operations == 0 and .overall_success_rate == 0 and .operation_summary == {}'

say "on purpose: keys with /, empty objects, HEAD, ranges"
call 200 /objects/reports/2026/q1.txt -X POST -F "file=@$WORK/docs.txt"
call 200 /objects/reports/2026/q1.txt
cmp -s "$B" "$WORK/docs.txt" || fail "a key with / read back different bytes"
assert_eq "attachment; filename=q1.txt" "$(header content-disposition)" "content-disposition of a nested key"
: >"$WORK/empty"
call 200 /objects/empty.bin -X POST -F "file=@$WORK/empty"
check '.size == 0'
call 200 /objects/empty.bin
[ ! -s "$B" ] || fail "the empty object is not empty"
call 200 /objects/reports/2026/q1.txt -I
assert_eq 6 "$(header content-length)" "HEAD content-length"
call 206 /objects/reports/2026/q1.txt -r 1-3
assert_eq "ell" "$(cat "$B")" "range 1-3"
assert_eq "bytes 1-3/6" "$(header content-range)" "content-range"

say "on purpose: shards of a chunk on distinct nodes"
call 200 /objects/reports/2026/q1.txt/info
check '[.chunks[] | [.shards[].node] | (length == (unique | length))] | all'

say "on purpose: recovery answers (and 404 for an unknown node)"
call 404 /cluster/recovery/node-9 -X POST
need .detail string
call 200 /cluster/recovery/node-2 -X POST --max-time 60
check '.message == "Recovery completed for node node-2"'
call 200 /cluster/health --max-time 10
check '.status == "healthy"'
call 200 /metrics/summary
check '.total_recoveries == 1 and .recovery_success_rate == 100 and .recovery_summary.success_rate == 100'
need .recovery_summary.count integer
for k in avg_mttr_ms min_mttr_ms max_mttr_ms; do need ".recovery_summary.$k" number; done

stop_daemon
echo "PASS: $TEST_NAME"
