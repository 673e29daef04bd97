#!/usr/bin/env bash
# The container deployment, run as a user would, with Podman and
# podman-compose from Debian's packages:
#   - scripts/container-build.sh builds the static binary and the image
#     FROM scratch; the binary runs in it;
#   - docker-compose.yml (podman-compose up -d): minigcs mounts the store
#     inside the container; a file written through that mount by a process in
#     the container is read over the published API, and an upload over the
#     API is read through the mount; `ctl` works in the container;
#   - the container restarts (SIGTERM to minigcs as PID 1: clean shutdown)
#     and the data is intact, through the API and through the mount;
#   - docker-compose.serve.yml on the same volume: no /dev/fuse, no added
#     capability, no mount, the same data over the API.
# Everything the test creates (containers, pod, network, volume, image) is
# removed at exit. Needs root, /dev/fuse and Podman: fails instead of
# skipping under MINIGCS_REQUIRE_FUSE=1.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# A test that cannot run fails under MINIGCS_REQUIRE_FUSE=1, else skips.
cannot_run() {
    if [ "${MINIGCS_REQUIRE_FUSE:-0}" = 1 ]; then
        fail "needs Podman with FUSE and MINIGCS_REQUIRE_FUSE=1, but $*"
    fi
    skip "needs Podman with FUSE, but $*"
}

need_fuse
[ "$(id -u)" = 0 ] || cannot_run "it runs rootful Podman and is not root"

# ---- tools ----------------------------------------------------------------
# command -> Debian package (runc: the runtime containers.conf names below;
# busybox: a static shell copied into the scratch container to use the mount)
PACKAGES="podman:podman runc:runc podman-compose:podman-compose busybox:busybox-static"
missing=()
for pair in $PACKAGES; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_install() { apt-get -q -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"; }
    if ! apt_install; then
        { apt-get -q -o DPkg::Lock::Timeout=600 update && apt_install; } ||
            cannot_run "apt-get install ${missing[*]} failed"
    fi
fi
BUSYBOX=$(command -v busybox)

# Podman settings known to work here (FUSE inside the container included).
cat >"$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
export CONTAINERS_CONF=$WORK/containers.conf
podman info >"$WORK/podman-info.txt" 2>&1 || {
    cat "$WORK/podman-info.txt" >&2
    cannot_run "'podman info' fails"
}

# ---- names (all unique to this run) and cleanup ------------------------------
PROJECT=mgcstest$$
IMAGE=localhost/minigcs-test-$$:latest
VOLUME=${PROJECT}_minigcs-data
export MINIGCS_IMAGE=$IMAGE
export MINIGCS_API_PUBLISH=127.0.0.1:$API_PORT
compose() { podman-compose -p "$PROJECT" -f "$REPO_ROOT/$1" "${@:2}"; }

remove_everything() {
    local ids
    ids=$(podman ps -a -q --filter "label=io.podman.compose.project=$PROJECT" 2>/dev/null || true)
    if [ -n "$ids" ]; then
        # shellcheck disable=SC2086
        podman rm -f -t 10 $ids >/dev/null 2>&1 || true
    fi
    podman rm -f -t 1 "${PROJECT}_nocap" >/dev/null 2>&1 || true
    podman pod rm -f "pod_$PROJECT" >/dev/null 2>&1 || true
    podman volume rm -f "$VOLUME" >/dev/null 2>&1 || true
    for net in $(podman network ls -q --filter "label=io.podman.compose.project=$PROJECT" 2>/dev/null); do
        podman network rm -f "$net" >/dev/null 2>&1 || true
    done
    # podman-compose's network leaves its address bookkeeping behind
    rm -rf "/var/lib/cni/networks/${PROJECT}_default"
    podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
}
CLEANUP_FIRST=remove_everything
remove_everything # nothing of a run with the same pid may be left

# ---- helpers --------------------------------------------------------------------
container() { podman ps -a -q --filter "label=io.podman.compose.project=$PROJECT"; }
show_container() {
    local c
    c=$(container)
    [ -n "$c" ] || return 0
    echo "----- podman ps / logs -----" >&2
    podman ps -a --filter "id=$c" >&2 || true
    podman logs "$c" 2>&1 | tail -n 60 >&2 || true
    echo "----- end -----" >&2
}
cfail() { show_container; fail "$*"; }
# in_container CMD...: run CMD in the container with the static busybox
in_container() { podman exec -i "$(container)" /busybox "$@"; }
container_pid() { podman inspect -f '{{.State.Pid}}' "$(container)"; }
# fuse_mount_inside PID: the container's own mount table has the store
fuse_mount_inside() { awk '$2 == "/mnt/minigcs" && $3 ~ /^fuse/ { f = 1 } END { exit !f }' "/proc/$1/mounts"; }
# wait_ready mount|serve: the container runs, the API answers (and the mount is in)
wait_ready() {
    local mode=$1 start=$SECONDS c pid
    while :; do
        c=$(container)
        [ -n "$c" ] || cfail "no container for project $PROJECT"
        if [ "$(podman inspect -f '{{.State.Running}}' "$c")" != true ]; then
            cfail "the $mode container stopped during start-up (exit code $(podman inspect -f '{{.State.ExitCode}}' "$c"))"
        fi
        pid=$(container_pid)
        if api_answers && { [ "$mode" != mount ] || fuse_mount_inside "$pid"; }; then
            return 0
        fi
        (( SECONDS - start < 60 )) || cfail "the $mode container is not ready after 60s"
        sleep 0.3
    done
}
# stop_container: SIGTERM, minigcs must exit 0 (clean shutdown as PID 1)
stop_container() {
    local c
    c=$(container)
    podman stop -t 30 "$c" >/dev/null
    assert_eq 0 "$(podman inspect -f '{{.State.ExitCode}}' "$c")" "exit code of minigcs after SIGTERM"
    log_has "$c" "stopped cleanly" || cfail "no 'stopped cleanly' in the container log"
}
# log_has CONTAINER TEXT: the container's log holds TEXT
log_has() { local l; l=$(podman logs "$1" 2>&1); grep -qF -- "$2" <<<"$l"; }
sha_api() { curl -fsS --max-time 60 "$API_URL/objects/$1" | sha256sum | cut -d' ' -f1; }

# ---- 1. image -------------------------------------------------------------------
say "building the static binary and the image $IMAGE"
build_start=$SECONDS
CONTAINER_ENGINE=podman "$REPO_ROOT/scripts/container-build.sh" "$IMAGE" >"$WORK/build.log" 2>&1 || {
    tail -n 40 "$WORK/build.log" >&2
    fail "scripts/container-build.sh failed"
}
say "built in $((SECONDS - build_start))s; image size $(podman image inspect -f '{{.Size}}' "$IMAGE") bytes"
STATIC_BIN=$(sed -n 's/^== static binary: \(.*\) (.*)$/\1/p' "$WORK/build.log")
[ -x "$STATIC_BIN" ] || fail "the build log names no static binary"
if readelf -lW "$STATIC_BIN" | grep -q 'program interpreter' || readelf -dW "$STATIC_BIN" | grep -q '(NEEDED)'; then
    fail "$STATIC_BIN is not statically linked"
fi
# The image is FROM scratch: one layer, the binary as entry point, and no shell.
assert_eq 1 "$(podman image inspect -f '{{len .RootFS.Layers}}' "$IMAGE")" "image layers"
assert_eq '[/minigcs]' "$(podman image inspect -f '{{.Config.Entrypoint}}' "$IMAGE")" "entry point"
version=$(podman run --rm "$IMAGE" --version)
[[ $version == "minigcs "* ]] || fail "the binary does not run in the image: '$version'"
if podman run --rm --entrypoint /bin/sh "$IMAGE" -c true >/dev/null 2>&1; then
    fail "the image has a shell: it is not FROM scratch"
fi

# Without the capability, mount(2) is refused and the image has no fusermount3:
# minigcs exits 1 and says what the container lacks.
say "a mount container without CAP_SYS_ADMIN fails clearly"
rc=0
out=$(timeout 60 podman run --rm --name "${PROJECT}_nocap" --device /dev/fuse "$IMAGE" 2>&1) || rc=$?
assert_eq 1 "$rc" "exit code of minigcs mount without CAP_SYS_ADMIN"
grep -q -- "--cap-add SYS_ADMIN" <<<"$out" || fail "the error does not name the missing capability: $out"

# ---- 2. mount inside the container (docker-compose.yml) -------------------------
say "podman-compose up -d (mount inside the container)"
compose docker-compose.yml up -d >"$WORK/compose-up.log" 2>&1 || { cat "$WORK/compose-up.log" >&2; cfail "podman-compose up failed"; }
wait_ready mount
C=$(container)
# What docker-compose.yml grants, and no more: /dev/fuse and CAP_SYS_ADMIN.
assert_eq false "$(podman inspect -f '{{.HostConfig.Privileged}}' "$C")" "privileged"
podman inspect -f '{{.HostConfig.CapAdd}}' "$C" | grep -q SYS_ADMIN || cfail "the mount container lacks CAP_SYS_ADMIN"
podman inspect -f '{{range .HostConfig.Devices}}{{.PathInContainer}} {{end}}' "$C" | grep -qw /dev/fuse ||
    cfail "the mount container lacks /dev/fuse"
awk '$2 == "/mnt/minigcs"' /proc/mounts | grep -q . && fail "the container's mount leaked into the host's mount table"
podman cp "$BUSYBOX" "$C:/busybox"

say "writing a file through the mount inside the container"
mkrand "$WORK/report.bin" $((6 * 1024 * 1024 + 123))   # two chunks and a bit
in_container sh -c 'mkdir -p /mnt/minigcs/docs && cat > /mnt/minigcs/docs/report.bin' <"$WORK/report.bin" ||
    cfail "writing through the mount inside the container failed"
want=$(sha_of "$WORK/report.bin")
assert_eq "$want" "$(sha_api docs/report.bin)" "file written through the mount, read over the published API"
size=$(curl -fsS "$API_URL/objects/docs/report.bin/info" | jq -r .size)
assert_eq $((6 * 1024 * 1024 + 123)) "$size" "size over the API"

say "uploading over the API, reading through the mount inside the container"
echo "written over the API at $(date +%s.%N)" >"$WORK/note.txt"
curl -fsS -T "$WORK/note.txt" "$API_URL/objects/api/note.txt" >/dev/null
assert_eq "$(cat "$WORK/note.txt")" "$(in_container cat /mnt/minigcs/api/note.txt)" "API upload read through the mount"
podman exec "$C" /minigcs ctl health >/dev/null || cfail "'ctl health' in the container is not healthy"
objects=$(podman exec "$C" /minigcs ctl --json stats | jq -r .total_objects)
assert_eq 2 "$objects" "objects counted by ctl stats in the container"

# ---- 3. restart: clean shutdown as PID 1, data intact --------------------------
say "restarting the container"
pid_before=$(container_pid)
podman restart -t 30 "$C" >/dev/null
wait_ready mount
[ "$(container_pid)" != "$pid_before" ] || cfail "the container did not restart"
log_has "$C" "SIGTERM: shutting down" || cfail "minigcs (PID 1) did not shut down on SIGTERM"
log_has "$C" "stopped cleanly" || cfail "minigcs did not stop cleanly before the restart"
assert_eq "$want" "$(sha_api docs/report.bin)" "file over the API after the restart"
assert_eq "$want" "$(in_container sha256sum /mnt/minigcs/docs/report.bin | cut -d' ' -f1)" "file through the mount after the restart"
assert_eq "$(cat "$WORK/note.txt")" "$(in_container cat /mnt/minigcs/api/note.txt)" "API upload through the mount after the restart"
stop_container
compose docker-compose.yml down -t 30 >"$WORK/compose-down.log" 2>&1 || { cat "$WORK/compose-down.log" >&2; fail "podman-compose down failed"; }
[ -z "$(container)" ] || fail "podman-compose down left a container"
podman volume exists "$VOLUME" || fail "podman-compose down removed the data volume"

# ---- 4. serve only (docker-compose.serve.yml): no FUSE, no privilege ------------
say "podman-compose -f docker-compose.serve.yml up -d (API only)"
compose docker-compose.serve.yml up -d >"$WORK/compose-up-serve.log" 2>&1 || { cat "$WORK/compose-up-serve.log" >&2; cfail "podman-compose up (serve) failed"; }
wait_ready serve
C=$(container)
assert_eq "[]" "$(podman inspect -f '{{.HostConfig.Devices}}' "$C")" "devices of the serve container"
assert_eq "[]" "$(podman inspect -f '{{.HostConfig.CapAdd}}' "$C")" "capabilities added to the serve container"
pid=$(container_pid)
cap_eff=$(awk '/^CapEff:/ { print $2 }' "/proc/$pid/status")
(( (16#$cap_eff >> 21) & 1 )) && fail "the serve container has CAP_SYS_ADMIN (CapEff $cap_eff)"
fuse_mount_inside "$pid" && fail "the serve container has a FUSE mount"
assert_eq "$want" "$(sha_api docs/report.bin)" "file over the serve container's API"
assert_eq "$(cat "$WORK/note.txt")" "$(curl -fsS "$API_URL/objects/api/note.txt")" "API upload over the serve container"
echo serve >"$WORK/serve.txt"
curl -fsS -T "$WORK/serve.txt" "$API_URL/objects/serve.txt" >/dev/null
assert_eq serve "$(curl -fsS "$API_URL/objects/serve.txt")" "upload and download in the serve container"
podman exec "$C" /minigcs ctl health >/dev/null || cfail "'ctl health' in the serve container is not healthy"
stop_container
compose docker-compose.serve.yml down -t 30 >/dev/null 2>&1 || fail "podman-compose down (serve) failed"

say "PASS"
