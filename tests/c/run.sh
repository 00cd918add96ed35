#!/usr/bin/env bash
# make test-c: the C and C++ programs in tests/c against libflux, built with
# -Wall -Wextra -Wpedantic -Werror; each run with AddressSanitizer + UBSan, again (a separate
# non-sanitized build) under valgrind with no leaks, once statically linked; the include guard
# in C and C++; the library's exports against the header; the shared vectors replayed.
# Honours CARGO_TARGET_DIR (default: <repo>/target), CC and CXX. Ends with "N passed, M failed".
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
target=$(realpath -m "${CARGO_TARGET_DIR:-$repo/target}")
lib="$target/release"
build="$target/c-tests"
CC=${CC:-gcc}
CXX=${CXX:-g++}
rm -rf "$build" && mkdir -p "$build" # never run a stale binary

passed=0
failed=0
failures=()

# run NAME COMMAND...: one test; its output goes to $build/NAME.log, shown when it fails.
run() {
    local name=$1 log="$build/${1//[^A-Za-z0-9_.-]/_}.log"
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

summary() {
    echo
    if ((failed > 0)); then
        printf 'failed: %s\n' "${failures[@]}"
    fi
    echo "tests/c: $passed passed, $failed failed"
    ((failed == 0))
    exit
}

echo "building libflux (cargo build --release -p flux-ffi) into $target"
if ! cargo build --release -p flux-ffi --quiet; then
    failed=$((failed + 1))
    failures+=("cargo build --release -p flux-ffi")
    summary
fi

# The workspace version from Cargo.toml, for the header's version macros.
read -r version major minor patch < <(python3 - <<'PY'
import re, tomllib
version = tomllib.load(open("Cargo.toml", "rb"))["workspace"]["package"]["version"]
major, minor, patch = re.match(r"(\d+)\.(\d+)\.(\d+)", version).groups()
print(version, major, minor, patch)
PY
)
# libflux.so's SONAME is libflux.so.MAJOR (ffi/build.rs): the programs below record that name,
# so the loader needs it beside libflux.so (make install creates the same link).
ln -sf libflux.so "$lib/libflux.so.$major"
echo "Cargo.toml version $version; compilers: $($CC --version | head -n 1); $($CXX --version | head -n 1)"

warnings=(-Wall -Wextra -Wpedantic -Werror)
sanitize=(-g -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
plain=(-g -O1)
shared=(-L"$lib" -lflux -Wl,-rpath,"$lib")
static=("$lib/libflux.a" -lpthread -ldl -lm)
version_defines=(-DEXPECT_VERSION="\"$version\"" -DEXPECT_MAJOR="$major"
    -DEXPECT_MINOR="$minor" -DEXPECT_PATCH="$patch")
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
valgrind=(valgrind -q --error-exitcode=1 --leak-check=full
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect)

c_flags=(-std=c11 -pthread -Iinclude "${warnings[@]}" "${version_defines[@]}")
cxx_flags=(-std=c++17 -pthread -Iinclude "${warnings[@]}")

run "vectors: JSON to lines" \
    bash -c "python3 tests/c/vectors_to_lines.py tests/vectors/*.json > '$build/vectors.lines'"

# program NAME COMPILER SOURCE FLAGS...: builds NAME twice, with sanitizers and without (for
# valgrind: the two cannot share a binary).
program() {
    local name=$1 compiler=$2 source=$3
    shift 3
    run "$name: build (asan+ubsan)" \
        "$compiler" "$@" "${sanitize[@]}" "tests/c/$source" -o "$build/$name.asan" "${shared[@]}"
    run "$name: build (for valgrind)" \
        "$compiler" "$@" "${plain[@]}" "tests/c/$source" -o "$build/$name" "${shared[@]}"
}

for name in test_api test_threads test_vectors test_redis test_refund; do
    program "$name" "$CC" "$name.c" "${c_flags[@]}"
done
program test_cpp "$CXX" test_cpp.cpp "${cxx_flags[@]}"
program test_hpp "$CXX" test_hpp.cpp "${cxx_flags[@]}"

# run_program NAME ARGS...: the asan build, then the plain build under valgrind.
run_program() {
    local name=$1
    shift
    # A deadlock must fail the run, not hang it.
    run "$name (asan+ubsan)" timeout 600 "$build/$name.asan" "$@"
    if command -v valgrind >/dev/null; then
        run "$name (valgrind)" timeout 600 "${valgrind[@]}" "$build/$name" "$@"
    else
        run "$name (valgrind): valgrind is not installed" false
    fi
}
run_program test_api
run_program test_threads
run_program test_refund
run_program test_vectors "$build/vectors.lines"
run_program test_cpp
# include/flux.hpp (its Redis part runs again below, once our redis-server is up).
run_program test_hpp
# Redis: our own redis-server on a free loopback port, stopped by PID when this script exits;
# and a port nobody listens on, for the fail-open and fail-closed paths.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
redis_pid=""
stop_redis() {
    if [[ -n "$redis_pid" ]]; then
        kill "$redis_pid" 2>/dev/null
        wait "$redis_pid" 2>/dev/null
        redis_pid=""
    fi
}
trap stop_redis EXIT
start_redis() {
    local port dir="$build/redis"
    command -v redis-server >/dev/null || {
        echo "redis-server is not installed (make redis-server installs it)"
        return 1
    }
    port=$(free_port) || return 1
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
        >"$dir/server.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 100); do
        if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
            export FLUX_TEST_REDIS_URL="redis://127.0.0.1:$port"
            export FLUX_TEST_DEAD_URL="redis://127.0.0.1:$(free_port)"
            echo "redis-server (pid $redis_pid) on port $port"
            return 0
        fi
        sleep 0.1
    done
    cat "$dir/server.log"
    return 1
}
run "redis-server: start" start_redis
# One limit, two languages: 60 hits from C and 60 from Python against 100 per hour on one
# Redis key must pass exactly 100 in total. Python is the project's virtualenv (make build-dev).
python=${FLUX_PYTHON:-$repo/.venv/bin/python}
interop() {
    local key_prefix="flux-interop:$$:" c_allowed py_allowed
    c_allowed=$("$build/interop" "$FLUX_TEST_REDIS_URL" "$key_prefix" "interop:" client 60) || return 1
    py_allowed=$("$python" tests/c/interop.py "$FLUX_TEST_REDIS_URL" "$key_prefix" client 60) ||
        return 1
    echo "allowed: $c_allowed from C + $py_allowed from Python"
    [[ $((c_allowed + py_allowed)) -eq 100 && $c_allowed -eq 60 ]]
}
if [[ -n "${FLUX_TEST_REDIS_URL:-}" ]]; then
    run_program test_redis
    run_program test_hpp # include/flux.hpp, now with its Redis part
    run "interop: build" "$CC" "${c_flags[@]}" -O1 tests/c/interop.c -o "$build/interop" \
        "${shared[@]}"
    run "interop: C and Python share one limit on one Redis" interop
else
    run "test_redis: no redis-server" false
fi
stop_redis

# One failure behaviour, two languages: against the Redis just stopped, the same calls from C
# and from Python, on a store failing open and on one failing closed, print the same lines.
failure_interop() {
    local c_lines py_lines
    c_lines=$("$build/failure_interop" "$FLUX_TEST_REDIS_URL") || return 1
    py_lines=$("$python" tests/c/failure_interop.py "$FLUX_TEST_REDIS_URL") || return 1
    echo "C:"
    echo "$c_lines"
    echo "Python:"
    echo "$py_lines"
    [[ -n "$c_lines" && "$c_lines" == "$py_lines" ]]
}
if [[ -n "${FLUX_TEST_REDIS_URL:-}" ]]; then
    run "failure interop: build" "$CC" "${c_flags[@]}" -O1 tests/c/failure_interop.c \
        -o "$build/failure_interop" "${shared[@]}"
    run "failure interop: C and Python fail open and closed alike on a stopped Redis" \
        failure_interop
fi

# One limit, two languages, no server: 60 hits from C, then 60 from Python, against 100 per
# hour on one key of one shared-memory region must pass exactly 100 in total. Then C clears
# the region (one key held) and Python finds the key back at full capacity.
shared_interop() {
    local region="$build/shared-interop-region" c_allowed py_allowed cleared py_after
    rm -f "$region"
    c_allowed=$("$build/shared_interop" "$region" "flux:interop:" client 60) || return 1
    py_allowed=$("$python" tests/c/shared_interop.py "$region" client 60) || return 1
    cleared=$("$build/shared_interop" "$region" --clear) || return 1
    py_after=$("$python" tests/c/shared_interop.py "$region" client 60) || return 1
    rm -f "$region"
    echo "allowed: $c_allowed from C + $py_allowed from Python; cleared $cleared;" \
        "then $py_after from Python"
    [[ $((c_allowed + py_allowed)) -eq 100 && $c_allowed -eq 60 && $cleared -eq 1 &&
        $py_after -eq 60 ]]
}
run "shared interop: build" "$CC" "${c_flags[@]}" -O1 tests/c/shared_interop.c \
    -o "$build/shared_interop" "${shared[@]}"
run "shared interop: C and Python share one limit in one shared-memory region" shared_interop

run "test_api: build against libflux.a" \
    "$CC" "${c_flags[@]}" -O2 tests/c/test_api.c -o "$build/test_api.static" "${static[@]}"
run "test_api (static libflux.a)" "$build/test_api.static"

# The README's example as users copy it: warning-free as C and as C++ (-Wextra includes
# -Wmissing-field-initializers, which `options = {0}` trips in C++), and it runs.
python3 tests/c/readme_example.py README.md >"$build/readme_example.c"
run "README example: C" \
    "$CC" "${c_flags[@]}" "$build/readme_example.c" -o "$build/readme_c" "${static[@]}"
run "README example: C++" "$CXX" "${cxx_flags[@]}" -x c++ "$build/readme_example.c" -x none \
    -o "$build/readme_cxx" "${static[@]}"
run "README example: runs" "$build/readme_c"

# The include guard and a clean header under every standard and more warnings.
header_warnings=(-Wstrict-prototypes -Wmissing-prototypes -Wconversion -Wsign-conversion
    -Wold-style-definition -Wshadow)
for std in c99 c11 c17; do
    run "double include ($std)" "$CC" -std="$std" -Iinclude "${warnings[@]}" \
        "${header_warnings[@]}" tests/c/double_include.c -o "$build/double_include.$std" \
        "${shared[@]}"
done
for std in c++11 c++17 c++20; do
    run "double include ($std)" "$CXX" -x c++ -std="$std" -Iinclude "${warnings[@]}" \
        -Wconversion -Wsign-conversion -Wshadow -Wold-style-cast tests/c/double_include.c \
        -o "$build/double_include.$std" "${shared[@]}"
done
run "double include (run)" "$build/double_include.c99"
# flux.hpp alone, under C++17 and C++20 with the stricter warnings.
for std in c++17 c++20; do
    run "flux.hpp ($std, -Wconversion -Wshadow -Wold-style-cast)" "$CXX" -x c++ -std="$std" \
        -Iinclude "${warnings[@]}" -Wconversion -Wsign-conversion -Wshadow -Wold-style-cast \
        -fsyntax-only include/flux.hpp
done

# Every function the header declares is exported by libflux.so, and nothing else is.
exports_match_header() {
    local declared exported
    # Declarations start in column 0 (comments are indented).
    declared=$(grep -E '^[a-z]' include/flux.h | grep -oE '\bflux_[a-z0-9_]+\(' | tr -d '(' |
        sort -u)
    exported=$(nm -D --defined-only "$lib/libflux.so" | awk '$2 == "T" {print $3}' | sort -u)
    if [[ "$declared" != "$exported" ]]; then
        diff <(echo "$declared") <(echo "$exported")
        return 1
    fi
    echo "$(wc -l <<<"$declared") functions, all exported"
}
run "libflux.so exports exactly the header's functions" exports_match_header

summary
