#!/usr/bin/env bash
# Random-offset overwrites and appends match a reference file byte for byte;
# sparse files read zeros in holes; two concurrent writers on different files
# plus readers see no corruption.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_fuse

start_daemon mount
mkdir "$WORK/ref"

say "500 random overwrites/appends (with reads and reopen) vs. a local reference"
python3 - "$MNT/random.bin" "$WORK/ref/random.bin" "$CFG_CHUNK" <<'PY'
import os, random, sys
mnt_path, ref_path, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
rnd = random.Random(1234)
init = os.urandom(3 * chunk + 777)
for p in (mnt_path, ref_path):
    with open(p, "wb") as f:
        f.write(init)

def open_both():
    return [os.open(p, os.O_RDWR) for p in (mnt_path, ref_path)]

fds = open_both()
for i in range(500):
    size = os.fstat(fds[1]).st_size
    r = rnd.random()
    n = rnd.choice([1, 7, 4096, rnd.randint(1, 300000), rnd.randint(1, 2 * chunk)])
    data = os.urandom(n)
    if r < 0.7:
        off = rnd.randint(0, size + 100000)          # may leave a hole past EOF
        for fd in fds:
            assert os.pwrite(fd, data, off) == n
    elif r < 0.9:
        for fd in fds:
            os.lseek(fd, 0, os.SEEK_END)
            assert os.write(fd, data) == n
    elif r < 0.95:
        newsize = rnd.randint(0, size + chunk)
        for fd in fds:
            os.ftruncate(fd, newsize)
    else:
        os.fsync(fds[0])
    if i % 25 == 0:   # read-your-writes through the open handle
        size = os.fstat(fds[1]).st_size
        assert os.fstat(fds[0]).st_size == size, "size differs at op %d: %d vs %d" % (i, os.fstat(fds[0]).st_size, size)
        off = rnd.randint(0, max(0, size - 1))
        ln = rnd.randint(1, 3 * chunk)
        a, b = os.pread(fds[0], ln, off), os.pread(fds[1], ln, off)
        assert a == b, "read at %d+%d differs at op %d" % (off, ln, i)
    if i % 100 == 99:   # close and reopen: flush + commit
        for fd in fds:
            os.close(fd)
        fds = open_both()
for fd in fds:
    os.close(fd)
print("ok: 500 operations, final size", os.path.getsize(ref_path))
PY
cmp "$WORK/ref/random.bin" "$MNT/random.bin" || fail "random-write file differs from the reference"

say "O_APPEND writers"
python3 - "$MNT/append.log" "$WORK/ref/append.log" <<'PY'
import os, sys
for p in sys.argv[1:]:
    for i in range(200):
        fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, b"line %d %s\n" % (i, b"x" * (i * 37 % 5000)))
        os.close(fd)
PY
cmp "$WORK/ref/append.log" "$MNT/append.log" || fail "O_APPEND log differs"

say "sparse file: holes read as zeros"
for d in "$MNT" "$WORK/ref"; do
    truncate -s $((10 * 1024 * 1024)) "$d/sparse"
    printf 'MIDDLE' | dd of="$d/sparse" bs=1 seek=$((5 * 1024 * 1024 + 17)) conv=notrunc status=none
    printf 'END' | dd of="$d/sparse" bs=1 seek=$((12 * 1024 * 1024)) conv=notrunc status=none
done
assert_eq $((12 * 1024 * 1024 + 3)) "$(stat -c %s "$MNT/sparse")" "sparse file size"
cmp -n $((5 * 1024 * 1024 + 17)) "$MNT/sparse" /dev/zero || fail "hole before MIDDLE is not zeros"
cmp "$WORK/ref/sparse" "$MNT/sparse" || fail "sparse file differs from the reference"

say "two concurrent writers on different files, plus readers"
for i in 1 2 3; do mkrand "$WORK/w$i" $((8 * 1024 * 1024 + i * 1111)); done
cp "$WORK/w3" "$MNT/stable"
stable_sha=$(sha_of "$WORK/w3")
(for r in 1 2 3; do dd if="$WORK/w1" of="$MNT/writer1" bs=131072 status=none; done) &
w1=$!
track_bg $w1
(for r in 1 2 3; do dd if="$WORK/w2" of="$MNT/writer2" bs=65536 status=none conv=fsync; done) &
w2=$!
track_bg $w2
readers=()
for r in 1 2; do
    (
        for n in $(seq 1 6); do
            s=$(sha256sum "$MNT/stable" | cut -d' ' -f1)
            [ "$s" = "$stable_sha" ] || { echo "reader $r saw a wrong checksum of stable" >&2; exit 1; }
            s=$(sha256sum "$MNT/random.bin" | cut -d' ' -f1)
            [ "$s" = "$(sha_of "$WORK/ref/random.bin")" ] || { echo "reader $r saw a wrong random.bin" >&2; exit 1; }
        done
    ) &
    readers+=($!)
    track_bg $!
done
wait $w1 || fail "writer 1 failed"
wait $w2 || fail "writer 2 failed"
for p in "${readers[@]}"; do wait "$p" || fail "a reader saw corruption"; done
assert_eq "$(sha_of "$WORK/w1")" "$(sha_of "$MNT/writer1")" "writer1 result"
assert_eq "$(sha_of "$WORK/w2")" "$(sha_of "$MNT/writer2")" "writer2 result"

say "all of it again after remount"
stop_daemon
start_daemon mount
cmp "$WORK/ref/random.bin" "$MNT/random.bin" || fail "random-write file differs after remount"
cmp "$WORK/ref/sparse" "$MNT/sparse" || fail "sparse file differs after remount"
cmp "$WORK/ref/append.log" "$MNT/append.log" || fail "append log differs after remount"
assert_eq "$(sha_of "$WORK/w1")" "$(sha_of "$MNT/writer1")" "writer1 after remount"
assert_eq "$(sha_of "$WORK/w2")" "$(sha_of "$MNT/writer2")" "writer2 after remount"

stop_daemon
echo "PASS: $TEST_NAME"
