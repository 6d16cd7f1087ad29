#!/usr/bin/env bash
# tlbd: installation.  A staging prefix gets the plugin in nbdkit's
# plugindir layout below it and the man page in man1; prefix /usr with
# DESTDIR lands in nbdkit's real plugindir below DESTDIR.  Nothing is
# installed into the running system.  The installed plugin serves.
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/nbd-functions.sh"
requires cmake --version
requires pkg-config --version

d=$(mktestdir)
plugindir=$(pkg-config nbdkit --variable=plugindir)
nbdkit_prefix=$(pkg-config nbdkit --variable=prefix)
rel=${plugindir#"$nbdkit_prefix"/}

# Staging prefix.
cmake --install "$TLBD_BUILD" --prefix "$d/stage" > "$d/install.log" ||
    { cat "$d/install.log"; die "cmake --install failed"; }
so="$d/stage/$rel/nbdkit-tlbd-plugin.so"
[ -f "$so" ] || { cat "$d/install.log"; die "no plugin at $so"; }
man=$(find "$d/stage" -path '*/man1/nbdkit-tlbd-plugin.1' -type f)
[ -n "$man" ] || die "no man page in man1"
grep -q 'nbdkit-tlbd-plugin' "$man" || die "man page content"
! grep -q "$plugindir" "$d/install.log" ||
    die "a staging install touched the system plugindir"

# Prefix /usr below DESTDIR: nbdkit's own plugindir.
DESTDIR="$d/root" cmake --install "$TLBD_BUILD" --prefix "$nbdkit_prefix" \
    > "$d/install2.log" || { cat "$d/install2.log"; die "DESTDIR install"; }
[ -f "$d/root$plugindir/nbdkit-tlbd-plugin.so" ] ||
    { cat "$d/install2.log"; die "no plugin at DESTDIR$plugindir"; }

# The installed copy is the built one, and it serves.
cmp "$plugin" "$so" || die "installed plugin differs from the built one"
truncate -s 1M "$d/disk.img"
size=$(nbdkit -U - "$so" "$d/disk.img" --run 'nbdinfo --size "$uri"')
[ "$size" = 1048576 ] || die "installed plugin: size $size"
