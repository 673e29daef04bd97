#!/usr/bin/env bash
# api.auth_token: every endpoint except GET / needs `Authorization: Bearer
# <token>` (401 otherwise, with a JSON detail); the control socket is unaffected.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

TOKEN=s3cr3t-token-for-tests
CFG_API_EXTRA="  auth_token: \"$TOKEN\""
write_config
start_daemon serve
B=$WORK/body

say "GET / is open"
assert_eq 200 "$(api_code "$B" /)" "GET / without a token"

say "everything else needs the token"
for req in "/objects" "/objects/x" "/objects/x/info" "/cluster/stats" "/cluster/health" "/metrics/summary" "/metrics"; do
    assert_eq 401 "$(api_code "$B" "$req")" "GET $req without a token"
    jq -e '.detail | type == "string"' "$B" >/dev/null || fail "401 for $req has no JSON detail: $(head -c 200 "$B")"
    assert_eq 401 "$(api_code "$B" "$req" -H 'Authorization: Bearer wrong')" "GET $req with a wrong token"
done
assert_eq 401 "$(api_code "$B" /objects/x -X PUT --data-binary data)" "PUT without a token"
assert_eq 401 "$(api_code "$B" /objects/x -X DELETE)" "DELETE without a token"
assert_eq 401 "$(api_code "$B" /cluster/recovery/node-1 -X POST)" "POST recovery without a token"
assert_eq 401 "$(api_code "$B" /metrics/clear -X POST)" "POST metrics/clear without a token"
assert_eq 404 "$(api_code "$B" /objects/x -H "Authorization: Bearer $TOKEN")" "GET with the token before upload"

say "with the token everything works"
AUTH=(-H "Authorization: Bearer $TOKEN")
assert_eq 200 "$(api_code "$B" /objects/x -X PUT --data-binary data "${AUTH[@]}")" "PUT with the token"
assert_eq 200 "$(api_code "$B" /objects/x "${AUTH[@]}")" "GET with the token"
assert_eq data "$(cat "$B")" "body"
assert_eq 200 "$(api_code "$B" /cluster/health "${AUTH[@]}")" "health with the token"
assert_eq 200 "$(api_code "$B" /objects "${AUTH[@]}")" "list with the token"
jq -e '.objects == ["x"]' "$B" >/dev/null || fail "list: $(cat "$B")"

say "the control socket does not need the token"
assert_eq healthy "$(ctlj health | jq -r .status)" "ctl health"

stop_daemon
echo "PASS: $TEST_NAME"
