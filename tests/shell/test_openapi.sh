#!/usr/bin/env bash
# /openapi.json and /docs. The document is valid OpenAPI (openapi-spec-validator
# from PyPI), names every route the router serves (read from src/http) and
# every method it answers, and only those; live answers of every endpoint
# have documented statuses and bodies matching the documented schemas. With
# api.auth_token set, both stay public, the document declares the bearer
# scheme and 401 on every other operation, and /docs renders in headless
# Chromium with every other host unreachable (its files come from the
# binary): each operation shown, a screenshot taken in the test's folder.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

CHECK=$LIB_DIR/openapi_check.py
VENV=$WORK/venv
PY=$VENV/bin/python

# Debian packages this test needs, installed if missing (CI runs on a fresh machine).
apt_install() {
    local sudo=
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || fail "need root or sudo to install $*"
        sudo=sudo
    fi
    say "installing $*"
    if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$@" >"$WORK/apt.log" 2>&1; then
        $sudo apt-get update -q >>"$WORK/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$@" >>"$WORK/apt.log" 2>&1 ||
            { tail -n 20 "$WORK/apt.log" >&2; fail "apt-get install $* failed"; }
    fi
}

say "openapi-spec-validator from PyPI, in a venv under $WORK"
if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    apt_install python3-venv   # Debian ships venv (ensurepip) separately
    rm -rf "$VENV"
    python3 -m venv "$VENV" || fail "python3 -m venv failed even with python3-venv"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check openapi-spec-validator >"$WORK/pip.log" 2>&1 ||
    { tail -n 20 "$WORK/pip.log" >&2; fail "pip install openapi-spec-validator failed"; }

CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
    apt_install chromium
    CHROMIUM=$(command -v chromium) || fail "chromium not found after installing it"
fi

validate() { # validate DOC
    "$VENV/bin/openapi-spec-validator" "$1" >"$WORK/validator.out" 2>&1 ||
        { cat "$WORK/validator.out" >&2; fail "openapi-spec-validator rejects $1"; }
    jq -e '.openapi | startswith("3.1")' "$1" >/dev/null || fail "$1 is not OpenAPI 3.1: $(jq -r .openapi "$1")"
}

# ---- without api.auth_token -------------------------------------------------
CFG_MAX_FILE_SIZE=65536   # a 413 is among the answers checked
write_config
start_daemon serve

say "GET /openapi.json is a valid OpenAPI 3.1 document"
DOC=$WORK/openapi.json
assert_eq 200 "$(api_code "$DOC" /openapi.json)" "GET /openapi.json"
validate "$DOC"
assert_eq "MiniGCS API" "$(jq -r .info.title "$DOC")" "title"
assert_eq "$("$MINIGCS_BIN" --version | awk '{print $NF}')" "$(jq -r .info.version "$DOC")" "info.version"
"$PY" "$CHECK" security "$DOC" off

say "every route the router serves is documented, and every documented operation is served"
"$PY" "$CHECK" routes "$DOC" "$API_URL" "$REPO_ROOT/src/http"

say "live answers match the documented statuses and schemas"
"$PY" "$CHECK" answers "$DOC" "$API_URL"
stop_daemon

# ---- with api.auth_token ----------------------------------------------------
TOKEN=openapi-test-token
CFG_API_EXTRA="  auth_token: \"$TOKEN\""
write_config
start_daemon serve

say "with api.auth_token: the document and the page need no token; the bearer scheme is declared"
DOC_AUTH=$WORK/openapi-auth.json
assert_eq 200 "$(api_code "$DOC_AUTH" /openapi.json)" "GET /openapi.json without a token"
validate "$DOC_AUTH"
"$PY" "$CHECK" security "$DOC_AUTH" on
"$PY" "$CHECK" unauthorized "$DOC_AUTH" "$API_URL"

say "/docs in headless Chromium, with every host but 127.0.0.1 unreachable"
chromium_run() { # chromium_run ARGS... (the page is the last argument)
    local sandbox=()
    [ "$(id -u)" != 0 ] || sandbox=(--no-sandbox)   # Chromium refuses root without it
    timeout 180 "$CHROMIUM" --headless "${sandbox[@]}" --disable-gpu --disable-dev-shm-usage \
        --no-first-run --no-default-browser-check --user-data-dir="$WORK/chromium-profile" \
        --host-resolver-rules="MAP * ~NOTFOUND , EXCLUDE 127.0.0.1" \
        --virtual-time-budget=30000 "$@" 2>>"$WORK/chromium.log"
}
PNG=$WORK/docs.png
chromium_run --window-size=1280,1800 --screenshot="$PNG" "$API_URL/docs" >/dev/null ||
    { tail -n 20 "$WORK/chromium.log" >&2; fail "chromium --screenshot failed"; }
[ -s "$PNG" ] || fail "no screenshot at $PNG"
chromium_run --dump-dom "$API_URL/docs" >"$WORK/docs-dom.html" ||
    { tail -n 20 "$WORK/chromium.log" >&2; fail "chromium --dump-dom failed"; }
"$PY" "$CHECK" page "$WORK/docs-dom.html" "$DOC_AUTH" "$API_URL" on
"$PY" "$CHECK" png "$PNG"
echo "screenshot: $PNG (kept with MINIGCS_KEEP_WORK=1)"

stop_daemon
echo "PASS: $TEST_NAME"
