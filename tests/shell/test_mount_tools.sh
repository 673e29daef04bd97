#!/usr/bin/env bash
# Standard tools trust the mount: tar in and out (diff -r identical), git
# init/add/commit/log/fsck, sqlite3 with 1000 transactions and a clean
# integrity_check, rsync -a (and a second rsync finds nothing to do).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_fuse

# A source tree: the repo's src/ if present, plus generated files of various
# sizes, modes, a symlink and an empty directory.
TREE=$WORK/tree
mkdir -p "$TREE/gen/deep/er/still" "$TREE/gen/empty_dir"
if [ -d "$REPO_ROOT/src" ]; then cp -a "$REPO_ROOT/src" "$TREE/src"; fi
for i in $(seq 1 40); do head -c $((i * 997)) /dev/urandom >"$TREE/gen/small_$i"; done
mkrand "$TREE/gen/deep/er/still/big.bin" 2500000
printf 'exec\n' >"$TREE/gen/script.sh"
chmod 755 "$TREE/gen/script.sh"
chmod 600 "$TREE/gen/small_1"
ln -s deep/er/still/big.bin "$TREE/gen/link_to_big"
: >"$TREE/gen/empty_file"

start_daemon mount

say "tar a tree into the mount (pipe) and diff -r"
mkdir "$MNT/untarred"
tar -C "$TREE" -cf - . | tar -C "$MNT/untarred" -xpf -
diff -r --no-dereference "$TREE" "$MNT/untarred" || fail "tree extracted into the mount differs"

say "tar archive file inside the mount, extracted back out"
tar -C "$TREE" -cf "$MNT/tree.tar" .
tar -tf "$MNT/tree.tar" >/dev/null || fail "tar archive in the mount is unreadable"
mkdir "$WORK/out1"
tar -C "$WORK/out1" -xpf "$MNT/tree.tar"
diff -r --no-dereference "$TREE" "$WORK/out1" || fail "tree from the tar archive in the mount differs"

say "tar out of the mount"
mkdir "$WORK/out2"
tar -C "$MNT/untarred" -cf - . | tar -C "$WORK/out2" -xpf -
diff -r --no-dereference "$TREE" "$WORK/out2" || fail "tree tarred out of the mount differs"
assert_eq "$(stat -c %a "$TREE/gen/script.sh")" "$(stat -c %a "$MNT/untarred/gen/script.sh")" "mode of script.sh"

say "git init / add / commit / log / fsck inside the mount"
G=$MNT/repo
mkdir "$G"
cp -a "$TREE/gen" "$G/"
(
    cd "$G"
    export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.invalid GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.invalid
    git -c init.defaultBranch=main init -q .
    git add -A
    git commit -q -m "first"
    echo change >>gen/small_2
    git mv gen/small_3 gen/renamed_3
    git rm -q gen/small_4
    git commit -q -am "second"
    git gc -q
    git fsck --full --strict
    [ "$(git log --oneline | wc -l)" = 2 ] || { echo "git log shows $(git log --oneline | wc -l) commits" >&2; exit 1; }
    [ -z "$(git status --porcelain)" ] || { echo "git status not clean:" >&2; git status --porcelain >&2; exit 1; }
) || fail "git in the mount"
git clone -q "$G" "$WORK/clone" || fail "git clone from the mount"
diff -r -x empty_dir "$G/gen" "$WORK/clone/gen" || fail "clone differs from the work tree in the mount (git keeps no empty dirs)"

say "sqlite3: 1000 transactions inside the mount, integrity_check"
DB=$MNT/db/test.sqlite
mkdir "$MNT/db"
{
    echo "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);"
    for i in $(seq 1 1000); do
        echo "INSERT INTO t(v) VALUES('row $i $(printf 'x%.0s' $(seq 1 $((i % 50))))');"
    done
} >"$WORK/tx.sql"
start=$SECONDS
sqlite3 "$DB" <"$WORK/tx.sql" || fail "sqlite3 transactions failed"
echo "1000 transactions in $((SECONDS - start))s"
assert_eq ok "$(sqlite3 "$DB" 'PRAGMA integrity_check;')" "PRAGMA integrity_check"
assert_eq 1000 "$(sqlite3 "$DB" 'SELECT count(*) FROM t;')" "row count"
sqlite3 "$DB" "UPDATE t SET v = v || '!' WHERE id % 3 = 0; DELETE FROM t WHERE id % 7 = 0; VACUUM;"
assert_eq ok "$(sqlite3 "$DB" 'PRAGMA integrity_check;')" "integrity_check after update/delete/vacuum"
expected_rows=$(sqlite3 "$DB" 'SELECT count(*) FROM t;')

say "rsync -a a tree into the mount"
rsync -a "$TREE/" "$MNT/rsynced/"
diff -r --no-dereference "$TREE" "$MNT/rsynced" || fail "rsync'd tree differs"
changes=$(rsync -ai --dry-run "$TREE/" "$MNT/rsynced/")
[ -z "$changes" ] || fail "second rsync would change things (sizes/mtimes/modes not preserved):
$changes"
echo more >>"$TREE/gen/small_5"
rsync -a --delete "$TREE/" "$MNT/rsynced/"
diff -r --no-dereference "$TREE" "$MNT/rsynced" || fail "incremental rsync differs"

say "everything persists across remount"
stop_daemon
start_daemon mount
diff -r --no-dereference "$TREE" "$MNT/rsynced" || fail "rsync'd tree differs after remount"
assert_eq ok "$(sqlite3 "$DB" 'PRAGMA integrity_check;')" "integrity_check after remount"
assert_eq "$expected_rows" "$(sqlite3 "$DB" 'SELECT count(*) FROM t;')" "row count after remount"
(cd "$G" && git fsck --full --strict && [ "$(git log --oneline | wc -l)" = 2 ]) || fail "git repo after remount"

stop_daemon
echo "PASS: $TEST_NAME"
