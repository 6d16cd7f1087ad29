#!/usr/bin/env bash
# tlbd: nbdinfo sees the size and exactly the flags and block sizes that
# nbdkit-tlbd-plugin(1) promises under "WHAT THE EXPORT ADVERTISES"; -r and
# cache=none change what the page says they change.
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/nbd-functions.sh"
requires nbdinfo --version
requires python3 --version

d=$(mktestdir)
pod="$TLBD_SRC/man/nbdkit-tlbd-plugin.1.pod"
size=$((64 * 1024 * 1024 + 4096))
truncate -s $size "$d/disk.img"

# The table in the man page: "<field> <value>" verbatim lines.
sed -n '/^=head1 WHAT THE EXPORT ADVERTISES/,/^=head1/p' "$pod" |
    awk '/^ (is_|can_|block_size_)[a-z_]+ +[^ ]+$/ { print $1, $2 }' \
    > "$d/expected"
[ "$(wc -l < "$d/expected")" -ge 12 ] || die "man page table not found"

# compare JSON EXPECTED-FILE [field=value overrides...]
compare()
{
    python3 - "$@" <<'PY'
import json, sys
info = json.load(open(sys.argv[1]))["exports"][0]
want = dict(l.split() for l in open(sys.argv[2]))
for o in sys.argv[3:]:
    k, v = o.split("=", 1)
    want[k] = v
bad = []
for k, v in sorted(want.items()):
    got = info.get(k)
    got = str(got).lower() if isinstance(got, bool) else str(got)
    if got != v:
        bad.append("%s: nbdinfo says %s, expected %s" % (k, got, v))
for b in bad:
    print(b)
sys.exit(1 if bad else 0)
PY
}

# Default: writable regular file.
nbdkit -U - "$plugin" file="$d/disk.img" \
    --run 'nbdinfo --json "$uri"' > "$d/info.json"
cat "$d/info.json"
compare "$d/info.json" "$d/expected" "export-size=$size" ||
    die "default export differs from the man page"

# -r: read-only, the rest unchanged.
nbdkit -r -U - "$plugin" file="$d/disk.img" \
    --run 'nbdinfo --json "$uri"' > "$d/info-r.json"
compare "$d/info-r.json" /dev/null is_read_only=true \
    "export-size=$size" can_multi_conn=true can_cache=true can_df=true ||
    die "-r export"

# cache=none: the minimum becomes the O_DIRECT alignment (a power of two,
# 512..4096), the preferred size at least that and 4096.
nbdkit -U - "$plugin" file="$d/disk.img" cache=none \
    --run 'nbdinfo --json "$uri"' > "$d/info-none.json"
python3 - "$d/info-none.json" <<'PY' || die "cache=none block sizes"
import json, sys
i = json.load(open(sys.argv[1]))["exports"][0]
mn, pr, mx = (i["block_size_minimum"], i["block_size_preferred"],
              i["block_size_maximum"])
print("cache=none: minimum %d preferred %d maximum %d" % (mn, pr, mx))
assert mn in (512, 1024, 2048, 4096), mn
assert pr >= 4096 and pr >= mn and pr & (pr - 1) == 0, pr
assert mx == 32 * 1024 * 1024, mx
assert i["is_read_only"] is False
PY
