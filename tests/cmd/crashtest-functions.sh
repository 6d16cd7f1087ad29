# tlbd: helpers of the `tlbd crashtest` tests.  Source after functions.sh.
#
#   crashtest_setup        skip unless root, FUSE, loop devices and e2fsprogs
#                          are there; sets $tlbd and $dir (a test directory,
#                          also crashtest's TMPDIR)
#   crashtest_run WANT ARGS...
#                          tlbd crashtest ARGS, its table in $dir/table (and
#                          shown), its progress in $dir/progress; fail with
#                          both and the failing state's output unless it
#                          exits with WANT
#   crashtest_left_nothing fail unless crashtest left no mount and no loop
#                          device behind in $dir
#   metadata_workload N    a script creating, renaming and removing N files
#                          with a `sync -f` every 50, written to $dir/meta.sh
#   fsync_workload N       a script writing N files, each fsynced with its
#                          directory, its sha256 recorded in $dir/sums and the
#                          mark fN placed after it, written to
#                          $dir/fsync.sh; fsync_check.sh checks a state

crashtest_setup()
{
    requires_root
    requires_fuse
    requires losetup --version
    requires mkfs.ext4 -V
    requires e2fsck -V
    tlbd=$(tlbd_bin)
    dir=$(mktestdir)
    export TMPDIR=$dir
}

crashtest_run()
{
    local want=$1 st=0
    shift
    "$tlbd" crashtest "$@" >"$dir/table" 2>"$dir/progress" || st=$?
    cat "$dir/table"
    if [ "$st" != "$want" ]; then
        cat "$dir/progress"
        find "$dir" -name failed.out -exec cat {} +
        die "crashtest exited with $st, want $want"
    fi
}

# After the test: nothing of this test's crashtest is mounted or attached.
crashtest_left_nothing()
{
    local left
    left=$(grep -c -F "$dir/" /proc/mounts || true)
    [ "$left" = 0 ] || die "$left mounts left: $(grep -F "$dir/" /proc/mounts)"
    left=$(losetup -a | grep -c -F "$dir/" || true)
    [ "$left" = 0 ] ||
        die "$left loop devices left: $(losetup -a | grep -F "$dir/")"
}

metadata_workload()
{
    cat >"$dir/meta.sh" <<EOS
set -e
for i in \$(seq 1 $1); do
    d=d\$((i % 8))
    mkdir -p \$d
    echo "file \$i" >f\$i
    if [ \$((i % 3)) = 0 ]; then mv f\$i \$d/g\$i; fi
    if [ \$((i % 5)) = 0 ]; then rm -f f\$((i - 1)); fi
    if [ \$((i % 7)) = 0 ]; then rm -rf d\$(((i + 3) % 8)); fi
    if [ \$((i % 50)) = 0 ]; then sync -f .; fi
done
EOS
}

fsync_workload()
{
    : >"$dir/sums"
    cat >"$dir/fsync.sh" <<EOS
set -e
for i in \$(seq 1 $1); do
    head -c \$((i * 997 % 20000 + 1)) /dev/urandom >s\$i
    sync s\$i .
    sha256sum s\$i >>"$dir/sums"
    "\$TLBD" ctl "\$TLBD_CONTROL" mark f\$i
    # Churn that no fsync covers.
    echo \$i >t\$i
    mv t\$i u\$i
    if [ \$((i % 4)) = 0 ]; then rm -f u\$((i - 2)); fi
done
EOS
    # The check: every file marked before the state has its checksum.
    cat >"$dir/fsync_check.sh" <<EOS
set -e
n=0
for m in \$TLBD_MARKS; do
    case \$m in
    f*) i=\${m#f}
        want=\$(grep " s\$i\\\$" "$dir/sums" | cut -d' ' -f1)
        got=\$(sha256sum s\$i | cut -d' ' -f1)
        [ -n "\$want" ] && [ "\$want" = "\$got" ] || {
            echo "state \$TLBD_STATE: s\$i: want '\$want', got '\$got'"
            exit 1
        }
        n=\$((n + 1)) ;;
    esac
done
echo "state \$TLBD_STATE: \$n fsynced files checked" >>"$dir/checked"
EOS
}
