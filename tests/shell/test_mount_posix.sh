#!/usr/bin/env bash
# POSIX operations on the mount give the same result as on a local folder:
# mkdir -p, mv (files, directories, onto an existing target), ln, ln -s, chmod,
# chown, touch -d, truncate up/down, rm -r, find, du, df, stat; rmdir of a
# non-empty directory fails; names over 255 bytes fail; an unlinked file stays
# readable through its open descriptor; hard-link counts; setfacl -k/-b and
# tar --acls as on the local disk (an empty ACL is no error).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_fuse

AS_ROOT=0
[ "$(id -u)" = 0 ] && AS_ROOT=1
mkrand "$WORK/big" 3000000          # ~3 chunks
mkrand "$WORK/mid" 1500000

start_daemon mount
T=$MNT/t
REF=$WORK/ref
mkdir -p "$T" "$REF"

# The same operations on a folder; run once in the mount and once locally.
ops() {
    local d=$1
    mkdir -p "$d/a/b/c"
    echo hello >"$d/a/b/c/file1"
    cp "$WORK/big" "$d/a/big"
    head -c 100 "$WORK/mid" >"$d/a/small"
    mv "$d/a/small" "$d/a/b/small_moved"
    mkdir "$d/dir2"
    echo q >"$d/dir2/q"
    mkdir "$d/dir2/sub"
    cp "$WORK/mid" "$d/dir2/sub/mid"
    mv "$d/dir2" "$d/a/b/dir2_moved"
    ln "$d/a/big" "$d/a/big_hard"
    ln -s ../big "$d/a/b/big_sym"
    ln -s /nonexistent/target "$d/dangling"
    chmod 640 "$d/a/b/c/file1"
    chmod 711 "$d/a/b/c"
    chmod 4755 "$d/a/b/small_moved"
    if [ "$AS_ROOT" = 1 ]; then chown 1234:2345 "$d/a/b/c/file1"; fi
    touch -d '2020-01-02 03:04:05.123456789' "$d/a/b/c/file1"
    touch -h -d '2019-05-06 07:08:09' "$d/dangling"
    cp "$WORK/mid" "$d/trunc"
    truncate -s 2500000 "$d/trunc"      # up: hole at the end
    truncate -s 1234 "$d/trunc"         # down
    truncate -s 1100000 "$d/trunc"      # up again: zeros after 1234
    echo target >"$d/target"
    echo source >"$d/source"
    mv -f "$d/source" "$d/target"       # rename onto an existing file
    mkdir -p "$d/dsrc/x" "$d/ddst"
    echo x >"$d/dsrc/x/f"
    mv -T "$d/dsrc" "$d/ddst"           # rename a dir onto an empty dir
    mkdir -p "$d/rmme/x/y"
    echo 1 >"$d/rmme/x/y/f"
    echo 2 >"$d/rmme/f"
    rm -r "$d/rmme"
    : >"$d/empty"
    mkfifo "$d/fifo"
}

# One line per entry: path, type, mode, size (not for dirs), links (not for
# dirs), owner, symlink target, content hash.
fingerprint() {
    local d=$1
    (
        cd "$d"
        find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort | while IFS= read -r p; do
            case $(stat -c %F "$p") in
                directory) printf '%s d %s - - %s\n' "$p" "$(stat -c %a "$p")" "$(stat -c %u:%g "$p")" ;;
                "symbolic link") printf '%s l %s %s\n' "$p" "$(stat -c '%s %u:%g' "$p")" "$(readlink "$p")" ;;
                fifo) printf '%s p %s %s\n' "$p" "$(stat -c %a "$p")" "$(stat -c %u:%g "$p")" ;;
                *) printf '%s f %s %s\n' "$p" "$(stat -c '%a %s %h %u:%g' "$p")" "$(sha256sum <"$p" | cut -d' ' -f1)" ;;
            esac
        done
    )
}

say "same operations in the mount and in a local folder"
ops "$REF"
ops "$T"
fingerprint "$REF" >"$WORK/fp_ref"
fingerprint "$T" >"$WORK/fp_mnt"
if ! diff -u "$WORK/fp_ref" "$WORK/fp_mnt"; then fail "mount differs from the local folder (diff above: - local, + mount)"; fi

say "stat: nanosecond mtime set by touch -d, symlink mtime"
assert_eq "$(stat -c %y "$REF/a/b/c/file1")" "$(stat -c %y "$T/a/b/c/file1")" "mtime of a/b/c/file1"
assert_eq "$(stat -c %Y "$REF/dangling")" "$(stat -c %Y "$T/dangling")" "mtime of symlink dangling"

say "find: same listing"
assert_eq "$(cd "$REF" && find . | LC_ALL=C sort | sha256sum)" "$(cd "$T" && find . | LC_ALL=C sort | sha256sum)" "find listing"
assert_eq "3" "$(find "$T" -type l -o -type p | wc -l)" "find -type l -o -type p count"

say "symlink is followed"
assert_eq "$(sha_of "$WORK/big")" "$(sha_of "$T/a/b/big_sym")" "content through symlink"

say "hard links: nlink counts"
assert_eq 2 "$(stat -c %h "$T/a/big")" "nlink of a/big"
assert_eq "$(stat -c %i "$T/a/big")" "$(stat -c %i "$T/a/big_hard")" "inode of hard link"
rm "$T/a/big_hard"
assert_eq 1 "$(stat -c %h "$T/a/big")" "nlink after removing the link"
ln "$T/a/big" "$T/big_l1"
ln "$T/a/big" "$T/a/b/big_l2"
assert_eq 3 "$(stat -c %h "$T/big_l1")" "nlink with 3 names"
echo appended >>"$T/big_l1"
assert_eq "$(sha_of "$T/big_l1")" "$(sha_of "$T/a/b/big_l2")" "content shared by hard links"
rm "$T/big_l1" "$T/a/b/big_l2"
assert_eq 1 "$(stat -c %h "$T/a/big")" "nlink after removing both links"

say "du and df"
du -s "$T" >/dev/null || fail "du failed"
mid=$T/a/b/dir2_moved/sub/mid
mid_kib=$(du -k "$mid" | cut -f1)
(( mid_kib >= 1450 )) || fail "du -k of a 1500000-byte file = $mid_kib KiB, expected about 1465 (st_blocks must reflect the size)"
assert_eq "1500000" "$(du -b "$mid" | cut -f1)" "du -b (apparent size) of a 1500000-byte file"
assert_eq "$(du -sb "$REF/a/b/dir2_moved/sub/mid" | cut -f1)" "$(du -sb "$mid" | cut -f1)" "du -sb vs the local folder"
read -r df_size df_used df_avail < <(df -B1 --output=size,used,avail "$MNT" | tail -n 1)
(( df_size > 0 )) || fail "df shows size $df_size"
(( df_avail > 0 )) || fail "df shows avail $df_avail"
echo "df: size=$df_size used=$df_used avail=$df_avail"
stat -f "$MNT" >/dev/null || fail "stat -f on the mount failed"

say "rmdir of a non-empty directory fails with ENOTEMPTY, directory kept"
mkdir "$T/nonempty"
echo x >"$T/nonempty/f"
if out=$(rmdir "$T/nonempty" 2>&1); then fail "rmdir of a non-empty directory succeeded"; fi
grep -qi "not empty" <<<"$out" || fail "rmdir error is not ENOTEMPTY: $out"
[ -f "$T/nonempty/f" ] || fail "file inside lost after failed rmdir"

say "names: 255 bytes ok, 256 bytes ENAMETOOLONG"
n255=$(printf 'n%.0s' $(seq 255))
n256=$(printf 'n%.0s' $(seq 256))
echo ok >"$T/$n255" || fail "creating a 255-byte name failed"
[ "$(cat "$T/$n255")" = ok ] || fail "255-byte name unreadable"
if out=$(touch "$T/$n256" 2>&1); then fail "creating a 256-byte name succeeded"; fi
grep -qi "too long" <<<"$out" || fail "256-byte name error is not ENAMETOOLONG: $out"
if mkdir "$T/$n256" 2>/dev/null; then fail "mkdir of a 256-byte name succeeded"; fi
if mv "$T/$n255" "$T/$n256" 2>/dev/null; then fail "rename to a 256-byte name succeeded"; fi

say "other error cases: EEXIST, ENOTDIR, EISDIR, ENOENT"
mkdir "$T/exists"
if mkdir "$T/exists" 2>/dev/null; then fail "mkdir of an existing directory succeeded"; fi
if mkdir "$T/target/sub" 2>/dev/null; then fail "mkdir below a file succeeded"; fi
if out=$(cat "$T/exists" 2>&1); then fail "cat of a directory succeeded"; fi
grep -qi "is a directory" <<<"$out" || fail "cat of a directory: expected EISDIR, got: $out"
if cat "$T/does-not-exist" 2>/dev/null; then fail "cat of a missing file succeeded"; fi
if rmdir "$T/target" 2>/dev/null; then fail "rmdir of a file succeeded"; fi

say "unlinked-while-open file stays readable and writable through its descriptor"
cp "$WORK/mid" "$T/openfile"
python3 - "$T/openfile" "$WORK/mid" <<'PY'
import os, sys, hashlib
path, ref = sys.argv[1], sys.argv[2]
want = open(ref, "rb").read()
fd = os.open(path, os.O_RDWR)
os.unlink(path)
assert not os.path.exists(path), "file still visible after unlink"
got = b""
while True:
    b = os.read(fd, 1 << 20)
    if not b:
        break
    got += b
assert got == want, "content read through the fd after unlink differs (%d vs %d bytes)" % (len(got), len(want))
os.pwrite(fd, b"WRITTEN-AFTER-UNLINK", 10)
os.fsync(fd)
assert os.pread(fd, 20, 10) == b"WRITTEN-AFTER-UNLINK", "write after unlink not readable"
assert os.fstat(fd).st_size == len(want), "fstat size after unlink"
os.close(fd)
print("ok: unlinked file readable and writable through its fd")
PY
[ ! -e "$T/openfile" ] || fail "unlinked file reappeared"

say "rename over an open file keeps the old content readable"
echo old-content >"$T/r1"
echo new-content >"$T/r2"
exec 7<"$T/r1"
mv "$T/r2" "$T/r1"
assert_eq old-content "$(cat <&7)" "content via fd opened before rename-over"
exec 7<&-
assert_eq new-content "$(cat "$T/r1")" "content after rename-over"

say "xattrs: user.minigcs.placement (virtual, read-only, not listed), user xattrs"
getfattr --only-values -n user.minigcs.placement "$T/a/big" >"$WORK/placement" || fail "getfattr user.minigcs.placement failed"
jq -e . "$WORK/placement" >/dev/null || fail "user.minigcs.placement is not JSON: $(head -c 300 "$WORK/placement")"
grep -q node- "$WORK/placement" || fail "placement JSON names no node: $(head -c 300 "$WORK/placement")"
if getfattr -d -m - "$T/a/big" 2>/dev/null | grep -q minigcs.placement; then fail "user.minigcs.placement is listed by listxattr"; fi
if setfattr -n user.minigcs.placement -v x "$T/a/big" 2>/dev/null; then fail "user.minigcs.placement is writable"; fi
setfattr -n user.color -v blue "$T/a/big" || fail "setfattr user.color"
assert_eq blue "$(getfattr --only-values -n user.color "$T/a/big")" "user.color"
getfattr -d "$T/a/big" | grep -q 'user.color="blue"' || fail "user.color not listed"
if setfattr -n user.nothere -x "$T/a/big" 2>/dev/null; then fail "removing a missing xattr succeeded"; fi
setfattr -x user.color "$T/a/big" || fail "setfattr -x user.color"
if getfattr -n user.color "$T/a/big" >/dev/null 2>&1; then fail "user.color still present after removal"; fi
cp -a "$T/a/big" "$T/a/big_copy"
assert_eq "$(sha_of "$T/a/big")" "$(sha_of "$T/a/big_copy")" "cp -a copy content"
rm "$T/a/big_copy"

say "ACLs: empty default and access ACLs (setfacl -k/-b, tar --acls) succeed as on the local disk"
# acl_ops DIR: setfacl/getfacl/tar --acls in DIR; prints what getfacl saw.
acl_ops() {
    local d=$1
    mkdir "$d/acl" "$d/acl/sub"
    echo x >"$d/acl/sub/f"
    setfacl -k "$d/acl" || return 1                  # no default ACL to remove
    setfacl -b "$d/acl" || return 1
    setfacl -d -m u:1234:rwx "$d/acl" || return 1
    getfacl -pcd "$d/acl" || return 1
    setfacl -k "$d/acl" || return 1                  # remove it, then again
    setfacl -k "$d/acl" || return 1
    echo "after -k:"; getfacl -pcd "$d/acl" || return 1
    setfacl -m u:1234:r "$d/acl/sub/f" || return 1
    setfacl -b "$d/acl/sub/f" || return 1
    echo "after -b:"; getfacl -pc "$d/acl/sub/f" || return 1
    tar --acls -C "$d" -cf "$d/acl.tar" acl || return 1
    mkdir "$d/acl-x"
    tar --acls -C "$d/acl-x" -xf "$d/acl.tar" || return 1
    getfacl -pR "$d/acl-x" | sed "s|$d||g" || return 1
}
# The calls themselves: an empty ACL (the header alone) set on a directory
# without one, and removal of an ACL that is not there (the kernel turns the
# first into the second), as libacl and tar --acls make them.
acl_calls() {
    python3 - "$1" <<'PY'
import os, sys
d = os.path.join(sys.argv[1], "acl-calls")
os.mkdir(d)
empty = (2).to_bytes(4, "little")
for name in ("system.posix_acl_default", "system.posix_acl_access"):
    os.setxattr(d, name, empty)
    os.removexattr(d, name)
os.rmdir(d)
PY
}
acl_calls "$REF" 2>"$WORK/acl_ref.err" || fail "empty ACL calls failed on the local disk: $(cat "$WORK/acl_ref.err")"
acl_calls "$T" 2>"$WORK/acl_mnt.err" || fail "empty ACL calls failed in the mount: $(cat "$WORK/acl_mnt.err")"
acl_ops "$REF" >"$WORK/acl_ref" 2>"$WORK/acl_ref.err" || fail "ACL steps failed on the local disk: $(cat "$WORK/acl_ref.err")"
acl_ops "$T" >"$WORK/acl_mnt" 2>"$WORK/acl_mnt.err" || fail "ACL steps failed in the mount: $(cat "$WORK/acl_mnt.err")"
[ ! -s "$WORK/acl_mnt.err" ] || fail "ACL steps warned in the mount: $(cat "$WORK/acl_mnt.err")"
diff -u "$WORK/acl_ref" "$WORK/acl_mnt" || fail "getfacl differs between the local disk and the mount"
rm -rf "$T/acl" "$T/acl-x" "$T/acl.tar" "$REF/acl" "$REF/acl-x" "$REF/acl.tar"

say "ctl info accepts a path in the mount"
ctlj info "$T/a/b/c/file1" | jq -e '.key == "t/a/b/c/file1" and .size == 6' >/dev/null || fail "ctl info PATH: $(ctlj info "$T/a/b/c/file1" 2>&1)"

say "state survives remount"
fingerprint "$T" >"$WORK/fp_before"
stop_daemon
start_daemon mount
fingerprint "$T" >"$WORK/fp_after"
if ! diff -u "$WORK/fp_before" "$WORK/fp_after"; then fail "tree changed across remount"; fi
assert_eq "$(stat -c %y "$REF/a/b/c/file1")" "$(stat -c %y "$T/a/b/c/file1")" "mtime of a/b/c/file1 after remount"

stop_daemon
echo "PASS: $TEST_NAME"
