# tlbd: helpers for the shell tests.  Source it, then `set -e`.
#
#   requires CMD [ARGS]   skip (exit 77) unless CMD ARGS succeeds; under CI
#                         (CI=true) a missing tool fails the test instead,
#                         since `make deps` installs everything
#   requires_root, requires_fuse
#   cleanup_fn CMD...     run CMD at exit, last registered first, even when
#                         the test fails
#   mktestdir             a fresh directory on a disk-backed file system,
#                         removed at exit; prints its path
#   die MSG               fail the test with MSG
#   nbdkit_plugin         path of the built plugin
#   tlbd_bin              path of the built tlbd program
#   block_letter FILE OFFSET  the 4k at OFFSET of FILE as the one letter
#                         (A-Z) it repeats, 0 for zeroes, or "mixed"
#   ctl_stat SOCKET KEY   KEY's value in `tlbd ctl SOCKET stats`
#   expect_ctl_stat SOCKET KEY VALUE  fail unless ctl_stat says VALUE
#   attach_loop FILE [LOSETUP OPTIONS]  attach FILE to a free loop device,
#                         set loop_dev to it and register detach_loop as a
#                         cleanup.  Call it directly, not in $(...): the
#                         record and the cleanup would be lost in a subshell
#   detach_loop DEV [FILE]  detach DEV if it still serves FILE (by default
#                         the file attach_loop attached to it), else leave
#                         it alone: its number may serve another test by
#                         now.  Safe to call again, as the cleanup does
#   loop_backing_file DEV  the file DEV serves, empty when detached
#
# Tests run from ctest with TLBD_BUILD and TLBD_SRC set; run by hand they
# guess them from the script's location.

: "${TLBD_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${TLBD_BUILD:=$TLBD_SRC/build}"
export TLBD_SRC TLBD_BUILD
# Debian's Python tools (nbdsh) need Debian's python3 first on PATH.
export PATH="/usr/bin:/usr/sbin:/bin:/sbin:$PATH"
export LC_ALL=C

test_name=$(basename "$0" .sh)

_cleanup_fns=()
cleanup_fn()
{
    _cleanup_fns+=("$*")
}

_run_cleanup()
{
    local status=$? i
    set +e
    for ((i = ${#_cleanup_fns[@]} - 1; i >= 0; i--)); do
        eval "${_cleanup_fns[$i]}"
    done
    exit $status
}
trap _run_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die()
{
    echo "$test_name: FAIL: $*" >&2
    exit 1
}

skip()
{
    if [ "${CI:-}" = true ]; then
        die "cannot run here: $*"
    fi
    echo "$test_name: SKIP: $*" >&2
    exit 77
}

requires()
{
    "$@" >/dev/null 2>&1 || skip "'$*' failed"
}

requires_root()
{
    [ "$(id -u)" = 0 ] || skip "needs root"
}

requires_fuse()
{
    [ -c /dev/fuse ] || skip "no /dev/fuse"
    requires fusermount3 --version
}

# A directory on a disk-backed file system (O_DIRECT, fallocate and
# SEEK_DATA work there); /tmp may be tmpfs.  `d=$(mktestdir)` runs in a
# subshell, which cannot register a cleanup for the parent, so every
# directory of this test run shares a prefix (the pid) and one cleanup,
# registered first and so run last, removes them all.  It stays on their
# own file system, so a mount left inside is not emptied.
_testdir_prefix="${TLBD_TEST_DIR:-/var/tmp}/tlbd-$test_name.$$."
cleanup_fn "rm -rf --one-file-system '$_testdir_prefix'*"
mktestdir()
{
    mktemp -d "${_testdir_prefix}XXXXXX"
}

nbdkit_plugin()
{
    echo "$TLBD_BUILD/nbd-plugin/nbdkit-tlbd-plugin.so"
}

tlbd_bin()
{
    echo "$TLBD_BUILD/cmd/tlbd"
}

block_letter()
{
    local bytes
    bytes=$(dd if="$1" bs=4k skip=$(($2 / 4096)) count=1 status=none |
            od -An -v -tx1 | tr -s ' ' '\n' | grep . | sort -u)
    case $bytes in
    00) echo 0 ;;
    4[1-9a-f]|5[0-9a]) printf "\\x$bytes\n" ;;
    *) echo mixed ;;
    esac
}

ctl_stat()
{
    "$(tlbd_bin)" ctl "$1" stats | sed -n "s/^$2=//p"
}

expect_ctl_stat()
{
    local v
    v=$(ctl_stat "$1" "$2")
    [ "$v" = "$3" ] || die "tlbd ctl stats: $2=$v, expected $3"
}

# Loop devices are shared by every test running on the machine, and a
# number is handed out again as soon as it is free: detaching by number
# alone, after the device was freed, would detach somebody else's.
declare -gA _loop_files=()
attach_loop()
{
    local file back
    file=$(readlink -e "$1") || die "$1: no such file"
    shift
    loop_dev=$(losetup -f --show "$@" "$file") ||
        die "losetup $* $file failed"
    _loop_files[$loop_dev]=$file
    cleanup_fn "detach_loop $loop_dev"
    back=$(loop_backing_file "$loop_dev")
    [ "$back" = "$file" ] || die "$loop_dev serves '$back', not $file"
}

loop_backing_file()
{
    local back
    back=$(cat "/sys/block/${1#/dev/}/loop/backing_file" 2>/dev/null) ||
        return 0
    echo "${back% (deleted)}"
}

detach_loop()
{
    local dev=$1 file=${_loop_files[$1]:-} back
    if [ $# -gt 1 ]; then
        file=$(readlink -f "$2")
    fi
    [ -n "$file" ] || return 0
    back=$(loop_backing_file "$dev")
    if [ "$back" = "$file" ]; then
        losetup -d "$dev" || return
    elif [ -n "$back" ] && [ $# = 1 ]; then
        echo "$test_name: $dev serves $back now, not $file: left alone" >&2
    fi
    unset "_loop_files[$dev]"
}

# Under an ASan build, programs that dlopen our code (nbdkit) need the
# runtime preloaded.
asan_preload()
{
    case "${TLBD_SANITIZE:-}" in
    *address*)
        export LD_PRELOAD="$(gcc -print-file-name=libasan.so)"
        export ASAN_OPTIONS="detect_leaks=0:${ASAN_OPTIONS:-}"
        ;;
    esac
}
