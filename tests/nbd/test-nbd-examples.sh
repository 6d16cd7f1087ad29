#!/usr/bin/env bash
# tlbd: the EXAMPLES of nbdkit-tlbd-plugin(1) work as written.  Every
# example that runs a captive nbdkit (-U - ... --run) is run, with the
# installed name "tlbd" replaced by the plugin in the build tree, in a fresh
# directory holding the disk.img the first example creates.  Examples that
# start a server until it is stopped are run captive instead, with nbdinfo.
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/nbd-functions.sh"
requires python3 --version
requires qemu-io --version
requires nbdcopy --version

d=$(mktestdir)
pod="$TLBD_SRC/man/nbdkit-tlbd-plugin.1.pod"

# One file per verbatim paragraph of the EXAMPLES section.
python3 - "$pod" "$d" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
sec = re.search(r"^=head1 EXAMPLES\n(.*?)^=head1", text, re.S | re.M).group(1)
n = 0
for para in re.split(r"\n\s*\n", sec):
    if para.startswith(" "):
        n += 1
        open("%s/ex%02d.sh" % (sys.argv[2], n), "w").write(para + "\n")
assert n >= 5, n
PY

cd "$d"
ran=0
for ex in ex*.sh; do
    cmd=$(cat "$ex")
    echo "== $cmd"
    case $cmd in
    *"nbdkit -U - "*"--run "*)
        cmd=${cmd/ tlbd / \"\$plugin\" }
        eval "$cmd" || die "example failed: $cmd"
        ran=$((ran + 1))
        ;;
    *"nbdkit "*)
        # A server that runs until stopped: run it captive instead.
        cmd=${cmd/ tlbd / -U - \"\$plugin\" }
        eval "$cmd --run 'nbdinfo \"\$uri\"'" ||
            die "example failed: $cmd"
        ran=$((ran + 1))
        ;;
    *)
        eval "$cmd" || die "example failed: $cmd"
        ;;
    esac
done
[ $ran -ge 5 ] || die "only $ran examples ran"
[ -f copy.img ] && cmp disk.img copy.img || die "nbdcopy example: copy differs"
