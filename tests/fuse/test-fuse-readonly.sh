#!/usr/bin/env bash
# A read-only mount serves reads, refuses every kind of write with EROFS
# (or EACCES), and leaves the image byte for byte as it was.
source "$(dirname "$0")/../functions.sh"
source "$(dirname "$0")/fuse-functions.sh"
set -e
requires fallocate --version

fuse_test_dirs
head -c 8M /dev/urandom >"$img"
cp "$img" "$d/orig"
before=$(sha256sum <"$img")

start_fuse "$d/log" -r "$img" "$img"
cmp "$img" "$d/orig"
refused()
{
    if "$@" 2>"$d/err"; then
        die "read-only mount allowed: $*"
    fi
    grep -Eq "Read-only file system|Permission denied" "$d/err" ||
        die "$*: $(cat "$d/err")"
}
refused dd if=/dev/zero of="$img" bs=4k count=1 conv=notrunc status=none
refused dd if=/dev/zero of="$img" bs=4k count=1 conv=notrunc oflag=direct \
        status=none
refused truncate -s 4M "$img"
refused fallocate --punch-hole --offset 0 --length 1MiB "$img"
refused sh -c "echo x >>'$img'"
case "$(stat -c %A "$img")" in
-r--r--r--|-r--------|-r--r-----) ;;
*) die "mode $(stat -c %A "$img") grants writes" ;;
esac
stop_fuse "$d/log" "$img"

after=$(sha256sum <"$img")
[ "$before" = "$after" ] || die "the image changed: $before -> $after"
