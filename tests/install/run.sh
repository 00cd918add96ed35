#!/usr/bin/env bash
# make test-install: `make install` into a temporary prefix, then what a user does with it:
# the SONAME and its links (readelf), a C and a C++ program built with
# `pkg-config --cflags --libs flux`, a CMake project with find_package(flux) linking flux::flux
# and flux::flux_static, all run; a DESTDIR staging install; `make uninstall` leaves nothing.
# Ends with "N passed, M failed". Needs cmake, pkg-config, readelf (binutils), gcc, g++.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
here=tests/install
tmp=$(mktemp -d "${TMPDIR:-/tmp}/flux-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
major=${version%%.*}

passed=0
failed=0
failures=()
run() {
    local name=$1 log="$tmp/${1//[^A-Za-z0-9_.-]/_}.log"
    shift
    if "$@" >"$log" 2>&1; then
        passed=$((passed + 1))
        printf 'ok    %s\n' "$name"
    else
        failed=$((failed + 1))
        failures+=("$name")
        printf 'FAIL  %s\n' "$name"
        sed 's/^/      | /' "$log" | tail -n 40
    fi
}

run "make install PREFIX=<tmp>" make --no-print-directory install PREFIX="$prefix"

layout() {
    local lib=$prefix/lib
    for f in include/flux.h include/flux.hpp lib/libflux.a lib/pkgconfig/flux.pc \
        lib/cmake/flux/fluxConfig.cmake lib/cmake/flux/fluxConfigVersion.cmake; do
        [[ -f $prefix/$f ]] || { echo "missing $f"; return 1; }
    done
    [[ -f $lib/libflux.so.$version && ! -L $lib/libflux.so.$version ]] || return 1
    [[ $(readlink "$lib/libflux.so.$major") == "libflux.so.$version" ]] || return 1
    [[ $(readlink "$lib/libflux.so") == "libflux.so.$major" ]] || return 1
    readelf -d "$lib/libflux.so.$version" | tee /dev/stderr |
        grep -q "Library soname: \[libflux.so.$major\]"
}
run "layout: libflux.so.$version, SONAME libflux.so.$major, links, headers" layout

export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
pc_c() {
    [[ $(pkg-config --modversion flux) == "$version" ]] || return 1
    # shellcheck disable=SC2046 # word splitting of pkg-config's flags is intended
    gcc -std=c11 -Wall -Wextra -Werror $here/app.c -o "$tmp/app_pc" $(pkg-config --cflags --libs flux) \
        -Wl,-rpath,"$(pkg-config --variable=libdir flux)" &&
        readelf -d "$tmp/app_pc" | grep -q "NEEDED.*\[libflux.so.$major\]" &&
        "$tmp/app_pc"
}
run "pkg-config: C program builds, records libflux.so.$major, runs" pc_c
pc_cpp() {
    # shellcheck disable=SC2046
    g++ -std=c++17 -Wall -Wextra -Werror $here/app.cpp -o "$tmp/app_pc_cpp" \
        $(pkg-config --cflags --libs flux) -Wl,-rpath,"$(pkg-config --variable=libdir flux)" &&
        "$tmp/app_pc_cpp"
}
run "pkg-config: C++ program with flux.hpp builds and runs" pc_cpp
pc_static() {
    # shellcheck disable=SC2046
    gcc -std=c11 $here/app.c -o "$tmp/app_pc_static" $(pkg-config --cflags flux) \
        "$prefix/lib/libflux.a" $(pkg-config --static --libs-only-l flux | sed 's/-lflux//') &&
        ! readelf -d "$tmp/app_pc_static" | grep -q libflux && "$tmp/app_pc_static"
}
run "pkg-config --static: C program against libflux.a runs" pc_static

cmake_project() {
    cmake -S $here -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release &&
        cmake --build "$tmp/cmake-build" -j 2 &&
        "$tmp/cmake-build/app_shared" && "$tmp/cmake-build/app_static" && "$tmp/cmake-build/app_cpp"
}
run "cmake: find_package(flux 0.1), flux::flux and flux::flux_static build and run" cmake_project
cmake_wrong_version() {
    # 0.x is compatible only with the same 0.x: asking for 0.99 must fail to configure.
    mkdir -p "$tmp/wrong" && sed 's/find_package(flux 0.1 REQUIRED)/find_package(flux 0.99 REQUIRED)/' \
        $here/CMakeLists.txt >"$tmp/wrong/CMakeLists.txt" && cp $here/app.c $here/app.cpp "$tmp/wrong/" &&
        ! cmake -S "$tmp/wrong" -B "$tmp/wrong/build" -DCMAKE_PREFIX_PATH="$prefix"
}
run "cmake: find_package(flux 0.99) is refused" cmake_wrong_version

uninstall() {
    make --no-print-directory uninstall PREFIX="$prefix" &&
        [[ -z $(find "$prefix" -type f -o -type l) ]] || { find "$prefix"; return 1; }
}
run "make uninstall leaves no file" uninstall

destdir() {
    local stage=$tmp/stage
    make --no-print-directory install DESTDIR="$stage" PREFIX=/opt/flux &&
        [[ -f $stage/opt/flux/lib/libflux.so.$version && -f $stage/opt/flux/include/flux.h ]] &&
        grep -qx 'prefix=/opt/flux' "$stage/opt/flux/lib/pkgconfig/flux.pc" &&
        make --no-print-directory uninstall DESTDIR="$stage" PREFIX=/opt/flux &&
        [[ -z $(find "$stage" -type f -o -type l) ]]
}
run "DESTDIR staging: files under DESTDIR, flux.pc names PREFIX; uninstall" destdir

echo
if ((failed > 0)); then
    printf 'failed: %s\n' "${failures[@]}"
fi
echo "tests/install: $passed passed, $failed failed"
((failed == 0))
