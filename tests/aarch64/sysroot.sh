#!/bin/sh
# sysroot.sh - a private arm64 sysroot for cross-building mclip and running
# its tests under qemu-aarch64, without adding arm64 to the machine's dpkg
# architectures.
#
#   sh tests/aarch64/sysroot.sh [DIR]      (default DIR: build/aarch64-sysroot)
#
# What it does:
#   1. checks for the cross compiler and qemu-aarch64 (Debian:
#      apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user);
#   2. reads Debian's arm64 package lists into DIR/.apt with a private apt
#      configuration (its own lists, cache and an empty dpkg status), so the
#      system's apt state and architectures stay untouched;
#   3. downloads the arm64 .debs below with `apt-get download` and unpacks
#      them with `dpkg -x` into DIR (no maintainer scripts run);
#   4. makes the links update-alternatives would have made for OpenBLAS
#      (libopenblas.so*, cblas.h in the multiarch directories) and turns the
#      packages' absolute links (libz.so -> /lib/...) into relative ones, so
#      every link resolves inside DIR, for the linker (--sysroot) and for
#      qemu-aarch64 -L DIR alike.
# Idempotent: a package already unpacked (stamp DIR/.apt/done/<pkg>) is
# skipped, apt runs only when something is missing, and package lists are
# read only when absent.  Prints each step.
# The Makefile (ARCH=aarch64) uses DIR through SYSROOT=...
set -eu

arg=${1:-build/aarch64-sysroot}
dir=$arg
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
ma=aarch64-linux-gnu

# C library and compiler runtimes (libgomp, libgcc_s, libgfortran for
# OpenBLAS) so that the sysroot also serves as qemu's -L prefix; OpenBLAS
# (pthread variant, as on the x86 CI); zlib; stb headers; libjpeg-turbo for
# JPEG=libjpeg builds.
pkgs="libc6 libc6-dev linux-libc-dev libgcc-s1 libgomp1 libgfortran5
      libopenblas0-pthread libopenblas-pthread-dev libopenblas0 libopenblas-dev
      zlib1g zlib1g-dev libstb-dev libjpeg62-turbo libjpeg62-turbo-dev"

# 1. Host tools.
missing=""
for t in ${ma}-gcc qemu-aarch64 apt-get dpkg; do
    command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
done
if [ -n "$missing" ]; then
    echo "sysroot.sh: missing host tools:$missing" >&2
    echo "  (Debian: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)" >&2
    exit 1
fi
echo "sysroot: $dir"
echo "  cross compiler $(command -v ${ma}-gcc) ($(${ma}-gcc -dumpversion))"
echo "  emulator       $(command -v qemu-aarch64)"

# Packages not unpacked yet (stamp DIR/.apt/done/<pkg>).
apt="$dir/.apt"
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs" "$apt/done"
todo=""
for p in $pkgs; do
    if [ -e "$apt/done/$p" ]; then
        echo "  have     $p ($(cat "$apt/done/$p"))"
    else
        todo="$todo $p"
    fi
done

if [ -n "$todo" ]; then
    # 2. Private apt state: arm64 only, own lists and cache, empty dpkg
    # status.  Lists are read when missing (rm -r DIR/.apt/lists to refresh).
    : > "$apt/status"
    set -- -o APT::Architecture=arm64 -o APT::Architectures=arm64 \
           -o Dir::State::Lists="$apt/lists" -o Dir::Cache="$apt/cache" \
           -o Dir::State::status="$apt/status" -o APT::Sandbox::User=root -q
    if ! ls "$apt/lists/"*_Packages* >/dev/null 2>&1; then
        echo "  reading arm64 package lists into $apt/lists"
        apt-get "$@" update >"$apt/update.log" 2>&1 || {
            cat "$apt/update.log" >&2
            echo "sysroot.sh: apt-get update for arm64 failed (log above)" >&2
            exit 1
        }
    fi

    # 3. Download and unpack.
    for p in $todo; do
        rm -f "$apt/debs/${p}_"*.deb
        (cd "$apt/debs" && apt-get "$@" download "$p" >/dev/null) || {
            echo "sysroot.sh: apt-get download $p (arm64) failed" >&2
            exit 1
        }
        deb=$(ls "$apt/debs/${p}_"*.deb)
        dpkg -x "$deb" "$dir"
        basename "$deb" > "$apt/done/$p"
        echo "  unpacked $(basename "$deb")"
    done
fi

# 4. The update-alternatives links of OpenBLAS, relative inside the sysroot.
lib="$dir/usr/lib/$ma"
inc="$dir/usr/include/$ma"
for f in libopenblas.so.0 libopenblas.so libblas.so.3 liblapack.so.3; do
    if [ -e "$lib/openblas-pthread/$f" ] && [ ! -e "$lib/$f" ]; then
        ln -sfn "openblas-pthread/$f" "$lib/$f"
        echo "  link     usr/lib/$ma/$f -> openblas-pthread/$f"
    fi
done
for f in cblas.h f77blas.h openblas_config.h; do
    if [ -e "$inc/openblas-pthread/$f" ] && [ ! -e "$inc/$f" ]; then
        ln -sfn "openblas-pthread/$f" "$inc/$f"
        echo "  link     usr/include/$ma/$f -> openblas-pthread/$f"
    fi
done

# Absolute links in the packages (libz.so -> /lib/...) would point into the
# host's file system: make them relative inside the sysroot.
find "$dir" -path "$apt" -prune -o -type l -lname '/*' -print | while read -r l; do
    t=$(readlink "$l")
    ln -sfnr "$dir$t" "$l"
    echo "  relink   ${l#$dir/} -> $(readlink "$l")"
done

# Sanity: the loader and the libraries the tests need are in place.
for f in "$dir/lib/ld-linux-aarch64.so.1" "$dir/lib/$ma/libc.so.6" "$lib/libgomp.so.1" \
         "$lib/libopenblas.so.0" "$lib/libz.so" "$inc/cblas.h" "$dir/usr/include/stb/stb_image.h"; do
    [ -e "$f" ] || { echo "sysroot.sh: expected $f after unpacking" >&2; exit 1; }
done
echo "sysroot ready: make ARCH=aarch64 SYSROOT=$arg"
