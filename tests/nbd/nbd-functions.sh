# tlbd: helpers for the nbd-plugin tests.  Source it after
# tests/functions.sh and `set -e`:
#
#   plugin                 path of the built nbdkit-tlbd-plugin.so
#   start_server DIR ARGS  start nbdkit -f in the background on DIR/sock
#                          (pid file DIR/pid) with the plugin and ARGS; it
#                          is killed at exit; sets server_pid and uri
#   stop_server            SIGTERM the server started last and wait for it
#                          (under ASan, kill -9 it if it hangs in exit())
#   wait_for FILE          wait (up to 30 s) until FILE exists
#   sha256 FILE            the file's SHA-256
#   nbdkit ARGS            nbdkit, with the ASan runtime preloaded in an
#                          ASan build (see below)
#
# The plugin is used from the build tree.  In an ASan build the
# uninstrumented nbdkit needs the ASan runtime preloaded (asan_preload) to
# load the plugin.  Only nbdkit gets it: the clients that --run starts
# (qemu-io, nbdsh, ...) are not ours, and an uninstrumented program with
# libasan preloaded can deadlock at exit in glibc's locale lock (seen with
# qemu-io and with nbdkit itself after it prints an errno message, when
# p11-kit's destructor calls freelocale).

requires nbdkit --version
requires nbdsh --version
plugin=$(nbdkit_plugin)
[ -f "$plugin" ] || die "the plugin is not built: $plugin"

# The environment asan_preload sets, as an `env` prefix; empty without ASan.
# shellcheck disable=SC2207
nbdkit_env=($(asan_preload
              if [ -n "${LD_PRELOAD:-}" ]; then
                  echo env "LD_PRELOAD=$LD_PRELOAD" \
                       "ASAN_OPTIONS=${ASAN_OPTIONS:-}"
              fi))
asan_build=false
[ ${#nbdkit_env[@]} -eq 0 ] || asan_build=true

nbdkit()
{
    local args=() a run=false mark pid i status

    if ! $asan_build; then
        command nbdkit "$@"
        return
    fi
    case " $* " in
    *" --run "*) ;;
    *)  # A server that goes to the background, or --dump-plugin etc.
        "${nbdkit_env[@]}" nbdkit "$@"
        return
        ;;
    esac
    # ASan build: the --run command records its status in MARK, so that
    # when nbdkit then hangs in exit() (see above) the call can still end
    # with the status nbdkit would have returned.
    mark=$(mktemp "${TMPDIR:-/tmp}/tlbd-nbdkit-run.XXXXXX")
    for a in "$@"; do
        if $run; then
            a="unset LD_PRELOAD ASAN_OPTIONS; ( $a ); s=\$?
               echo \$s > $mark; exit \$s"
            run=false
        fi
        [ "$a" != --run ] || run=true
        args+=("$a")
    done
    # Its own process group, so that a hung nbdkit and whatever it forked
    # can be killed together.
    setsid "${nbdkit_env[@]}" nbdkit "${args[@]}" &
    pid=$!
    for ((i = 0; i < 2400; i++)); do
        kill -0 $pid 2>/dev/null && [ ! -s "$mark" ] || break
        sleep 0.1
    done
    for ((i = 0; i < 100; i++)); do
        kill -0 $pid 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 $pid 2>/dev/null; then
        kill -9 -- -$pid
        wait $pid 2>/dev/null || true
        if [ -s "$mark" ]; then
            echo "NOTE: nbdkit hung in exit() under the ASan preload" >&2
            status=$(cat "$mark")
        else
            echo "nbdkit: timed out" >&2
            status=124
        fi
    else
        wait $pid && status=0 || status=$?
    fi
    kill -9 -- -$pid 2>/dev/null || true
    rm -f "$mark"
    return "$status"
}

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
    # No function here: $! must be nbdkit's own pid.
    if $asan_build; then
        "${nbdkit_env[@]}" nbdkit -f -U "$dir/sock" -P "$dir/pid" \
            "$plugin" "$@" &
    else
        command nbdkit -f -U "$dir/sock" -P "$dir/pid" "$plugin" "$@" &
    fi
    server_pid=$!
    cleanup_fn "kill -9 $server_pid 2>/dev/null; wait $server_pid 2>/dev/null"
    wait_for "$dir/pid"
    wait_for "$dir/sock"
    uri="nbd+unix:///?socket=$dir/sock"
}

stop_server()
{
    local i
    kill -TERM "$server_pid"
    if $asan_build; then
        # It may hang in exit() once the plugin is unloaded (see above).
        for ((i = 0; i < 300; i++)); do
            [ -e "/proc/$server_pid" ] &&
                ! grep -q '^[0-9]* (.*) Z' "/proc/$server_pid/stat" ||
                break
            sleep 0.1
        done
        if [ -e "/proc/$server_pid" ] &&
           ! grep -q '^[0-9]* (.*) Z' "/proc/$server_pid/stat"; then
            echo "NOTE: nbdkit hung in exit() under the ASan preload" >&2
            kill -9 "$server_pid"
            wait "$server_pid" 2>/dev/null || true
            return 0
        fi
    fi
    wait "$server_pid" || die "nbdkit exited with status $? on SIGTERM"
}

sha256()
{
    sha256sum "$1" | cut -d' ' -f1
}
