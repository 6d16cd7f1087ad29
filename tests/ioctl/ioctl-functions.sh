# tlbd: helpers for the ioctl tests.  Source after tests/functions.sh.
#
#   attach_sector_loop FILE SECTOR_SIZE
#                  attach_loop (tests/functions.sh) with that logical
#                  sector size, checked with blockdev --getss
#   blkioctl       path of the ioctl helper (tests/ioctl/blkioctl.c)

requires_root
requires losetup --version
requires blockdev --version

blkioctl()
{
    echo "$TLBD_BUILD/tests/ioctl/blkioctl"
}

attach_sector_loop()
{
    local sector=$2
    attach_loop "$1" --sector-size "$sector"
    [ "$(blockdev --getss "$loop_dev")" = "$sector" ] ||
        die "$loop_dev: sector size $(blockdev --getss "$loop_dev")," \
            "not $sector"
}

# The bytes of FILE from OFFSET, LENGTH of them, as hex.
bytes_at()
{
    od -An -v -tx1 -j "$2" -N "$3" "$1" | tr -d ' \n'
}
