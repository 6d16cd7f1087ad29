#!/usr/bin/env bash
# tlbd: writes acknowledged after a flush (or with FUA) survive kill -9 of
# the server; a new server serves them.
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/nbd-functions.sh"
requires python3 --version

d=$(mktestdir)
truncate -s 32M "$d/disk.img"
export DATA="$d/data"

start_server "$d" file="$d/disk.img" threads-min=2
nbdsh -u "$uri" -c '
import os
M = 1024 * 1024
data = os.urandom(3 * M)
h.pwrite(data[:M], 0)
h.pwrite(data[M:2 * M], 10 * M)
h.flush()
h.pwrite(data[2 * M:], 20 * M, nbd.CMD_FLAG_FUA)
open(os.environ["DATA"], "wb").write(data)
' || die "writes failed"
kill -9 "$server_pid"
wait "$server_pid" 2>/dev/null || true
# The socket is left behind by a killed server; start_server removes it.

python3 - "$d/disk.img" "$DATA" <<'PY' || die "data lost after kill -9"
import sys
M = 1024 * 1024
img = open(sys.argv[1], "rb").read()
data = open(sys.argv[2], "rb").read()
assert img[:M] == data[:M]
assert img[10 * M:11 * M] == data[M:2 * M]
assert img[20 * M:21 * M] == data[2 * M:]
PY

start_server "$d" file="$d/disk.img"
nbdsh -u "$uri" -c '
import os
M = 1024 * 1024
data = open(os.environ["DATA"], "rb").read()
assert h.pread(M, 0) == data[:M]
assert h.pread(M, 10 * M) == data[M:2 * M]
assert h.pread(M, 20 * M) == data[2 * M:]
' || die "restarted server does not serve the data"
stop_server
