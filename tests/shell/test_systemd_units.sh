#!/usr/bin/env bash
# The systemd units in contrib/ pass `systemd-analyze verify` (no error and
# no warning about them), with ExecStart pointed at the binary under test;
# the .mount unit's name is its mount point escaped as systemd requires; a
# unit with a misspelt key is reported (so the check can fail).
# Needs systemd-analyze (Debian's systemd package, which scripts/test.sh
# installs): fails without it under MINIGCS_REQUIRE_FUSE=1 (CI), skips
# otherwise.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

if ! command -v systemd-analyze >/dev/null; then
    why="systemd-analyze is missing (apt-get install systemd)"
    [ "${MINIGCS_REQUIRE_FUSE:-0}" = 1 ] && fail "$why"
    skip "$why"
fi

UNITS=$WORK/units
mkdir -p "$UNITS"
cp "$REPO_ROOT/contrib/srv-minigcs.mount" "$UNITS/"
grep -q '^ExecStart=/usr/local/bin/minigcs mount ' "$REPO_ROOT/contrib/minigcs.service" ||
    fail "contrib/minigcs.service should run /usr/local/bin/minigcs mount"
sed "s|^ExecStart=/usr/local/bin/minigcs |ExecStart=$MINIGCS_BIN |" \
    "$REPO_ROOT/contrib/minigcs.service" >"$UNITS/minigcs.service"

say "systemd-analyze verify contrib/minigcs.service contrib/srv-minigcs.mount"
rc=0
out=$(cd "$UNITS" && systemd-analyze verify ./minigcs.service ./srv-minigcs.mount 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "systemd-analyze verify exited $rc: $out"
if grep -E 'minigcs' <<<"$out"; then fail "systemd-analyze verify reported problems in the units"; fi

say "the .mount unit is named after its mount point"
where=$(sed -n 's/^Where=//p' "$UNITS/srv-minigcs.mount")
assert_eq srv-minigcs.mount "$(systemd-escape -p --suffix=mount "$where")" "unit name for Where=$where"
assert_eq fuse.minigcs "$(sed -n 's/^Type=//p' "$UNITS/srv-minigcs.mount")" "the .mount unit's Type="

say "the service's ExecStart is a command line minigcs accepts"
read -r -a exec_start <<<"$(sed -n 's/^ExecStart=//p' "$UNITS/minigcs.service")"
"${exec_start[@]}" --help >/dev/null || fail "minigcs rejects the ExecStart arguments: ${exec_start[*]}"

say "a misspelt key is reported (the check can fail)"
sed 's/^Type=exec/Typ=exec/' "$UNITS/minigcs.service" >"$UNITS/typo.service"
out=$(cd "$UNITS" && systemd-analyze verify ./typo.service 2>&1) || true
grep -q "Unknown key" <<<"$out" || fail "systemd-analyze did not report Typ=: $out"
say "ok"
