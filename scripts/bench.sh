#!/usr/bin/env bash
# One benchmark run of minigcs against a raw folder and a bindfs passthrough
# FUSE mount on the same disk, printing every minigcs figure as a ratio to
# both references and checking it against the targets of the benchmark issue.
#
# Usage: scripts/bench.sh            (defaults take a few minutes on 2 cores)
#
# Environment (sizes accept a plain byte count or K/M/G/T suffixes, powers of
# 1024, e.g. 128M, 1G, 1GiB):
#   BENCH_BIG          big-file size for `minigcs bench` on each target  (1G)
#   BENCH_SMALL_COUNT  number of small files per target                 (5000)
#   BENCH_SMALL_SIZE   size of each small file                          (4K)
#   BENCH_FIO          fio sequential 1 MiB write/read size per target  (1G)
#   BENCH_RSS_SIZE     file written with dd while watching the daemon's RSS (4G)
#   BENCH_RECOVERY     data written before a node is deleted and rebuilt (1G)
#   BENCH_API_SMALL    number of 1–10 KiB objects for the HTTP API test  (1000)
#   BENCH_API_BIG      number of 1–4 MiB objects for the HTTP API test   (100)
#                      (both also run through the S3 API with boto3, from a
#                      venv under target/s3-venv made on first use)
#   BENCH_CONC_SIZE    size of each of the two files of the concurrency step (1G)
#   BENCH_CONC_SECONDS seconds of stat sampling, alone and during commits  (10)
#   BENCH_JOURNAL_SMALL small files per pass of the journal step           (2000)
#   BENCH_JOURNAL_BIG  big-file size per pass of the journal step           (512M)
#   BENCH_RESTORE_FILES files created before the metadata restore is timed (100000)
#   BENCH_SMALLFILES   small files created per target in the smallfiles step (3000)
#   BENCH_SQLITE_INSERTS autocommit sqlite3 inserts per target (smallfiles)  (500)
#   BENCH_RANDW_FILE   file the smallfiles step writes 4 KiB at random into  (1G)
#   BENCH_RANDW_SECONDS seconds of random 4 KiB writes + fsync per target     (30)
#   BENCH_PERF=1       smallfiles: profile the daemon during more creates
#                      (perf record -g, perf trace -s) into target/bench-logs/
#   BENCH_BASELINE_BIN another minigcs binary (e.g. the previous release) run
#                      through the concurrency and journal steps too, for
#                      before/after figures from the same run
#   BENCH_ONLY         comma-separated steps to run (main = bench+fio+API, rss,
#                      recovery, concurrency, journal, restore, smallfiles);
#                      default: all
#   BENCH_CODEC=1      also run `cargo bench --bench codec` for 4+2 (minutes)
#   BENCH_SKIP_BUILD=1 use the existing release binary
#   BENCH_KEEP_WORK=1  keep target/bench-work (unmounted) for inspection
# (target/ is cargo's target directory: CARGO_TARGET_DIR when set)
# Quick run:
#   BENCH_BIG=128M BENCH_SMALL_COUNT=500 BENCH_FIO=128M BENCH_RSS_SIZE=256M \
#   BENCH_RECOVERY=128M scripts/bench.sh
#
# Output: a table on stdout, the same table as markdown in
# target/bench-results.md, raw JSON and daemon logs in target/bench-logs/.
# Needs root (or passwordless sudo for apt-get only) for dropping the page
# cache; without it reads are reported as warm and marked so.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
# shellcheck source=target_dir.sh
. scripts/target_dir.sh
TARGET=$(cargo_target_dir "$REPO")
BIN=$TARGET/release/minigcs
WORK=$TARGET/bench-work
LOGS=$TARGET/bench-logs
RESULTS_MD=$TARGET/bench-results.md

log()  { echo "== $(date +%T) $*" >&2; }
warn() { echo "!! $*" >&2; PROBLEMS+=("$*"); }
die()  { echo "bench.sh: $*" >&2; exit 1; }
PROBLEMS=()

# ---- sizes -----------------------------------------------------------------

to_bytes() { # 128M, 1G, 1GiB, 4096 -> bytes
    local v=${1%iB} v2
    v=${v%B}
    case $v in
        *[kK]) v2=$(( ${v%?} * 1024 )) ;;
        *M) v2=$(( ${v%?} * 1024 * 1024 )) ;;
        *G) v2=$(( ${v%?} * 1024 * 1024 * 1024 )) ;;
        *T) v2=$(( ${v%?} * 1024 * 1024 * 1024 * 1024 )) ;;
        *[0-9]) v2=$(( v )) ;;
        *) die "cannot parse size '$1'" ;;
    esac
    echo "$v2"
}
human() { # bytes -> "1 GiB" / "128 MiB" / "4 KiB"
    awk -v b="$1" 'BEGIN {
        split("B KiB MiB GiB TiB", u, " "); i = 1
        while (b >= 1024 && i < 5) { b /= 1024; i++ }
        if (b == int(b)) printf "%d %s", b, u[i]; else printf "%.1f %s", b, u[i] }'
}

BIG=$(to_bytes "${BENCH_BIG:-1G}")
SMALL_COUNT=${BENCH_SMALL_COUNT:-5000}
SMALL_SIZE=$(to_bytes "${BENCH_SMALL_SIZE:-4K}")
FIO_SIZE=$(to_bytes "${BENCH_FIO:-1G}")
RSS_SIZE=$(to_bytes "${BENCH_RSS_SIZE:-4G}")
RECOVERY_SIZE=$(to_bytes "${BENCH_RECOVERY:-1G}")
API_SMALL=${BENCH_API_SMALL:-1000}
API_BIG=${BENCH_API_BIG:-100}
CONC_SIZE=$(to_bytes "${BENCH_CONC_SIZE:-1G}")
CONC_SECONDS=${BENCH_CONC_SECONDS:-10}
JNL_SMALL=${BENCH_JOURNAL_SMALL:-2000}
JNL_BIG=$(to_bytes "${BENCH_JOURNAL_BIG:-512M}")
RESTORE_FILES=${BENCH_RESTORE_FILES:-100000}
SF_COUNT=${BENCH_SMALLFILES:-3000}
SF_INSERTS=${BENCH_SQLITE_INSERTS:-500}
RANDW_FILE=$(to_bytes "${BENCH_RANDW_FILE:-1G}")
RANDW_SECONDS=${BENCH_RANDW_SECONDS:-30}
BASELINE_BIN=${BENCH_BASELINE_BIN:-}
[ -z "$BASELINE_BIN" ] || [ -x "$BASELINE_BIN" ] || die "BENCH_BASELINE_BIN=$BASELINE_BIN is not an executable"
# step NAME: is this step part of the run (BENCH_ONLY)?
step() { [ -z "${BENCH_ONLY:-}" ] || [[ ",$BENCH_ONLY," == *",$1,"* ]]; }
MiB=1048576
(( BIG >= MiB && FIO_SIZE >= MiB && RSS_SIZE >= MiB && RECOVERY_SIZE >= MiB )) ||
    die "BENCH_BIG, BENCH_FIO, BENCH_RSS_SIZE and BENCH_RECOVERY must be at least 1M"

IS_ROOT=0
[ "$(id -u)" = 0 ] && IS_ROOT=1

# ---- one run at a time ------------------------------------------------------

mkdir -p "$TARGET"
exec 9>"$TARGET/bench.lock"
flock -n 9 || die "another scripts/bench.sh is running (lock $TARGET/bench.lock)"

# ---- packages and build -------------------------------------------------------

need_pkgs=()
command -v bindfs >/dev/null || need_pkgs+=(bindfs)
command -v fio >/dev/null || need_pkgs+=(fio)
command -v jq >/dev/null || need_pkgs+=(jq)
command -v fusermount3 >/dev/null || need_pkgs+=(fuse3)
command -v python3 >/dev/null || need_pkgs+=(python3)
command -v sqlite3 >/dev/null || need_pkgs+=(sqlite3)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    sudo=
    [ "$IS_ROOT" = 1 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y --no-install-recommends "${need_pkgs[@]}" ||
        { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends "${need_pkgs[@]}"; }
fi
[ -c /dev/fuse ] || die "/dev/fuse is missing: the bindfs and minigcs mounts need FUSE"
[ "$IS_ROOT" = 1 ] || warn "not root: the page cache cannot be dropped, so reads are warm"

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release"
    cargo build --release >&2
fi
[ -x "$BIN" ] || die "$BIN not found (cargo build --release)"

# ---- mounts, daemons, cleanup ---------------------------------------------------

is_mounted() { awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/mounts; }
mounts_under() { awk -v w="$1/" 'index($2, w) == 1 { print $2 }' /proc/mounts; }
unmount_one() {
    local m=$1 n=0
    while is_mounted "$m" && (( n < 10 )); do
        if (( n < 3 )); then
            fusermount3 -u "$m" 2>/dev/null || umount "$m" 2>/dev/null || true
        else
            fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
        fi
        is_mounted "$m" && sleep 0.5
        n=$((n + 1))
    done
    ! is_mounted "$m"
}
# pid_alive PID: running and not a zombie. One read of /proc/PID/stat decides,
# so a process reaped meanwhile never counts as alive.
pid_alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ -n "$stat" ] && [ "${stat%% *}" != Z ] && [ "${stat%% *}" != X ]
}

drop_caches() {
    sync
    [ "$IS_ROOT" = 1 ] && echo 3 >/proc/sys/vm/drop_caches
    return 0
}

DAEMON_PID=
DAEMON_DIR=
SAMPLER_PID=
MOUNTS=()

# stop_daemon: SIGTERM, wait up to 60 s (then SIGKILL); checks exit 0 and unmount
stop_daemon() {
    [ -n "$DAEMON_PID" ] || return 0
    local start=$SECONDS rc=0 pid=$DAEMON_PID dir=$DAEMON_DIR
    DAEMON_PID=
    kill -TERM "$pid" 2>/dev/null || true
    while pid_alive "$pid"; do
        if (( SECONDS - start >= 60 )); then
            warn "daemon $(basename "$dir") did not exit within 60 s of SIGTERM; killed"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || rc=$?
    [ "$rc" = 0 ] || warn "daemon $(basename "$dir") exited with code $rc after SIGTERM (expected 0)"
    if is_mounted "$dir/mnt"; then
        warn "$dir/mnt still mounted after the daemon exited"
        unmount_one "$dir/mnt" || true
    fi
    cp "$dir/daemon.log" "$LOGS/daemon-$(basename "$dir").log" 2>/dev/null || true
    grep -E ' (ERROR|WARN) ' "$dir/daemon.log" 2>/dev/null | head -n 20 >"$LOGS/daemon-$(basename "$dir").warnings" || true
}

cleanup() {
    local rc=$? m left
    set +e
    trap - EXIT
    [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null && wait "$SAMPLER_PID" 2>/dev/null
    stop_daemon
    for m in "${MOUNTS[@]}"; do unmount_one "$m"; done
    left=$(mounts_under "$WORK")
    if [ -n "$left" ]; then
        echo "bench.sh: still mounted, leaving $WORK in place: $left" >&2
    elif [ "${BENCH_KEEP_WORK:-0}" = 1 ]; then
        echo "bench.sh: kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    [ "$rc" = 0 ] || echo "bench.sh: FAILED (exit $rc); logs in $LOGS" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pick_port() { python3 "$REPO/scripts/free_port.py"; }

# shellcheck source=config_yaml.sh
source "$REPO/scripts/config_yaml.sh"

# write_config DIR PORT: the shipped 2+1 config (3 nodes, 3 regions, 4 MiB
# chunks), everything inside DIR. recovery.auto is off so that the recovery
# figure is the one `ctl recover` reports.
write_config() {
    local CFG_NODES=3 CFG_K=2 CFG_M=1 CFG_CHUNK=4194304 CFG_PORT=$2
    local CFG_MAX_FILE_SIZE=104857600 CFG_RECOVERY_AUTO=false
    {
        echo "# generated by scripts/bench.sh"
        config_yaml
        echo "replication:"
        echo "  factor: 3"
        echo '  regions: ["us-east-1", "us-west-1", "eu-west-1"]'
        echo "s3:"
        echo "  enabled: true"
        echo "  port: $3"
        echo "  access_key: \"$S3_ACCESS\""
        echo "  secret_key: \"$S3_SECRET\""
    } >"$1/config.yaml"
}

ctlj() { "$BIN" ctl -c "$DAEMON_DIR/config.yaml" --json "$@"; }

S3_ACCESS=bench-access-key
S3_SECRET=bench-secret-key-0123456789

# start_daemon NAME: fresh cluster in $WORK/NAME, mounted at $WORK/NAME/mnt
start_daemon() {
    local dir=$WORK/$1 start=$SECONDS
    [ -z "$DAEMON_PID" ] || die "start_daemon: a daemon is already running"
    mkdir -p "$dir"
    API_PORT=$(pick_port)
    API_URL=http://127.0.0.1:$API_PORT
    S3_PORT=$(pick_port)
    S3_URL=http://127.0.0.1:$S3_PORT
    write_config "$dir" "$API_PORT" "$S3_PORT"
    MOUNTS+=("$dir/mnt")
    DAEMON_DIR=$dir
    (cd "$dir" && exec "$BIN" mount "$dir/mnt" -c "$dir/config.yaml") >>"$dir/daemon.log" 2>&1 &
    DAEMON_PID=$!
    while :; do
        if ! pid_alive "$DAEMON_PID"; then
            tail -n 30 "$dir/daemon.log" >&2
            DAEMON_PID=
            die "minigcs mount exited during start-up"
        fi
        if ctlj ping >/dev/null 2>&1 && curl -s -o /dev/null --max-time 2 "$API_URL/" &&
            is_mounted "$dir/mnt" && timeout 5 ls "$dir/mnt" >/dev/null 2>&1; then
            break
        fi
        if (( SECONDS - start >= 60 )); then
            tail -n 30 "$dir/daemon.log" >&2
            die "minigcs not ready after 60 s"
        fi
        sleep 0.2
    done
    log "minigcs daemon $1 up (pid $DAEMON_PID, api $API_URL)"
}

# fast incompressible byte stream: gen_bytes SEED BYTES
gen_bytes() {
    if command -v openssl >/dev/null; then
        (set +o pipefail
         openssl enc -aes-128-ctr -pass "pass:$1" -nosalt -pbkdf2 </dev/zero 2>/dev/null | head -c "$2")
    else
        head -c "$2" /dev/urandom
    fi
}

now_ms() { date +%s%3N; }

# ---- work dir ----------------------------------------------------------------------

for m in $(mounts_under "$WORK"); do
    log "unmounting leftover $m"
    unmount_one "$m" || die "cannot unmount leftover $m"
done
rm -rf "$WORK"
mkdir -p "$WORK/raw" "$WORK/bindfs-src" "$WORK/bindfs" "$LOGS"
# One binary for the whole run, even if target/release is rebuilt meanwhile.
cp "$BIN" "$WORK/minigcs"
BIN=$WORK/minigcs
rm -f "$LOGS"/*.json "$LOGS"/*.log "$LOGS"/*.warnings
RAW=$WORK/raw
BINDFS=$WORK/bindfs
MOUNTS+=("$BINDFS")
bindfs "$WORK/bindfs-src" "$BINDFS" 2>"$LOGS/bindfs.log" || die "bindfs failed: $(cat "$LOGS/bindfs.log")"
is_mounted "$BINDFS" || die "bindfs did not mount $BINDFS"
BINDFS_VERSION=$(bindfs --version 2>&1 | sed -n 1p)

T0=$SECONDS
log "sizes: big $(human "$BIG"), small $SMALL_COUNT × $(human "$SMALL_SIZE"), fio $(human "$FIO_SIZE"), rss $(human "$RSS_SIZE"), recovery $(human "$RECOVERY_SIZE")"

# ---- 1. minigcs bench and fio on all three ---------------------------------------------

if step main; then
start_daemon main
MGCS=$DAEMON_DIR/mnt

bench_args=(--big-size "$BIG" --small-count "$SMALL_COUNT" --small-size "$SMALL_SIZE" --json)
[ "$IS_ROOT" = 1 ] || bench_args+=(--no-drop-caches)
for t in raw bindfs minigcs; do
    case $t in raw) d=$RAW ;; bindfs) d=$BINDFS ;; minigcs) d=$MGCS ;; esac
    log "minigcs bench on $t"
    s=$SECONDS
    "$BIN" bench "$d" "${bench_args[@]}" >"$LOGS/bench-$t.json" ||
        die "minigcs bench on $t failed"
    log "  done in $((SECONDS - s)) s"
done

fio_run() { # fio_run TARGET DIR
    local f=$2/fio.dat common
    common=(--filename="$f" --bs=1M --size="$FIO_SIZE" --ioengine=psync --numjobs=1 --output-format=json)
    log "fio sequential write+read on $1"
    rm -f "$f"
    fio --name="write-$1" --rw=write --end_fsync=1 "${common[@]}" >"$LOGS/fio-write-$1.json" ||
        die "fio write on $1 failed"
    drop_caches
    fio --name="read-$1" --rw=read "${common[@]}" >"$LOGS/fio-read-$1.json" ||
        die "fio read on $1 failed"
    rm -f "$f"
}
fio_run raw "$RAW"
fio_run bindfs "$BINDFS"
fio_run minigcs "$MGCS"

# ---- 2. HTTP API ---------------------------------------------------------------------------

log "HTTP API: $API_SMALL × 1–10 KiB and $API_BIG × 1–4 MiB, one keep-alive client"
api_args=(--url "$API_URL" --small-count "$API_SMALL" --big-count "$API_BIG")
[ "$IS_ROOT" = 1 ] && api_args+=(--drop-caches)
python3 "$REPO/scripts/bench_api.py" "${api_args[@]}" >"$LOGS/api.json" || die "API benchmark failed"

log "S3 API: the same objects through boto3 (default settings)"
S3_VENV=$TARGET/s3-venv
if ! "$S3_VENV/bin/python" -c 'import boto3' 2>/dev/null; then
    python3 -m venv "$S3_VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
    "$S3_VENV/bin/pip" install -q --disable-pip-version-check boto3 awscli >"$LOGS/pip.log" 2>&1 ||
        die "pip install boto3 failed (see $LOGS/pip.log)"
fi
s3_args=(--url "$S3_URL" --access-key "$S3_ACCESS" --secret-key "$S3_SECRET"
    --small-count "$API_SMALL" --big-count "$API_BIG")
[ "$IS_ROOT" = 1 ] && s3_args+=(--drop-caches)
"$S3_VENV/bin/python" "$REPO/scripts/bench_s3.py" "${s3_args[@]}" >"$LOGS/s3.json" || die "S3 benchmark failed"
MAIN_HWM_KB=$(awk '/^VmHWM/ { print $2 }' "/proc/$DAEMON_PID/status")
# The RSS step runs last on this same daemon: memory must stay bounded
# whatever ran before, not only on a fresh start.
if ! step rss; then
    stop_daemon
    rm -rf "$WORK/main"
fi
fi

# ---- 3. daemon peak RSS while writing one big file ----------------------------------------------

if step rss; then
if [ -n "$DAEMON_PID" ]; then
    RSS_DAEMON="the daemon that ran bench, fio, the HTTP and S3 APIs"
    RSS_WORK=$WORK/main
else
    start_daemon rss
    RSS_DAEMON="a fresh daemon"
    RSS_WORK=$WORK/rss
fi
log "peak RSS: dd $(human "$RSS_SIZE") (bs=1M, conv=fsync) into the mount of $RSS_DAEMON, then read it back"
( pid=$DAEMON_PID
  while [ -r "/proc/$pid/status" ]; do
      awk '/^VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null
      sleep 0.2
  done ) >"$WORK/rss-samples" &
SAMPLER_PID=$!
s=$(now_ms)
gen_bytes rss "$RSS_SIZE" | dd of="$DAEMON_DIR/mnt/big.bin" bs=1M iflag=fullblock conv=fsync status=none ||
    die "dd into the mount failed"
RSS_DD_MS=$(( $(now_ms) - s ))
drop_caches
cat "$DAEMON_DIR/mnt/big.bin" >/dev/null || die "reading the RSS file back failed"
RSS_HWM_KB=$(awk '/^VmHWM/ { print $2 }' "/proc/$DAEMON_PID/status")
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=
RSS_SAMPLED_KB=$(sort -n "$WORK/rss-samples" | tail -n1)
RSS_SIZE_ON_MOUNT=$(stat -c %s "$DAEMON_DIR/mnt/big.bin")
[ "$RSS_SIZE_ON_MOUNT" = "$RSS_SIZE" ] || warn "RSS step: file on the mount has $RSS_SIZE_ON_MOUNT bytes, wrote $RSS_SIZE"
stop_daemon
rm -rf "$RSS_WORK"
fi

# ---- 4. recovery of one node ------------------------------------------------------------------

if step recovery; then
start_daemon rec
NFILES=8
per=$(( RECOVERY_SIZE / NFILES / MiB * MiB ))
(( per >= MiB )) || { NFILES=1; per=$RECOVERY_SIZE; }
log "recovery: writing $NFILES × $(human "$per") into the mount"
mkdir -p "$DAEMON_DIR/mnt/rec"
for ((i = 0; i < NFILES; i++)); do
    gen_bytes "rec$i" "$per" | dd of="$DAEMON_DIR/mnt/rec/f$i" bs=1M iflag=fullblock conv=fsync status=none ||
        die "writing recovery data failed"
done
(cd "$DAEMON_DIR/mnt/rec" && sha256sum f*) >"$WORK/rec.sha256"
ctlj stats >"$LOGS/rec-stats-before.json" || true

log "recovery: rm -rf node-2, waiting for ctl health to report it failed"
rm -rf "$DAEMON_DIR/node-2"
s=$(now_ms)
detected=0
while (( $(now_ms) - s < 120000 )); do
    # ctl health exits 1 while degraded: only its output decides here.
    if { ctlj health 2>/dev/null || true; } | jq -e '(.failed_nodes // []) | index("node-2") != null' >/dev/null; then
        detected=1
        break
    fi
    sleep 0.2
done
DETECT_MS=$(( $(now_ms) - s ))
[ "$detected" = 1 ] || die "node-2 not reported failed within 120 s of rm -rf"
ctlj health >"$LOGS/rec-health-failed.json" || true

log "recovery: ctl recover node-2"
s=$(now_ms)
ctlj recover node-2 >"$LOGS/recover.json" 2>"$LOGS/recover.stderr" || die "ctl recover failed: $(tail -n5 "$LOGS/recover.stderr")"
RECOVER_WALL_MS=$(( $(now_ms) - s ))
REC_BYTES=$(jq -r '.bytes_rebuilt // 0' "$LOGS/recover.json")
REC_MTTR_MS=$(jq -r '.mttr_ms // empty | round' "$LOGS/recover.json")
REC_DONE_MS=$(jq -r '.start_to_done_ms // empty | round' "$LOGS/recover.json")
REC_D2S_MS=$(jq -r '.detect_to_start_ms // empty | round' "$LOGS/recover.json")
REC_SHARDS=$(jq -r '.shards_rebuilt // empty' "$LOGS/recover.json")
if [ -z "$REC_DONE_MS" ] || [ "$REC_DONE_MS" = 0 ]; then
    warn "ctl recover --json has no start_to_done_ms; the rebuild rate uses the ctl command's wall time"
    REC_DONE_MS=$RECOVER_WALL_MS
fi
(( REC_BYTES > 0 )) || warn "ctl recover reported bytes_rebuilt=0"

# The same number of bytes read raw from the disk: the surviving nodes' shard
# files (the bytes recovery reads), page cache dropped first.
find "$DAEMON_DIR/node-1" "$DAEMON_DIR/node-3" -name '*.shard' -printf '%s %p\n' |
    awk -v want="$REC_BYTES" 'sum < want { sum += $1; print substr($0, index($0, " ") + 1) }' >"$WORK/raw-read-list"
RAW_READ_BYTES=$(xargs -d '\n' -r stat -c %s <"$WORK/raw-read-list" | awk '{ s += $1 } END { print s + 0 }')
drop_caches
s=$(now_ms)
xargs -d '\n' -r cat <"$WORK/raw-read-list" >/dev/null
RAW_READ_MS=$(( $(now_ms) - s ))
(( RAW_READ_MS > 0 )) || RAW_READ_MS=1

log "recovery: checking health, scrub and file contents"
s=$(now_ms)
healthy=0
while (( $(now_ms) - s < 60000 )); do
    if ctlj health 2>/dev/null | jq -e '.status == "healthy"' >/dev/null; then healthy=1; break; fi
    sleep 0.5
done
ctlj health >"$LOGS/rec-health-after.json" 2>/dev/null || true
[ "$healthy" = 1 ] || warn "after recovery, ctl health is not healthy: $(jq -c '{status, failed_nodes, chunks_missing_shards, repair_queue}' "$LOGS/rec-health-after.json" 2>/dev/null)"
if ctlj scrub >"$LOGS/rec-scrub.json" 2>"$LOGS/rec-scrub.stderr"; then
    bad=$(jq -r '(.corrupt // 0) + (.missing // 0)' "$LOGS/rec-scrub.json")
    [ "$bad" = 0 ] || warn "scrub after recovery: $(jq -c '{shards_checked, corrupt, missing}' "$LOGS/rec-scrub.json")"
    want_chunks=$(( NFILES * ((per + 4194303) / 4194304) ))
    got_chunks=$(jq -r '.chunks_checked // empty' "$LOGS/rec-scrub.json")
    [ -z "$got_chunks" ] || [ "$got_chunks" -ge "$want_chunks" ] ||
        warn "scrub after recovery checked $got_chunks chunks, the recovery data has $want_chunks: $(jq -c '{chunks_checked, shards_checked, bytes_checked}' "$LOGS/rec-scrub.json")"
else
    warn "ctl scrub after recovery failed: $(tail -n3 "$LOGS/rec-scrub.stderr")"
fi
drop_caches
if ! (cd "$DAEMON_DIR/mnt/rec" && sha256sum --quiet -c "$WORK/rec.sha256") >"$LOGS/rec-verify.txt" 2>&1; then
    warn "files read back after recovery differ: $(head -n3 "$LOGS/rec-verify.txt")"
fi
stop_daemon
rm -rf "$WORK/rec"
fi

# ---- 5. concurrency: readers of one open file, stat during commits ----------------------------------

# concurrency_step LABEL BINARY: two CONC_SIZE files written and fsynced, then
# scripts/bench_concurrency.py (one reader vs four readers of one open file,
# statx latency alone and while another thread closes 4 MiB files).
concurrency_step() {
    local saved=$BIN
    BIN=$2
    start_daemon "conc-$1"
    mkdir -p "$DAEMON_DIR/mnt/conc"
    log "concurrency ($1): writing 2 × $(human "$CONC_SIZE")"
    gen_bytes conc-a "$CONC_SIZE" | dd of="$DAEMON_DIR/mnt/conc/a.bin" bs=1M iflag=fullblock conv=fsync status=none ||
        die "writing the concurrency files failed"
    gen_bytes conc-b "$CONC_SIZE" | dd of="$DAEMON_DIR/mnt/conc/b.bin" bs=1M iflag=fullblock conv=fsync status=none ||
        die "writing the concurrency files failed"
    log "concurrency ($1): readers, then stat for 2 × $CONC_SECONDS s"
    local args=(--dir "$DAEMON_DIR/mnt/conc" --file-a "$DAEMON_DIR/mnt/conc/a.bin"
        --file-b "$DAEMON_DIR/mnt/conc/b.bin" --readers 4 --seconds "$CONC_SECONDS")
    [ "$IS_ROOT" = 1 ] && args+=(--drop-caches --node-dirs "$DAEMON_DIR"/node-*)
    python3 "$REPO/scripts/bench_concurrency.py" "${args[@]}" >"$LOGS/concurrency-$1.json" ||
        die "concurrency benchmark ($1) failed"
    stop_daemon
    rm -rf "$WORK/conc-$1"
    BIN=$saved
}
CONC_LABELS=()
if step concurrency; then
    concurrency_step current "$BIN"
    CONC_LABELS+=(current)
    if [ -n "$BASELINE_BIN" ]; then
        cp "$BASELINE_BIN" "$WORK/minigcs-baseline"
        concurrency_step baseline "$WORK/minigcs-baseline"
        CONC_LABELS+=(baseline)
    fi
fi

# ---- 6. metadata journal: what it costs, and restore time -------------------------------------------

# journal_pass LABEL BINARY ROUND: `minigcs bench` (small files create+close,
# big write + fsync) on a fresh daemon of BINARY.
journal_pass() {
    local saved=$BIN
    BIN=$2
    start_daemon "jnl-$1-$3"
    log "journal ($1, round $3): $JNL_SMALL small files, $(human "$JNL_BIG") big write"
    "$BIN" bench "$DAEMON_DIR/mnt" --big-size "$JNL_BIG" --small-count "$JNL_SMALL" --small-size 4096 \
        --json --no-drop-caches >"$LOGS/journal-$1-$3.json" || die "minigcs bench ($1) failed"
    stop_daemon
    rm -rf "$WORK/jnl-$1-$3"
    BIN=$saved
}
JNL_LABELS=()
if step journal; then
    if [ -z "$BASELINE_BIN" ]; then
        warn "journal step: no BENCH_BASELINE_BIN (a build from before the journal), so no before/after figures"
        journal_pass current "$BIN" 1
        JNL_LABELS=(current)
    else
        cp "$BASELINE_BIN" "$WORK/minigcs-baseline"
        # Interleaved rounds; each figure is the better of two.
        for round in 1 2; do
            journal_pass current "$BIN" "$round"
            journal_pass baseline "$WORK/minigcs-baseline" "$round"
        done
        JNL_LABELS=(current baseline)
    fi
fi

# timed_start NAME: start the daemon of $WORK/NAME again (after the database
# was deleted); STARTED_MS = milliseconds until the mount answers
timed_start() {
    local t0
    t0=$(now_ms)
    start_daemon "$1"
    STARTED_MS=$(($(now_ms) - t0))
}
if step restore; then
    start_daemon restore
    log "restore: creating $RESTORE_FILES empty files in folders of 1000"
    python3 - "$DAEMON_DIR/mnt/r" "$RESTORE_FILES" <<'PY' || die "creating the restore files failed"
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(d)
    os.close(os.open(os.path.join(d, "f%06d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
PY
    RESTORE_RECORDS=$(ctlj health | jq .metadata_journal.last_lsn)
    stop_daemon
    rm -f "$DAEMON_DIR"/metadata.db "$DAEMON_DIR"/metadata.db-wal "$DAEMON_DIR"/metadata.db-shm
    timed_start restore
    RESTORE_JOURNAL_MS=$STARTED_MS
    n=$(find "$DAEMON_DIR/mnt/r" -type f | wc -l)
    [ "$n" = "$RESTORE_FILES" ] || warn "restore from the journal brought back $n of $RESTORE_FILES files"
    ctlj snapshot >/dev/null || warn "ctl snapshot failed"
    stop_daemon
    rm -f "$DAEMON_DIR"/metadata.db "$DAEMON_DIR"/metadata.db-wal "$DAEMON_DIR"/metadata.db-shm
    timed_start restore
    RESTORE_SNAPSHOT_MS=$STARTED_MS
    n=$(find "$DAEMON_DIR/mnt/r" -type f | wc -l)
    [ "$n" = "$RESTORE_FILES" ] || warn "restore from the snapshot brought back $n of $RESTORE_FILES files"
    stop_daemon
    rm -rf "$WORK/restore"
fi

# ---- 7. small files and fsync-heavy work ------------------------------------------------------------

# written_now: what this daemon stored on all its nodes so far (`ctl stats`),
# "all shard journal copy" bytes and the store operations behind them
written_now() {
    ctlj stats | jq -r '[.node_stats[]] | [map(.bytes_written), map(.shard_bytes_written),
        map(.journal_bytes_written), map(.copy_bytes_written), map(.write_ops)] | map(add) | join(" ")'
}
# written_delta BEFORE AFTER: the figures of written_now, after − before
written_delta() { awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x, " "); split(b, y, " ")
    for (i = 1; i <= n; i++) printf "%s%.0f", (i > 1 ? " " : ""), y[i] - x[i] }'; }

# sf_create DIR: create, write 4 KiB, close, SF_COUNT times; prints files/s
sf_create() {
    python3 - "$1" "$SF_COUNT" 4096 <<'PY'
import os, sys, time
root, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(root)
data = os.urandom(size)
start = time.perf_counter()
for i in range(n):
    fd = os.open(os.path.join(root, "f%06d" % i), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.write(fd, data)
    os.close(fd)
print("%.3f" % (n / (time.perf_counter() - start)))
PY
}

# sf_profile: the create loop again (a third of SF_COUNT files) under
# `perf record -g` of the daemon, then under `perf trace -s`; summaries in
# smallfiles-perf-*.txt (BENCH_PERF=1; the figures are taken before, unprofiled)
sf_profile() {
    local n=$(( SF_COUNT / 3 )) pp data=$WORK/smallfiles-perf.data
    command -v perf >/dev/null || { warn "BENCH_PERF=1 but perf is not installed (apt-get install linux-perf)"; return 0; }
    log "smallfiles: profiling the daemon during $n more creates (perf record -g, then perf trace -s)"
    perf record -g -F 999 -p "$DAEMON_PID" -o "$data" 2>"$LOGS/smallfiles-perf-record.log" &
    pp=$!
    sleep 0.5
    SF_COUNT=$n sf_create "$MGCS/sf-perf" >"$LOGS/smallfiles-perf-rate.txt"
    kill -INT "$pp" 2>/dev/null; wait "$pp" 2>/dev/null || true
    { echo "# on-CPU time of the daemon by thread, then by symbol (self), then by symbol (with callees)"
      perf report -i "$data" --no-children --sort comm --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 20
      perf report -i "$data" --no-children --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 40
      perf report -i "$data" --children --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 60
    } >"$LOGS/smallfiles-perf-cpu.txt" || true
    rm -f "$data"
    perf trace -s -p "$DAEMON_PID" -o "$LOGS/smallfiles-perf-syscalls.txt" 2>/dev/null &
    pp=$!
    sleep 0.5
    SF_COUNT=$n sf_create "$MGCS/sf-trace" >>"$LOGS/smallfiles-perf-rate.txt"
    kill -INT "$pp" 2>/dev/null; wait "$pp" 2>/dev/null || true
}

# sf_sqlite DIR: SF_INSERTS autocommit inserts by the sqlite3 shell into a WAL
# database with synchronous=FULL in DIR; prints inserts/s
sf_sqlite() {
    local db=$1/bench.db sql=$WORK/sqlite-inserts.sql s ms n
    mkdir -p "$1"
    sqlite3 "$db" 'PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);' >/dev/null ||
        die "sqlite3 could not create $db"
    { echo "PRAGMA synchronous=FULL;"
      for ((n = 0; n < SF_INSERTS; n++)); do echo "INSERT INTO t(v) VALUES('row $n of the smallfiles step');"; done
    } >"$sql"
    s=$(now_ms)
    sqlite3 "$db" <"$sql" >/dev/null || die "sqlite3 inserts into $db failed"
    ms=$(( $(now_ms) - s ))
    awk -v n="$SF_INSERTS" -v ms="$ms" 'BEGIN { printf "%.3f", n / ((ms > 0 ? ms : 1) / 1000) }'
}

# sf_sqlite_check DIR: the database of sf_sqlite DIR holds every row
sf_sqlite_check() {
    local n
    n=$(sqlite3 "$1/bench.db" 'SELECT count(*) FROM t')
    [ "$n" = "$SF_INSERTS" ] || warn "sqlite3 in $1: $n rows after $SF_INSERTS inserts"
}

# sf_randw TARGET FILE: random 4 KiB writes, each followed by fsync, into
# FILE (laid out already) for RANDW_SECONDS s at most (64 MiB at most); the
# fio JSON goes to randw-TARGET.json
sf_randw() {
    fio --name="randw-$1" --filename="$2" --rw=randwrite --bs=4k --fsync=1 --size="$RANDW_FILE" \
        --io_size=64M --runtime="$RANDW_SECONDS" --ioengine=psync --numjobs=1 --randrepeat=0 \
        --output-format=json >"$LOGS/randw-$1.json" || die "fio random writes on $1 failed"
}

if step smallfiles; then
    start_daemon small
    MGCS=$DAEMON_DIR/mnt
    log "smallfiles: create+write+close 4 KiB × $SF_COUNT on raw, bindfs, minigcs"
    SF_RAW=$(sf_create "$RAW/sf")
    SF_BINDFS=$(sf_create "$BINDFS/sf")
    before=$(written_now)
    SF_MGCS=$(sf_create "$MGCS/sf")
    SF_WRITTEN=$(written_delta "$before" "$(written_now)")
    rm -rf "$RAW/sf" "$BINDFS/sf"
    if [ "${BENCH_PERF:-0}" = 1 ]; then
        sf_profile
    fi

    log "smallfiles: sqlite3 $SF_INSERTS autocommit inserts (WAL, synchronous=FULL) on raw, minigcs"
    SQ_RAW=$(sf_sqlite "$RAW/sq")
    before=$(written_now)
    SQ_MGCS=$(sf_sqlite "$MGCS/sq")
    SQ_WRITTEN=$(written_delta "$before" "$(written_now)")
    sf_sqlite_check "$RAW/sq"
    sf_sqlite_check "$MGCS/sq"
    rm -rf "$RAW/sq"

    log "smallfiles: random 4 KiB writes + fsync into a $(human "$RANDW_FILE") file for ≤ $RANDW_SECONDS s on raw, minigcs"
    for t in raw minigcs; do
        case $t in raw) d=$RAW ;; minigcs) d=$MGCS ;; esac
        gen_bytes "randw" "$RANDW_FILE" | dd of="$d/randw.dat" bs=1M iflag=fullblock conv=fsync status=none ||
            die "laying out the random-write file on $t failed"
        [ "$t" = raw ] || before=$(written_now)
        sf_randw "$t" "$d/randw.dat"
    done
    RW_WRITTEN=$(written_delta "$before" "$(written_now)")
    rm -f "$RAW/randw.dat"
    ctlj stats >"$LOGS/smallfiles-stats.json" || true
    stop_daemon
    rm -rf "$WORK/small"
fi

# ---- 8. codec (optional) -------------------------------------------------------------------------

CODEC_SIZES=()
if [ "${BENCH_CODEC:-0}" = 1 ]; then
    log "cargo bench --bench codec (4+2 encode and memcpy)"
    cargo bench --bench codec -- 'rs_4\+2/(encode|memcpy)' >"$LOGS/codec.txt" 2>&1 ||
        die "cargo bench --bench codec failed (see $LOGS/codec.txt)"
    CODEC_SIZES=(64KiB 256KiB 1MiB)
fi
# codec_gibs WHAT SIZE -> GiB/s over the k = 4 data shards, from criterion's
# estimate (the slope when it has one, as criterion prints, else the mean)
codec_gibs() {
    local f bytes
    f=$(find "$TARGET/criterion" -path "*4+2/$1/$2/new/estimates.json" 2>/dev/null | sed -n 1p)
    [ -n "$f" ] || return 0
    case $2 in *KiB) bytes=$(( ${2%KiB} * 1024 )) ;; *MiB) bytes=$(( ${2%MiB} * 1048576 )) ;; esac
    jq -r --argjson b "$(( 4 * bytes ))" '$b / ((.slope.point_estimate // .mean.point_estimate) / 1e9) / 1073741824' "$f"
}

# ---- table -------------------------------------------------------------------------------------------

bv() { jq -r --arg n "$2" '[.[] | select(.name | startswith($n)) | .value][0] // empty' "$LOGS/bench-$1.json"; }
fio_mibs() { jq -r ".jobs[0].$2.bw_bytes / 1048576" "$LOGS/fio-$2-$1.json"; }
api() { jq -r "$1" "$LOGS/api.json"; }
s3v() { jq -r "$1" "$LOGS/s3.json"; }

f1() { awk -v x="$1" 'BEGIN { if (x == "") print "—"; else if (x >= 100) printf "%.0f", x; else printf "%.1f", x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print ""; else if (a / b < 0.095) printf "%.3f", a / b; else printf "%.2f", a / b }'; }
rfmt() { [ -n "$1" ] && echo "$1×" || echo "—"; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && a + 0 >= b + 0) }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && a + 0 <= b + 0) }'; }
ge2() { ge "$1" "$2" && ge "$3" "$4"; }
yn() { if "$@"; then echo yes; else echo no; fi; }

ROWS=()
row() { ROWS+=("$(printf '%s\t' "$@")"); }   # figure mgcs raw bindfs r_raw r_bindfs target met

add_rate_row() { # FIGURE MGCS RAW BINDFS KIND(write|read|small|none)
    local rr rb met target
    rr=$(ratio "$2" "$3")
    rb=$(ratio "$2" "$4")
    case $5 in
        write) target="≥ 0.5× raw and ≥ 2× bindfs"; met=$(yn ge2 "$rr" 0.5 "$rb" 2) ;;
        read)  target="≥ 0.8× raw"; met=$(yn ge "$rr" 0.8) ;;
        small) target="≥ 0.5× bindfs"; met=$(yn ge "$rb" 0.5) ;;
        *)     target="—"; met="—" ;;
    esac
    row "$1" "$(f1 "$2")" "$(f1 "$3")" "$(f1 "$4")" "$(rfmt "$rr")" "$(rfmt "$rb")" "$target" "$met"
}

cold=" (cold)"
[ "$IS_ROOT" = 1 ] || cold=" (warm: not root)"
if step main; then
add_rate_row "bench: big write $(human "$BIG") +fsync, MiB/s" \
    "$(bv minigcs 'big write')" "$(bv raw 'big write')" "$(bv bindfs 'big write')" write
add_rate_row "bench: big read $(human "$BIG")$cold, MiB/s" \
    "$(bv minigcs 'big read')" "$(bv raw 'big read')" "$(bv bindfs 'big read')" read
add_rate_row "fio: seq write 1 MiB × $(human "$FIO_SIZE"), end_fsync, MiB/s" \
    "$(fio_mibs minigcs write)" "$(fio_mibs raw write)" "$(fio_mibs bindfs write)" write
add_rate_row "fio: seq read 1 MiB × $(human "$FIO_SIZE")$cold, MiB/s" \
    "$(fio_mibs minigcs read)" "$(fio_mibs raw read)" "$(fio_mibs bindfs read)" read
add_rate_row "bench: small create+write+close $(human "$SMALL_SIZE") × $SMALL_COUNT, files/s" \
    "$(bv minigcs 'small write')" "$(bv raw 'small write')" "$(bv bindfs 'small write')" small
add_rate_row "bench: small read$cold, files/s" \
    "$(bv minigcs 'small read')" "$(bv raw 'small read')" "$(bv bindfs 'small read')" small
add_rate_row "bench: stat, ops/s" "$(bv minigcs stat)" "$(bv raw stat)" "$(bv bindfs stat)" small
add_rate_row "bench: readdir, entries/s" "$(bv minigcs readdir)" "$(bv raw readdir)" "$(bv bindfs readdir)" none
add_rate_row "bench: unlink, ops/s" "$(bv minigcs unlink)" "$(bv raw unlink)" "$(bv bindfs unlink)" none
fi

if step rss; then

RSS_MIB=$(awk -v k="$RSS_HWM_KB" 'BEGIN { printf "%.0f", k / 1024 }')
row "daemon peak RSS (VmHWM of $RSS_DAEMON) after writing $(human "$RSS_SIZE") with dd and reading it back, MiB" \
    "$RSS_MIB" "—" "—" "—" "—" "≤ 256 MiB" "$(yn le "$RSS_MIB" 256)"
fi

if step main; then
RAW_W=$(fio_mibs raw write)
RAW_R=$(fio_mibs raw read)
for cls in small big; do
    for dir in upload download; do
        ops=$(api ".$cls.$dir.ops_per_s")
        mibs=$(api ".$cls.$dir.mib_per_s")
        lat=$(api "\"p50 \" + (.$cls.$dir.p50_ms * 100 | round / 100 | tostring) + \" / p99 \" + (.$cls.$dir.p99_ms * 100 | round / 100 | tostring) + \" ms\"")
        if [ "$cls" = small ]; then
            n=$API_SMALL
            if [ "$dir" = upload ]; then want=1000; else want=2000; fi
            row "API: $n × 1–10 KiB ${dir}s, ops/s ($lat)" "$(f1 "$ops")" "—" "—" "—" "—" \
                "≥ $want ops/s" "$(yn ge "$ops" "$want")"
        else
            n=$API_BIG
            if [ "$dir" = upload ]; then rawv=$RAW_W; else rawv=$RAW_R; fi
            rr=$(ratio "$mibs" "$rawv")
            row "API: $n × 1–4 MiB ${dir}s, MiB/s ($(f1 "$ops") ops/s, $lat)" "$(f1 "$mibs")" "$(f1 "$rawv")" "—" \
                "$(rfmt "$rr")" "—" "≥ 0.3× raw (fio)" "$(yn ge "$rr" 0.3)"
        fi
    done
done
# The same objects through the S3 API; raw = the HTTP API's figure above.
for cls in small big; do
    for dir in upload download; do
        lat=$(s3v "\"p50 \" + (.$cls.$dir.p50_ms * 100 | round / 100 | tostring) + \" / p99 \" + (.$cls.$dir.p99_ms * 100 | round / 100 | tostring) + \" ms\"")
        if [ "$cls" = small ]; then
            s3_fig=$(s3v ".$cls.$dir.ops_per_s") api_fig=$(api ".$cls.$dir.ops_per_s")
            what="S3 (boto3): $API_SMALL × 1–10 KiB ${dir}s, ops/s ($lat; raw = HTTP API)"
        else
            s3_fig=$(s3v ".$cls.$dir.mib_per_s") api_fig=$(api ".$cls.$dir.mib_per_s")
            what="S3 (boto3): $API_BIG × 1–4 MiB ${dir}s, MiB/s ($lat; raw = HTTP API)"
        fi
        row "$what" "$(f1 "$s3_fig")" "$(f1 "$api_fig")" "—" "$(rfmt "$(ratio "$s3_fig" "$api_fig")")" "—" \
            "recorded (no target)" "—"
    done
done
fi

if step recovery; then
REC_MIBS=$(awk -v b="$REC_BYTES" -v ms="$REC_DONE_MS" 'BEGIN { if (ms > 0) printf "%.2f", b / 1048576 / (ms / 1000) }')
RAWREAD_MIBS=$(awk -v b="$RAW_READ_BYTES" -v ms="$RAW_READ_MS" 'BEGIN { printf "%.2f", b / 1048576 / (ms / 1000) }')
rr=$(ratio "$REC_MIBS" "$RAWREAD_MIBS")
row "recovery: rebuild rate of node-2 ($(human "$REC_BYTES") rebuilt, start→done ${REC_DONE_MS} ms), MiB/s" \
    "$(f1 "$REC_MIBS")" "$(f1 "$RAWREAD_MIBS")" "—" "$(rfmt "$rr")" "—" "≥ 0.5× raw read of the same bytes" "$(yn ge "$rr" 0.5)"
row "recovery: MTTR for $(human "$REC_BYTES") of lost shards (detect→done), ms" \
    "${REC_MTTR_MS:-—}" "—" "—" "—" "—" "recorded (no target)" "—"
fi

# Concurrency rows: the minigcs column is this build; "raw" holds the same-run
# reference (one reader, or stat with no writer); the baseline binary, when
# given, gets rows of its own.
conc() { jq -r "$2 // empty" "$LOGS/concurrency-$1.json"; }
for label in "${CONC_LABELS[@]}"; do
    tag=""
    [ "$label" = current ] || tag=" [$label binary]"
    one=$(conc "$label" .one_reader.mib_per_s)
    many=$(conc "$label" .many_readers.mib_per_s)
    rr=$(ratio "$many" "$one")
    disk=$(conc "$label" .disk_parallel_read.mib_per_s)
    if [ -n "$disk" ]; then
        # Cold, four readers can go no faster than the disk reads the data
        # shards (k of every k+m bytes it holds).
        row "concurrency: 4 readers of one open $(human "$CONC_SIZE") file$cold, aggregate MiB/s (raw = 1 reader; disk reads shards in parallel at $(f1 "$disk") MiB/s)$tag" \
            "$(f1 "$many")" "$(f1 "$one")" "—" "$(rfmt "$rr")" "—" "recorded: bound by the disk" "—"
        wone=$(conc "$label" .warm_nodes.one_reader.mib_per_s)
        wmany=$(conc "$label" .warm_nodes.many_readers.mib_per_s)
        rr=$(ratio "$wmany" "$wone")
        row "concurrency: 4 readers of one open $(human "$CONC_SIZE") file, node folders warm (no disk wait), aggregate MiB/s (raw = 1 reader)$tag" \
            "$(f1 "$wmany")" "$(f1 "$wone")" "—" "$(rfmt "$rr")" "—" "≥ 1.5× one reader" "$(yn ge "$rr" 1.5)"
    else
        row "concurrency: 4 readers of one open $(human "$CONC_SIZE") file$cold, aggregate MiB/s (raw = 1 reader)$tag" \
            "$(f1 "$many")" "$(f1 "$one")" "—" "$(rfmt "$rr")" "—" "≥ 1.5× one reader" "$(yn ge "$rr" 1.5)"
    fi
    alone=$(conc "$label" .stat_alone.p99_ms)
    busy=$(conc "$label" .stat_during_commits.p99_ms)
    closes=$(conc "$label" .writer.files_closed)
    close_p50=$(conc "$label" .writer.close.p50_ms)
    rr=$(ratio "$busy" "$alone")
    row "concurrency: stat p99 while $closes × 4 MiB files close (close p50 $close_p50 ms), ms (raw = no writer)$tag" \
        "$busy" "$alone" "—" "$(rfmt "$rr")" "—" "below the close p50 (no wait for commits)" \
        "$(yn awk -v a="$busy" -v b="$close_p50" 'BEGIN { exit !(a != "" && b != "" && a + 0 < b + 0) }')"
done

# Journal rows: the better of the rounds for each binary; "raw" holds the
# baseline (before the journal) of the same run.
jbest() { # jbest LABEL NAME -> best value over the rounds
    local f v best=
    for f in "$LOGS"/journal-"$1"-*.json; do
        v=$(jq -r --arg n "$2" '[.[] | select(.name | startswith($n)) | .value][0] // empty' "$f")
        best=$(awk -v a="$best" -v b="$v" 'BEGIN { if (a == "" || b + 0 > a + 0) print b; else print a }')
    done
    echo "$best"
}
if [ ${#JNL_LABELS[@]} -gt 0 ]; then
    for fig in "small write" "big write"; do
        cur=$(jbest current "$fig")
        base=""
        [ "${#JNL_LABELS[@]}" -lt 2 ] || base=$(jbest baseline "$fig")
        rr=$(ratio "$cur" "$base")
        unit="files/s"; [ "$fig" = "big write" ] && unit="MiB/s"
        row "journal: $fig ($( [ "$fig" = "big write" ] && echo "$(human "$JNL_BIG") + fsync" || echo "$JNL_SMALL × 4 KiB create+close")), $unit (raw = the same before the journal)" \
            "$(f1 "$cur")" "$(f1 "$base")" "—" "$(rfmt "$rr")" "—" "≥ 0.9× before the journal" "$(yn ge "$rr" 0.9)"
    done
fi
if step restore; then
    row "restore: metadata.db deleted, $RESTORE_FILES files, rebuilt from the journal alone ($RESTORE_RECORDS records) until the mount answers, ms" \
        "$RESTORE_JOURNAL_MS" "—" "—" "—" "—" "recorded (no target)" "—"
    row "restore: the same from a snapshot (no record after it), ms" \
        "$RESTORE_SNAPSHOT_MS" "—" "—" "—" "—" "recorded (no target)" "—"
fi

if step smallfiles; then
    read -r sf_all sf_shard sf_journal sf_copy sf_ops <<<"$SF_WRITTEN"
    add_rate_row "smallfiles: create+write+close 4 KiB × $SF_COUNT (durable close), files/s" \
        "$SF_MGCS" "$SF_RAW" "$SF_BINDFS" small
    row "smallfiles: node bytes per 4 KiB file created (shards $(( sf_shard / SF_COUNT )), journal $(( sf_journal / SF_COUNT )), copies $(( sf_copy / SF_COUNT )); $(awk -v o="$sf_ops" -v n="$SF_COUNT" 'BEGIN { printf "%.1f", o / n }') node stores per file), bytes" \
        "$(( sf_all / SF_COUNT ))" "4096" "—" "$(rfmt "$(ratio "$sf_all" "$(( SF_COUNT * 4096 ))")")" "—" "recorded (no target)" "—"
    rr=$(ratio "$SQ_MGCS" "$SQ_RAW")
    read -r sq_all _ _ _ sq_ops <<<"$SQ_WRITTEN"
    row "smallfiles: sqlite3 $SF_INSERTS autocommit inserts, WAL, synchronous=FULL, inserts/s (raw = database on the local disk; $(human "$(( sq_all / SF_INSERTS ))") stored on the nodes per insert, in $(awk -v o="$sq_ops" -v n="$SF_INSERTS" 'BEGIN { printf "%.1f", o / n }') stores)" \
        "$(f1 "$SQ_MGCS")" "$(f1 "$SQ_RAW")" "—" "$(rfmt "$rr")" "—" "≥ 0.5× the local disk" "$(yn ge "$rr" 0.5)"
    rw_iops() { jq -r '.jobs[0].write.iops' "$LOGS/randw-$1.json"; }
    rw_bytes() { jq -r '.jobs[0].write.io_bytes' "$LOGS/randw-$1.json"; }
    row "smallfiles: random 4 KiB writes + fsync into a $(human "$RANDW_FILE") file, writes/s" \
        "$(f1 "$(rw_iops minigcs)")" "$(f1 "$(rw_iops raw)")" "—" "$(rfmt "$(ratio "$(rw_iops minigcs)" "$(rw_iops raw)")")" "—" \
        "recorded (no target)" "—"
    read -r rw_all rw_shard rw_journal rw_copy _ <<<"$RW_WRITTEN"
    app=$(rw_bytes minigcs)
    amp=$(ratio "$rw_all" "$app")
    row "smallfiles: the same, node bytes ÷ app bytes ($(human "$app") written by fio; nodes: shards $(human "$rw_shard"), journal $(human "$rw_journal"), copies $(human "$rw_copy"))" \
        "$(rfmt "$amp")" "—" "—" "—" "—" "≤ 4" "$(yn le "$amp" 4)"
fi

for sz in "${CODEC_SIZES[@]}"; do
    enc=$(codec_gibs encode "$sz")
    cpy=$(codec_gibs memcpy "$sz")
    if [ -z "$enc" ] || [ -z "$cpy" ]; then
        warn "no criterion estimates for rs_4+2 encode/memcpy at $sz"
        continue
    fi
    rr=$(ratio "$enc" "$cpy")
    enc_gbs=$(awk -v g="$enc" 'BEGIN { printf "%.2f", g * 1.073741824 }')
    row "codec: RS 4+2 encode, $sz shards, one core, GiB/s (raw = memcpy)" \
        "$(awk -v x="$enc" 'BEGIN { printf "%.2f", x }')" "$(awk -v x="$cpy" 'BEGIN { printf "%.2f", x }')" "—" \
        "$(rfmt "$rr")" "—" "≥ 10 GB/s (9.31 GiB/s) and ≥ 0.5× memcpy" "$(yn ge2 "$enc_gbs" 10 "$rr" 0.5)"
done

HEADER="figure	minigcs	raw	bindfs	÷ raw	÷ bindfs	target	met"
ELAPSED=$((SECONDS - T0))
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
FS=$(df -PT "$TARGET" | awk 'NR == 2 { print $2 " on " $1 }')
MACHINE="$(nproc) × $CPU, $MEM RAM, $FS, Linux $(uname -r), load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
NOTES=(
    "minigcs: default 2+1 config (3 nodes in 3 regions, 4 MiB chunks) on the same disk as raw and bindfs ($BINDFS_VERSION); $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo '+local changes')."
)
if step rss; then NOTES+=(
    "bench/fio/API ran on one daemon; the RSS figure is VmHWM of $RSS_DAEMON read right after the dd and a cold read of the file (start-up and everything before included; VmRSS sampled every 0.2 s peaked at $(awk -v k="${RSS_SAMPLED_KB:-0}" 'BEGIN { printf "%.0f", k / 1024 }') MiB; dd wrote at $(awk -v b="$RSS_SIZE" -v ms="$RSS_DD_MS" 'BEGIN { printf "%.0f", b / 1048576 / (ms / 1000) }') MiB/s). VmHWM of that daemon before the dd, after bench, fio and the APIs: $(awk -v k="${MAIN_HWM_KB:-0}" 'BEGIN { printf "%.0f", k / 1024 }') MiB."
); fi
if step main; then NOTES+=(
    "API: one python3 http.client keep-alive connection; uploads are PUT of the raw body, downloads are cold (page cache dropped) and checked byte for byte; raw = the fio raw write/read figures above. S3: the same object sizes through one boto3 client with default settings (SigV4, CRC32 on every PUT), next to the HTTP API's figures of the same run."
); fi
if step recovery; then NOTES+=(
    "Recovery: node-2's folder deleted with rm -rf, detected by ctl health after ${DETECT_MS} ms (polled every 0.2 s; health_interval_secs is 5 by default), then ctl recover node-2 (daemon's detect→start ${REC_D2S_MS:-?} ms, the script's wait before calling ctl included) ($REC_SHARDS shards, wall ${RECOVER_WALL_MS} ms); raw = cat of $(human "$RAW_READ_BYTES") of surviving shard files after dropping the page cache (${RAW_READ_MS} ms)."
); fi
if step concurrency; then NOTES+=(
    "Concurrency: a fresh daemon per binary; two $(human "$CONC_SIZE") files written with dd conv=fsync; one thread reads file A, then 4 threads read their quarter of file B through one shared descriptor (page cache dropped before each pass); the same again with the node folders' shard files read into the page cache first (node folders warm: the daemon, not the disk, is measured), and the disk's own rate reading every shard file cold with 8 threads; stat = statx with AT_STATX_FORCE_SYNC of a small file for $CONC_SECONDS s alone, then $CONC_SECONDS s while another thread writes and closes 4 MiB files (raw JSON: concurrency-*.json)."
); fi
if [ ${#JNL_LABELS[@]} -gt 0 ]; then NOTES+=(
    "Journal: \`minigcs bench\` on a fresh daemon per pass (page cache not dropped), this build and BENCH_BASELINE_BIN interleaved over two rounds, the better of each; small write = create, write 4 KiB, close (durable: shards, local commit and journal append)."
); fi
if step restore; then NOTES+=(
    "Restore: $RESTORE_FILES empty files created through the mount, a clean stop, metadata.db and its -wal/-shm deleted, then the start timed until the mount answers (journal replay, integrity check, mount); again after \`ctl snapshot\`."
); fi
if step smallfiles; then NOTES+=(
    "Small files: a fresh daemon; one python3 loop of create (O_EXCL), write 4 KiB, close per target (raw, bindfs, the mount: the mount's close is durable, raw and bindfs closes are not); sqlite3 shell, one process, $SF_INSERTS INSERT statements each its own transaction, WAL and synchronous=FULL, the database on the mount and on the raw folder's disk ($(df -PT "$RAW" | awk 'NR == 2 { print $2 }')); fio randwrite bs=4k fsync=1 psync into a file laid out with dd first, stopped after 64 MiB or $RANDW_SECONDS s. Node bytes = the bytes_written counters of \`ctl stats\` (shard files, journal appends, metadata copies) over the step (raw JSON: randw-*.json, smallfiles-stats.json)."
); fi
NOTES+=(
    "Whole run: ${ELAPSED} s (without the build)."
)

print_table() {
    {
        echo "$HEADER"
        printf '%s\n' "${ROWS[@]}"
    } | sed 's/\t$//' | column -t -s $'\t'
}
print_md() {
    echo "# minigcs benchmark ($(date -u +'%Y-%m-%d %H:%M UTC'))"
    echo
    echo "Machine: $MACHINE."
    echo
    echo "| ${HEADER//	/ | } |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"
    local r
    for r in "${ROWS[@]}"; do
        r=${r%	}
        echo "| ${r//	/ | } |"
    done
    print_notes md
}
# print_notes [md]: the notes and any problems seen, as list items
print_notes() {
    local r
    echo
    for r in "${NOTES[@]}"; do echo "- $r"; done
    if [ ${#PROBLEMS[@]} -gt 0 ]; then
        echo
        echo "Problems seen during the run:"
        [ "${1:-}" = md ] && echo
        for r in "${PROBLEMS[@]}"; do echo "- $r"; done
    fi
}

print_md >"$RESULTS_MD"
echo
echo "minigcs benchmark — $MACHINE"
echo
print_table
print_notes
echo
echo "markdown: $RESULTS_MD   raw JSON and logs: $LOGS/"
