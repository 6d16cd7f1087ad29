#!/usr/bin/env bash
# tlbd: smoke run of pool-bench: a tiny run must exit 0 and print the table
# header with all three libraries and six rows of numbers, and valid JSON.
# Speed is not checked.
set -euo pipefail
bench=${1:?usage: smoke.sh PATH-TO-POOL-BENCH}

out=$("$bench" --tasks 1000 --reps 1 --samples 200)
printf '%s\n' "$out"
grep -Eq '^metric +tlbd +GThreadPool +libuv +tlbd/GTP +tlbd/uv$' <<<"$out"
num='[0-9]+\.[0-9]+'
rows=$(grep -Ec "^(tput|round trip).* $num +$num +$num +$num +$num\$" \
       <<<"$out")
if [ "$rows" -ne 6 ]; then
    echo "smoke.sh: expected 6 rows of 5 numbers, got $rows" >&2
    exit 1
fi

json=$("$bench" --tasks 1000 --reps 1 --samples 200 --json)
python3 -c '
import json, sys
d = json.loads(sys.argv[1])
assert len(d["rows"]) == 6, d
for r in d["rows"]:
    for k in ("tlbd", "gthreadpool", "libuv"):
        assert r[k] > 0, r
' "$json"
echo "smoke.sh: ok"
