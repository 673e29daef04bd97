# Shared by scripts/run.sh, scripts/test.sh, scripts/bench.sh, scripts/minigcs
# and tests/shell/lib.sh (sourced, not run): where cargo puts what it builds.
# Cargo decides that (CARGO_TARGET_DIR, build.target-dir in a .cargo/config,
# or ./target), so ask it instead of assuming ./target.
#
#   cargo_target_dir REPO   prints the target directory of the crate at REPO
#                           (REPO/target when cargo is not there to ask)
#   minigcs_release_bin REPO  prints the path of the release binary

cargo_target_dir() {
    local repo=$1 dir=
    if command -v cargo >/dev/null 2>&1; then
        # The JSON is one line; the path is a plain string in it (a path with
        # a double quote or backslash in it would come out escaped).
        dir=$(cd "$repo" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
            grep -o '"target_directory":"[^"]*"' | head -n 1 | cut -d'"' -f4) || dir=
    fi
    echo "${dir:-$repo/target}"
}

minigcs_release_bin() {
    echo "$(cargo_target_dir "$1")/release/minigcs"
}
