# tlbd: helpers for the nbd-plugin tests.  Source it after
# tests/functions.sh and `set -e`:
#
#   plugin                 path of the built nbdkit-tlbd-plugin.so
#   start_server DIR ARGS  start nbdkit -f in the background on DIR/sock
#                          (pid file DIR/pid) with the plugin and ARGS; it
#                          is killed at exit; sets server_pid and uri
#   stop_server            SIGTERM the server started last and wait for it
#   wait_for FILE          wait (up to 30 s) until FILE exists
#   sha256 FILE            the file's SHA-256
#
# The plugin is used from the build tree; asan_preload makes an ASan build
# loadable by the uninstrumented nbdkit.

requires nbdkit --version
requires nbdsh --version
plugin=$(nbdkit_plugin)
[ -f "$plugin" ] || die "the plugin is not built: $plugin"
asan_preload

wait_for()
{
    local i
    for ((i = 0; i < 300; i++)); do
        [ -e "$1" ] && return 0
        sleep 0.1
    done
    die "timed out waiting for $1"
}

start_server()
{
    local dir=$1
    shift
    rm -f "$dir/sock" "$dir/pid"
    nbdkit -f -U "$dir/sock" -P "$dir/pid" "$plugin" "$@" &
    server_pid=$!
    cleanup_fn "kill -9 $server_pid 2>/dev/null; wait $server_pid 2>/dev/null"
    wait_for "$dir/pid"
    wait_for "$dir/sock"
    uri="nbd+unix:///?socket=$dir/sock"
}

stop_server()
{
    kill -TERM "$server_pid"
    wait "$server_pid" || die "nbdkit exited with status $? on SIGTERM"
}

sha256()
{
    sha256sum "$1" | cut -d' ' -f1
}
