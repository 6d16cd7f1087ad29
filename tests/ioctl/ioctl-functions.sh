# tlbd: helpers for the ioctl tests.  Source after tests/functions.sh.
#
#   attach_loop FILE [SECTOR_SIZE]
#                  attach FILE to a free loop device (with that logical
#                  sector size), set loop_dev to it and register its
#                  detach as a cleanup, so it is detached even when the
#                  test fails.  Call it directly, not in $(...): a
#                  cleanup registered in a subshell is lost.
#   blkioctl       path of the ioctl helper (tests/ioctl/blkioctl.c)

requires_root
requires losetup --version
requires blockdev --version

blkioctl()
{
    echo "$TLBD_BUILD/tests/ioctl/blkioctl"
}

attach_loop()
{
    local file=$1 sector=${2:-512}
    loop_dev=$(losetup -f --show --sector-size "$sector" "$file") ||
        die "losetup $file failed"
    cleanup_fn "losetup -d $loop_dev 2>/dev/null"
    [ "$(blockdev --getss "$loop_dev")" = "$sector" ] ||
        die "$loop_dev: sector size $(blockdev --getss "$loop_dev")," \
            "not $sector"
}

# The bytes of FILE from OFFSET, LENGTH of them, as hex.
bytes_at()
{
    od -An -v -tx1 -j "$2" -N "$3" "$1" | tr -d ' \n'
}
