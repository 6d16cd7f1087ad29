# tlbd: helpers for the tests of `tlbd stat` under a known load.  Source
# after tests/functions.sh.
#
#   stat_fio_load        the fio options of the known load, an array: 4k
#                        random requests at 200 reads and 100 writes a
#                        second (rate_iops), a sync every 10 writes, for 6 s
#   stat_during SOCKET OUT CMD...
#                        run `tlbd stat --json` on SOCKET into OUT from
#                        before CMD starts until after it ends; returns
#                        CMD's status
#   stat_check OUT FIO_JSON
#                        tests/stat-check.py: the counts of OUT against
#                        fio's report (see there for the tolerance)

stat_fio_load=(--rw=randrw --rwmixread=67 --rate_iops=200,100 --bs=4k
               --runtime=6 --time_based --fsync=10 --randrepeat=1
               --output-format=json)

stat_during()
{
    local sock=$1 out=$2 pid status=0 i
    shift 2
    "$(tlbd_bin)" stat --json --interval 1s "$sock" >"$out" &
    pid=$!
    cleanup_fn "kill $pid 2>/dev/null"
    # Its first line covers an interval before the load starts.
    for ((i = 0; i < 100; i++)); do
        [ -s "$out" ] && break
        sleep 0.1
    done
    [ -s "$out" ] || die "tlbd stat printed nothing in 10 s"
    "$@" || status=$?
    sleep 1.5
    kill -TERM $pid
    wait $pid 2>/dev/null || true
    return $status
}

stat_check()
{
    /usr/bin/python3 "$TLBD_SRC/tests/stat-check.py" "$1" "$2" ||
        die "tlbd stat disagrees with fio"
}
