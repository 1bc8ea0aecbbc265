#!/usr/bin/env bash
# Intel MKL for `cargo build --features mkl`, from PyPI (no Intel registry, no network beyond PyPI).
#
#   bash tests/peers/install_mkl.sh [DIR]        # default DIR: ~/.cache/vlmdb/mkl
#   export MKLROOT=DIR                           # on every cargo call with --features mkl
#   cargo build --release --features mkl
#
# candle-core's `mkl` feature links MKL through intel-mkl-src, which looks for mkl.h, libmkl_intel_lp64.a,
# libmkl_intel_thread.a, libmkl_core.a and libiomp5 under $MKLROOT (and would otherwise try to download MKL from
# a container registry). DIR/lib holds only the static libiomp5.a, so the binary links everything statically and
# needs nothing at run time. If a build ran once without MKLROOT, run `cargo clean -p intel-mkl-src` first.
set -euo pipefail

dir=${1:-$HOME/.cache/vlmdb/mkl}
version=2024.2.2
openmp=2024.2.1
python=${PYTHON:-python3}

wheels="$dir/wheels"
mkdir -p "$wheels" "$dir/include" "$dir/lib"
"$python" -m pip download --quiet --no-deps -d "$wheels" \
    "mkl-static==$version" "mkl-include==$version" "intel-openmp==$openmp"
unpacked="$dir/unpacked"
rm -rf "$unpacked"
for wheel in "$wheels"/*.whl; do
    "$python" -m zipfile -e "$wheel" "$unpacked"
done
data="$unpacked"
find "$data" -path '*/data/include/mkl.h' -exec dirname {} \; | head -1 | xargs -I{} cp -r {}/. "$dir/include/"
for lib in libmkl_intel_lp64.a libmkl_intel_thread.a libmkl_core.a libiomp5.a; do
    found=$(find "$data" -name "$lib" -path '*/data/lib/*' | head -1)
    if [ -z "$found" ]; then
        echo "install_mkl.sh: $lib is not in the wheels under $wheels" >&2
        exit 1
    fi
    mv "$found" "$dir/lib/$lib"
done
rm -rf "$unpacked"
echo "MKL $version in $dir; now: export MKLROOT=$dir"
