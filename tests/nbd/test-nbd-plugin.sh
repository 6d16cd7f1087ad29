#!/usr/bin/env bash
# tlbd: the plugin describes itself (--dump-plugin, --help), exports only
# plugin_init, and takes the file name as its magic key, relative or not.
source "$(dirname "$0")/../functions.sh"
set -e
source "$(dirname "$0")/nbd-functions.sh"
requires nm --version
requires nbdinfo --version

d=$(mktestdir)

# --dump-plugin: nbdkit's fields and the compiled-in features.
nbdkit "$plugin" --dump-plugin > "$d/dump"
cat "$d/dump"
grep -qx 'name=tlbd' "$d/dump" || die "dump-plugin: name"
grep -qx 'api_version=2' "$d/dump" || die "dump-plugin: api_version"
grep -qx 'thread_model=parallel' "$d/dump" || die "dump-plugin: thread model"
grep -qx 'magic_config_key=file' "$d/dump" || die "dump-plugin: magic key"
version=$(sed -n 's/^tlbd_version=//p' "$d/dump")
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "tlbd_version='$version'"
for key in threadlets inline cache_none discard_ignore inject fast_zero \
           extents multi_conn block_size; do
    grep -qx "tlbd_$key=yes" "$d/dump" || die "dump-plugin: tlbd_$key=yes"
done
grep -qx 'tlbd_fua=native' "$d/dump" || die "dump-plugin: tlbd_fua"
grep -qx 'tlbd_cache=native' "$d/dump" || die "dump-plugin: tlbd_cache"
grep -Eqx 'tlbd_threads_max_default=[0-9]+' "$d/dump" ||
    die "dump-plugin: tlbd_threads_max_default"

# --help lists every key.
nbdkit "$plugin" --help > "$d/help"
for key in file= threads-min= threads-max= idle-timeout= cache= discard= \
           offload= inline-max= inject=; do
    grep -q -- "^$key" "$d/help" || die "--help does not list $key"
done

# Only plugin_init is exported.
syms=$(nm -D --defined-only "$plugin" | awk '{ print $NF }' | sort -u)
echo "exported: $syms"
[ "$syms" = plugin_init ] || die "exported symbols besides plugin_init: $syms"
# The plugin is a module named without the lib prefix.
[ "$(basename "$plugin")" = nbdkit-tlbd-plugin.so ] || die "plugin name"

# The magic key, with a relative path (nbdkit may chdir; the plugin must
# have made it absolute).
truncate -s 3M "$d/disk.img"
size=$(cd "$d" && nbdkit -U - "$plugin" disk.img --run 'nbdinfo --size "$uri"')
[ "$size" = $((3 * 1024 * 1024)) ] || die "magic key: size $size"
size=$(cd "$d" && nbdkit -U - "$plugin" file=disk.img \
           --run 'nbdinfo --size "$uri"')
[ "$size" = $((3 * 1024 * 1024)) ] || die "file=: size $size"
