#!/usr/bin/env bash
# Runs every minigcs test on a fresh Debian machine:
#   1. installs the tools the tests use (apt) if any is missing,
#   2. cargo build --release and cargo test --release,
#   3. every tests/shell/test_*.sh against the release binary.
#
# Usage: scripts/test.sh [FILTER]
#   FILTER     run only the shell tests whose file name contains FILTER
#              (cargo test is skipped then, unless MINIGCS_CARGO_TEST=1)
# Environment:
#   MINIGCS_REQUIRE_FUSE=1   tests that need FUSE fail instead of being skipped
#   MINIGCS_SKIP_BUILD=1     use the existing binary (MINIGCS_BIN, else the release
#                            binary where cargo puts it: CARGO_TARGET_DIR is honoured)
#   MINIGCS_CARGO_TEST=0|1   force cargo test off/on
#   MINIGCS_TEST_TIMEOUT     per shell test time limit in seconds (default 900)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=target_dir.sh
. scripts/target_dir.sh
FILTER=${1:-}

log() { echo "== $*"; }

# ---- 1. tools ------------------------------------------------------------
# command -> Debian package
TOOLS="fusermount3:fuse3 jq:jq curl:curl sqlite3:sqlite3 git:git rsync:rsync
python3:python3 getfattr:attr setfacl:acl bindfs:bindfs fio:fio"

# test_openapi.sh renders /docs in a headless browser
TOOLS="$TOOLS chromium:chromium"

# test_systemd_units.sh verifies contrib/*.service and *.mount
TOOLS="$TOOLS systemd-analyze:systemd"
# test_s3_api.sh drives the S3 API with these clients
TOOLS="$TOOLS rclone:rclone s3cmd:s3cmd"

install_tools() {
    local missing=() pair cmd pkg sudo=
    for pair in $TOOLS; do
        cmd=${pair%%:*}
        pkg=${pair#*:}
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "tools: all present"
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
            echo "missing packages ${missing[*]} and not root (no sudo): install them first" >&2
            return 1
        fi
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        log "apt-get install failed; running apt-get update and trying again"
        $sudo apt-get update -q
        $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
}
install_tools

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: this project needs a Rust toolchain (rustup) on PATH" >&2
    exit 1
fi

# ---- 2. build and Rust tests ----------------------------------------------
run_cargo_test=1
[ -n "$FILTER" ] && run_cargo_test=0
[ -n "${MINIGCS_CARGO_TEST:-}" ] && run_cargo_test=$MINIGCS_CARGO_TEST

if [ "${MINIGCS_SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release"
    cargo build --release
fi
export MINIGCS_BIN=${MINIGCS_BIN:-$(minigcs_release_bin "$ROOT")}
case $MINIGCS_BIN in /*) ;; *) MINIGCS_BIN=$ROOT/$MINIGCS_BIN ;; esac
if [ ! -x "$MINIGCS_BIN" ]; then
    echo "binary $MINIGCS_BIN not found" >&2
    exit 1
fi

cargo_rc=0
if [ "$run_cargo_test" = 1 ]; then
    log "cargo test --release"
    cargo test --release || cargo_rc=$?
    if [ "$cargo_rc" -ne 0 ]; then log "cargo test --release FAILED (exit $cargo_rc)"; fi
else
    log "cargo test skipped (filter given; set MINIGCS_CARGO_TEST=1 to run it)"
fi

# ---- 3. shell tests -------------------------------------------------------
TEST_TIMEOUT=${MINIGCS_TEST_TIMEOUT:-900}
SUITE_TMP=$(mktemp -d "${TMPDIR:-/tmp}/minigcs-shell.XXXXXX")

# Kill daemons and lazily unmount anything a test left under its temp dir.
sweep() {
    local dir=$1 pidfile pid mnt
    for pidfile in "$dir"/*/daemon.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        # only a daemon of this test (its command line names the test's folder)
        if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/"; then
            echo "   (killing leftover daemon $pid)"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    done
    while read -r mnt; do
        [ -n "$mnt" ] || continue
        echo "   (unmounting leftover $mnt)"
        fusermount3 -u -z "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    done < <(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts)
}
cleanup_suite() {
    sweep "$SUITE_TMP"
    if awk -v d="$SUITE_TMP/" 'index($2, d) == 1 { f = 1 } END { exit !f }' /proc/mounts; then
        echo "WARNING: mounts remain under $SUITE_TMP; not removing it" >&2
    elif [ "${MINIGCS_KEEP_WORK:-0}" = 1 ]; then
        echo "kept test folders under $SUITE_TMP (MINIGCS_KEEP_WORK=1)"
    else
        rm -rf "$SUITE_TMP"
    fi
}
trap cleanup_suite EXIT

passed=0 failed=0 skipped=0
results=()
shopt -s nullglob
tests=(tests/shell/test_*.sh)
selected=()
for t in "${tests[@]}"; do
    name=$(basename "$t" .sh)
    if [ -n "$FILTER" ] && [[ $name != *"$FILTER"* ]]; then continue; fi
    selected+=("$t")
done
if [ "${#selected[@]}" -eq 0 ]; then
    echo "no shell test matches '${FILTER}'" >&2
    exit 1
fi

suite_start=$SECONDS
for t in "${selected[@]}"; do
    name=$(basename "$t" .sh)
    dir=$SUITE_TMP/$name
    mkdir -p "$dir"
    log "shell test $name"
    start=$SECONDS
    rc=0
    TMPDIR=$dir timeout -k 30 "$TEST_TIMEOUT" bash "$ROOT/$t" </dev/null || rc=$?
    sweep "$dir"
    secs=$((SECONDS - start))
    case $rc in
        0) status=PASS; passed=$((passed + 1)) ;;
        77) status=SKIP; skipped=$((skipped + 1)) ;;
        124) status="FAIL (timed out after ${TEST_TIMEOUT}s)"; failed=$((failed + 1)) ;;
        *) status="FAIL (exit $rc)"; failed=$((failed + 1)) ;;
    esac
    line=$(printf '%-6s %-28s %5ss' "${status%% *}" "$name" "$secs")
    [ "$status" = "${status%% *}" ] || line="$line  ${status#* }"
    results+=("$line")
    echo "== $line"
done

echo
echo "== shell test summary ($((SECONDS - suite_start))s)"
for r in "${results[@]}"; do echo "   $r"; done
if [ "$run_cargo_test" = 1 ]; then
    if [ "$cargo_rc" -eq 0 ]; then echo "   cargo test --release: ok"; else echo "   cargo test --release: FAILED (exit $cargo_rc)"; fi
fi
echo "shell: $passed passed, $failed failed, $skipped skipped"

if [ "$failed" -ne 0 ] || [ "$cargo_rc" -ne 0 ]; then
    exit 1
fi
