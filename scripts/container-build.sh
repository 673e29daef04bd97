#!/usr/bin/env bash
# Builds the minigcs container image in one command:
#   1. a statically linked minigcs (glibc, `-C target-feature=+crt-static`)
#      with cargo in its own target dir (target/static), so the normal
#      `cargo build --release` in target/ is left as it is;
#   2. checks that the binary asks for no dynamic loader and no shared library;
#   3. copies it with container/config.yaml into a small build context
#      (target/static/context: two files, never the repository or target/);
#   4. builds the image FROM scratch with Containerfile, using podman, or
#      docker when podman is not installed.
#
# Usage: scripts/container-build.sh [IMAGE]        (default: minigcs:latest)
# Environment:
#   CONTAINER_ENGINE=podman|docker   the engine to build with (default: podman
#                                    if installed, else docker)
#   MINIGCS_STATIC_TARGET_DIR        cargo target dir of the static build
#                                    (default: target/static in the repository)
#   MINIGCS_STATIC_ONLY=1            build and check the binary only, no image
# Prints the path of the static binary and the image name at the end.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
IMAGE=${1:-minigcs:latest}
TARGET_DIR=${MINIGCS_STATIC_TARGET_DIR:-$ROOT/target/static}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac

log() { echo "== $*"; }
die() { echo "container-build: $*" >&2; exit 1; }

command -v cargo >/dev/null 2>&1 || die "cargo not found: this needs a Rust toolchain (rustup) on PATH"
HOST_TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
case $HOST_TRIPLE in
    *-linux-gnu | *-linux-musl) ;;
    *) die "the image holds a Linux binary; this host is $HOST_TRIPLE" ;;
esac

# ---- 1. static binary -----------------------------------------------------
# An explicit --target keeps RUSTFLAGS away from build scripts and proc
# macros (they are loaded by the compiler and cannot be static). No debug
# info: the image ships a small binary.
log "static build: cargo build --release --target $HOST_TRIPLE (target dir $TARGET_DIR)"
RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    cargo build --release --locked --target "$HOST_TRIPLE" --target-dir "$TARGET_DIR"
BIN=$TARGET_DIR/$HOST_TRIPLE/release/minigcs
[ -x "$BIN" ] || die "cargo did not produce $BIN"

# ---- 2. is it really static? ----------------------------------------------
if command -v readelf >/dev/null 2>&1; then
    if readelf -lW "$BIN" | grep -q 'program interpreter'; then
        die "$BIN asks for a dynamic loader: it is not statically linked"
    fi
    if readelf -dW "$BIN" | grep -q '(NEEDED)'; then
        die "$BIN needs shared libraries: $(readelf -dW "$BIN" | grep '(NEEDED)' | tr -s ' ' | tr '\n' ' ')"
    fi
else
    echo "container-build: readelf (binutils) not found; skipping the static-link check" >&2
fi
if command -v file >/dev/null 2>&1; then file -b "$BIN" | sed 's/^/   /'; fi
"$BIN" --version >/dev/null || die "$BIN does not run"
log "static binary: $BIN ($(du -h "$BIN" | cut -f1))"
if [ "${MINIGCS_STATIC_ONLY:-0}" = 1 ]; then exit 0; fi

# ---- 3. build context --------------------------------------------------------
CONTEXT=$TARGET_DIR/context
rm -rf "$CONTEXT"
mkdir -p "$CONTEXT"
cp "$BIN" "$CONTEXT/minigcs"
cp "$ROOT/container/config.yaml" "$CONTEXT/config.yaml"

# ---- 4. image ------------------------------------------------------------------
engine=${CONTAINER_ENGINE:-}
if [ -z "$engine" ]; then
    if command -v podman >/dev/null 2>&1; then
        engine=podman
    elif command -v docker >/dev/null 2>&1; then
        engine=docker
    else
        die "neither podman nor docker is installed (Debian: apt-get install podman); the static binary is at $BIN"
    fi
fi
command -v "$engine" >/dev/null 2>&1 || die "$engine is not installed"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)
build_args=(-f "$ROOT/Containerfile" --build-arg "VERSION=$version" -t "$IMAGE")
# podman: commit once at the end (one layer, no intermediate images left over)
[ "$(basename "$engine")" != podman ] || build_args+=(--layers=false)
log "$engine build -t $IMAGE ($(du -sh "$CONTEXT" | cut -f1) of context)"
"$engine" build "${build_args[@]}" "$CONTEXT"
log "image $IMAGE built (minigcs $version): run it with 'docker compose up -d' or 'podman-compose up -d'"
