#!/usr/bin/env bash
# What a new user meets in the first hour: the scripts find the binary where
# cargo put it (CARGO_TARGET_DIR set to another folder); the README's
# quick-start commands run as written (against this test's daemon: its
# mount point, port and config substituted); `ctl help`, options after the
# subcommand; `ctl info` of a directory and of a path outside the mount.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_fuse
command -v cargo >/dev/null || fail "cargo is needed to ask where the binary is"

say "the scripts ask cargo where the binary is (CARGO_TARGET_DIR elsewhere)"
export CARGO_TARGET_DIR=$WORK/cargo-target
mkdir -p "$CARGO_TARGET_DIR/release"
ln -s "$MINIGCS_BIN" "$CARGO_TARGET_DIR/release/minigcs"
found=$(. "$REPO_ROOT/scripts/target_dir.sh" && minigcs_release_bin "$REPO_ROOT")
assert_eq "$CARGO_TARGET_DIR/release/minigcs" "$found" "binary found by scripts/target_dir.sh"
(cd / && "$REPO_ROOT/scripts/minigcs" --version) | grep -q '^minigcs ' || fail "scripts/minigcs --version from / failed"
rm "$CARGO_TARGET_DIR/release/minigcs"
if out=$("$REPO_ROOT/scripts/minigcs" --version 2>&1); then fail "scripts/minigcs ran with no binary: $out"; fi
grep -q 'cargo build --release' <<<"$out" || fail "scripts/minigcs without a binary does not say how to build it: $out"
ln -s "$MINIGCS_BIN" "$CARGO_TARGET_DIR/release/minigcs"

start_daemon mount

say "the README's quick-start commands, as written"
# The block after "From another terminal" in the quick start.
awk '/^files, unmounts and exits 0. From another terminal/ { f = 1; next }
     f && /^```sh/ { in_block = 1; next }
     in_block && /^```/ { exit }
     in_block { print }' "$REPO_ROOT/README.md" >"$WORK/quickstart.sh"
[ -s "$WORK/quickstart.sh" ] || fail "no quick-start block found in README.md"
grep -q 'mnt/docs' "$WORK/quickstart.sh" || fail "the quick-start block does not write into the mount: $(cat "$WORK/quickstart.sh")"
python3 - "$WORK/quickstart.sh" "$MNT" "$API_PORT" "$CONFIG" "$REPO_ROOT" <<'PY'
import sys
path, mnt, port, config, repo = sys.argv[1:]
text = open(path).read()
for old, new in [("./mnt", mnt), ("localhost:8000", "127.0.0.1:" + port),
                 ("config.yaml", config), ("scripts/minigcs", repo + "/scripts/minigcs"),
                 ("cp README.md", "cp " + repo + "/README.md")]:
    text = text.replace(old, new)
open(path, "w").write("set -euo pipefail\n" + text)
PY
(cd "$WORK" && bash "$WORK/quickstart.sh") >"$WORK/quickstart.out" 2>&1 ||
    fail "the README's quick start failed: $(cat "$WORK/quickstart.sh") -> $(cat "$WORK/quickstart.out")"
cmp -s "$REPO_ROOT/README.md" "$WORK/copy.md" || fail "the copy read over HTTP differs from README.md"
grep -q 'docs/readme.md' "$WORK/quickstart.out" || fail "ctl info printed no key: $(cat "$WORK/quickstart.out")"
grep -qi healthy "$WORK/quickstart.out" || fail "ctl health did not say healthy: $(cat "$WORK/quickstart.out")"

say "ctl help, ctl help CMD, options after the subcommand"
"$MINIGCS_BIN" ctl help >"$WORK/out" || fail "ctl help exited $?"
for c in ping stats health nodes recover scrub metrics info workers; do
    grep -q "^  $c " "$WORK/out" || fail "ctl help does not list $c: $(cat "$WORK/out")"
done
"$MINIGCS_BIN" ctl help info >"$WORK/out" || fail "ctl help info exited $?"
grep -q 'PATH_OR_KEY' "$WORK/out" || fail "ctl help info: $(cat "$WORK/out")"
"$MINIGCS_BIN" ctl health -c "$CONFIG" >/dev/null || fail "ctl health -c CONFIG (option after the command) failed"
"$MINIGCS_BIN" ctl info docs/readme.md --json -c "$CONFIG" | jq -e '.kind == "file"' >/dev/null ||
    fail "ctl info KEY --json -c CONFIG failed"

say "ctl info of a directory says it is one"
for arg in "$MNT/docs" docs docs/; do
    ctl info "$arg" >"$WORK/out" || fail "ctl info $arg exited $?"
    grep -q '^type: *directory' "$WORK/out" || fail "ctl info $arg: $(cat "$WORK/out")"
done
ctlj info docs | jq -e '.kind == "dir" and .chunks == []' >/dev/null || fail "ctl --json info docs: $(ctlj info docs)"
ctl info "$MNT" >"$WORK/out" || fail "ctl info of the mount point exited $?"
grep -q 'root of the store' "$WORK/out" || fail "ctl info $MNT: $(cat "$WORK/out")"
(cd "$MNT/docs" && "$MINIGCS_BIN" ctl -c "$CONFIG" info readme.md) | grep -q '^key: *docs/readme.md' ||
    fail "ctl info of a relative path from inside the mount"

say "ctl info of a path outside the mount says what it takes"
rc=0
ctl info /etc/passwd >"$WORK/out" 2>&1 || rc=$?
assert_eq 1 "$rc" "exit code of ctl info /etc/passwd"
grep -q 'not inside this store' "$WORK/out" || fail "ctl info /etc/passwd: $(cat "$WORK/out")"
grep -qF "inside the mount point $MNT" "$WORK/out" || fail "ctl info /etc/passwd does not name the mount point: $(cat "$WORK/out")"
rc=0
ctl info no/such/key >"$WORK/out" 2>&1 || rc=$?
assert_eq 1 "$rc" "exit code of ctl info no/such/key"
grep -q 'no file or directory "no/such/key"' "$WORK/out" || fail "ctl info no/such/key: $(cat "$WORK/out")"

stop_daemon
echo "PASS: first hour"
