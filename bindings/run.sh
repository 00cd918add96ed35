#!/usr/bin/env bash
# make test-bindings: the Go (cgo) and Node (N-API) bindings against libflux, then one limit,
# five languages. libflux is installed with `make install` into a temporary prefix and found
# through pkg-config, as a user's machine finds it. Starts its own redis-server on a free
# loopback port and stops it by PID on exit. Ends with "N passed, M failed".
# Needs: go (golang-go), node + /usr/include/node (nodejs, libnode-dev), gcc, g++, pkg-config,
# redis-server, and the project's virtualenv (make build-dev) for the Python process.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/flux-bindings.XXXXXX")
prefix=$tmp/prefix
python=${FLUX_PYTHON:-$repo/.venv/bin/python}
export GOFLAGS=-mod=mod GOPROXY=off # the standard library only: never download a module
export GOCACHE=${GOCACHE:-$HOME/.cache/go-build}

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

redis_pid=""
cleanup() {
    if [[ -n $redis_pid ]]; then
        kill "$redis_pid" 2>/dev/null
        wait "$redis_pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
start_redis() {
    local port
    port=$(free_port) || return 1
    mkdir -p "$tmp/redis"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp/redis" \
        >"$tmp/redis/server.log" 2>&1 &
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
    cat "$tmp/redis/server.log"
    return 1
}

run "make install PREFIX=<tmp>" make --no-print-directory install PREFIX="$prefix"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
# cgo links with pkg-config's flags; the rpath lets the test binaries find libflux.so.0.
export CGO_LDFLAGS="-Wl,-rpath,$prefix/lib"
run "redis-server: start" start_redis

run "go: vet" bash -c "cd bindings/go && go vet ./..."
# The test suites, their output kept to check that, with our redis-server up, no Redis test
# was skipped (go test -v says "--- SKIP", node --test counts "# skipped N").
go_test() {
    (cd bindings/go && go test -v -count=1 ./...) >"$tmp/go-test.out" 2>&1
    local status=$?
    cat "$tmp/go-test.out"
    ((status == 0)) && ! grep -q -- '--- SKIP' "$tmp/go-test.out"
}
node_test() {
    node --test bindings/node/test/ >"$tmp/node-test.out" 2>&1
    local status=$?
    cat "$tmp/node-test.out"
    ((status == 0)) && grep -q '^# skipped 0' "$tmp/node-test.out"
}
run "go: test (embedded, Redis, errors, HitMany)" go_test
run "go: test -race (goroutines sharing limiters)" bash -c "cd bindings/go && go test -race -count=1 ./..."
run "node: build the N-API addon (gcc, no node-gyp)" bash bindings/node/build.sh
run "node: test (embedded, Redis, errors, hitMany, async)" node_test
# The addon's C under AddressSanitizer + UBSan (preloaded into node, which is not built with
# them; V8's own allocations are not leak-checked).
node_asan() {
    gcc -std=c11 -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all \
        -fPIC -shared -Wall -Wextra -Werror -I/usr/include/node bindings/node/src/flux_node.c \
        -o "$tmp/flux-asan.node" $(pkg-config --cflags --libs flux) -Wl,-rpath,"$prefix/lib" || return 1
    env LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
        ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 FLUX_NODE_ADDON="$tmp/flux-asan.node" \
        node --test bindings/node/test/ >"$tmp/node-asan.out" 2>&1
    local status=$?
    cat "$tmp/node-asan.out"
    ((status == 0)) && grep -q '^# fail 0' "$tmp/node-asan.out" &&
        ! grep -qE 'AddressSanitizer|runtime error' "$tmp/node-asan.out"
}
run "node: test with the addon under ASan + UBSan" node_asan

# One limit, five languages: 500 hits from Python, C, C++, Go and Node on one Redis limit of
# 100 per hour pass exactly 100. First 20 hits each, one language after the other (each must
# pass all 20: the 100 are shared, whoever spends them); then 80 each, all five at once (none
# may pass). A language keying the limit differently would pass more than 100.
five() {
    local key_prefix="flux-five:$$:" limit_prefix="interop:" key=client pids=() total=0 i n
    gcc -std=c11 -O1 tests/c/interop.c -o "$tmp/interop_c" $(pkg-config --cflags --libs flux) \
        -Wl,-rpath,"$prefix/lib" || return 1
    g++ -std=c++17 -O1 bindings/interop/interop.cpp -o "$tmp/interop_cpp" \
        $(pkg-config --cflags --libs flux) -Wl,-rpath,"$prefix/lib" || return 1
    (cd bindings/go && go build -o "$tmp/interop_go" ./cmd/interop) || return 1
    local url=$FLUX_TEST_REDIS_URL
    local commands=(
        "$python tests/c/interop.py $url $key_prefix $key"
        "$tmp/interop_c $url $key_prefix $limit_prefix $key"
        "$tmp/interop_cpp $url $key_prefix $limit_prefix $key"
        "$tmp/interop_go $url $key_prefix $limit_prefix $key"
        "node bindings/node/examples_interop.js $url $key_prefix $limit_prefix $key"
    )
    for i in "${!commands[@]}"; do
        n=$(${commands[$i]} 20) || { echo "failed: ${commands[$i]}"; return 1; }
        echo "sequential: $n of 20 allowed: ${commands[$i]%% *}"
        [[ $n -eq 20 ]] || return 1
        total=$((total + n))
    done
    for i in "${!commands[@]}"; do
        ${commands[$i]} 80 >"$tmp/five.$i" &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { echo "failed: ${commands[$i]}"; return 1; }
        n=$(cat "$tmp/five.$i")
        echo "concurrent: $n of 80 allowed: ${commands[$i]%% *}"
        total=$((total + n))
    done
    echo "total allowed: $total of 500"
    [[ $total -eq 100 ]]
}
if [[ -n ${FLUX_TEST_REDIS_URL:-} ]]; then
    run "one limit, five languages (Python, C, C++, Go, Node): 100 of 500 pass" five
    sed -n 's/^/      /; /allowed/p' "$tmp"/one_limit*.log
fi

# The same on one machine with no Redis: the five share one shared-memory region (a file under
# $tmp, removed on exit), the limit prefix "flux:interop:" being Python's ([flux] key_prefix,
# then the limit's name). As above: 20 hits each, one after the other (each must pass all 20),
# then 80 each, all five at once (none may pass): exactly 100 of the 500. Each process is
# bounded by `timeout`.
five_shared() {
    local region="$tmp/shared/region" limit_prefix="flux:interop:" key=client pids=() total=0 i n
    mkdir -p "$tmp/shared"
    gcc -std=c11 -O1 tests/c/shared_interop.c -o "$tmp/shared_interop_c" \
        $(pkg-config --cflags --libs flux) -Wl,-rpath,"$prefix/lib" || return 1
    if [[ ! -x $tmp/interop_cpp ]]; then
        g++ -std=c++17 -O1 bindings/interop/interop.cpp -o "$tmp/interop_cpp" \
            $(pkg-config --cflags --libs flux) -Wl,-rpath,"$prefix/lib" || return 1
    fi
    if [[ ! -x $tmp/interop_go ]]; then
        (cd bindings/go && go build -o "$tmp/interop_go" ./cmd/interop) || return 1
    fi
    local commands=(
        "$python tests/c/shared_interop.py $region $key"
        "$tmp/shared_interop_c $region $limit_prefix $key"
        "$tmp/interop_cpp shared:$region - $limit_prefix $key"
        "$tmp/interop_go shared:$region - $limit_prefix $key"
        "node bindings/node/examples_interop.js shared:$region - $limit_prefix $key"
    )
    for i in "${!commands[@]}"; do
        n=$(timeout 60 ${commands[$i]} 20) || { echo "failed: ${commands[$i]}"; return 1; }
        echo "sequential: $n of 20 allowed: ${commands[$i]%% *}"
        [[ $n -eq 20 ]] || return 1
        total=$((total + n))
    done
    for i in "${!commands[@]}"; do
        timeout 60 ${commands[$i]} 80 >"$tmp/five-shared.$i" &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { echo "failed: ${commands[$i]}"; return 1; }
        n=$(cat "$tmp/five-shared.$i")
        echo "concurrent: $n of 80 allowed: ${commands[$i]%% *}"
        total=$((total + n))
    done
    echo "total allowed: $total of 500"
    rm -rf "$tmp/shared"
    [[ $total -eq 100 ]]
}
run "one limit, five languages on one shared region, no Redis: 100 of 500 pass" five_shared
sed -n 's/^/      /; /allowed/p' "$tmp"/one_limit__five_languages_on*.log

echo
if ((failed > 0)); then
    printf 'failed: %s\n' "${failures[@]}"
fi
echo "bindings: $passed passed, $failed failed"
((failed == 0))
