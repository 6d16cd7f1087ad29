#!/usr/bin/env bash
# tlbd bench --json prints valid JSON, and --json=FILE writes the same
# figures as the text summary printed by the same run.
source "$(dirname "$0")/../functions.sh"
set -e
requires /usr/bin/python3 --version

tlbd=$(tlbd_bin)
dir=$(mktestdir)
img=$dir/disk.img

"$tlbd" bench --json --size 16M --ops 2000 --seed 7 "$img" >"$dir/a.json"
/usr/bin/python3 -m json.tool "$dir/a.json" >/dev/null ||
    die "--json is not JSON: $(cat "$dir/a.json")"
grep -q '"seed": 7,' "$dir/a.json" || die "--seed lost in JSON"
grep -q '^  verify' "$dir/a.json" && die "--json also printed text"

"$tlbd" bench --json="$dir/b.json" --ops 3000 --rw randrw --flush-every 20 \
    "$img" >"$dir/b.txt"
/usr/bin/python3 -m json.tool "$dir/b.json" >/dev/null ||
    die "--json=FILE is not JSON"

# field KEY: a JSON value, via python (nested keys joined with '.').
field()
{
    /usr/bin/python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("/"):
    v = v[k]
print(v)' "$dir/b.json" "$1"
}
txt=$(cat "$dir/b.txt")
requests=$(sed -n 's/^  requests  \([0-9]*\) (reads \([0-9]*\), writes \([0-9]*\), flushes \([0-9]*\))$/\1 \2 \3 \4/p' <<<"$txt")
[ "$requests" = "$(field requests) $(field reads) $(field writes) $(field flushes)" ] ||
    die "requests differ: text '$requests', JSON $(cat "$dir/b.json")"
[ "$(field requests)" = 3000 ] || die "--ops 3000 ran $(field requests)"
[ "$(field flushes)" -gt 0 ] || die "--flush-every 20 flushed nothing"
iops=$(sed -n 's/^  IOPS      \([0-9]*\) .*/\1/p' <<<"$txt")
[ "$iops" = "$(field iops)" ] || die "IOPS differ: $iops vs $(field iops)"
mbps=$(sed -n 's/^  MB\/s      \([0-9.]*\) .*/\1/p' <<<"$txt")
[ "$mbps" = "$(field mbps)" ] || die "MB/s differ: $mbps vs $(field mbps)"
p99=$(sed -n 's/^  latency   .* p99 \([0-9.]*\) p99.9 .*/\1/p' <<<"$txt")
[ "$p99" = "$(field latency_us/p99)" ] ||
    die "p99 differs: $p99 vs $(field latency_us/p99)"
[ "$(field verification/result)" = ok ] || die "verification not ok in JSON"
final=$(sed -n 's/.* \([0-9]*\) by the final pass.*/\1/p' <<<"$txt")
[ "$final" = "$(field verification/final_blocks)" ] ||
    die "final pass differs: $final vs $(field verification/final_blocks)"
[ "$(field pool/submitted)" -ge 3000 ] || die "pool statistics missing"
[ "$(field iothread/completions)" -ge 3000 ] || die "I/O thread stats missing"
echo "$test_name: ok"
