#!/usr/bin/env bash
# make bench, C part: the embedded store through the C ABI (tests/c/bench.c), linked against
# libflux.so as users link it and against libflux.a. Prints medians, p99s and ratios to a
# baseline measured in the same run; never fails on timing. Honours CARGO_TARGET_DIR (default
# <repo>/target), CC and BENCH_KEYS (default 1000000).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
target=$(realpath -m "${CARGO_TARGET_DIR:-$repo/target}")
lib="$target/release"
build="$target/c-bench"
CC=${CC:-gcc}
keys=${BENCH_KEYS:-1000000}
mkdir -p "$build"

cargo build --release -p flux-ffi --quiet
# The SONAME (libflux.so.MAJOR, see ffi/build.rs) must resolve in the tree too.
major=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\([0-9]*\)\..*/\1/p' Cargo.toml)
ln -sf libflux.so "$lib/libflux.so.$major"
flags=(-std=c11 -O2 -Wall -Wextra -Wpedantic -Werror -Iinclude)
"$CC" "${flags[@]}" tests/c/bench.c -o "$build/bench" -L"$lib" -lflux -Wl,-rpath,"$lib"
"$CC" "${flags[@]}" tests/c/bench.c -o "$build/bench.static" "$lib/libflux.a" -lpthread -ldl -lm

echo "== C ABI, libflux.so =="
"$build/bench" "$keys"
echo
echo "== C ABI, libflux.a =="
"$build/bench.static" "$keys"
