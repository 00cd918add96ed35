#!/usr/bin/env bash
# make bench, abi3 row: the hit path of an abi3-py310 build of flux._flux against a
# per-version (native) build for the same interpreter, both measured in one run
# (bench_abi3.py). Decides which wheel `make wheel` ships; never fails on a number.
# The native build shares target/ with `make build-dev` (same features: nothing to rebuild);
# the abi3 build has its own target directory so the two never invalidate each other.
# Environment: PYTHON (default <repo>/.venv/bin/python, from make venv).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
python=${PYTHON:-$repo/.venv/bin/python}
maturin=$repo/.venv/bin/maturin
work=$repo/target/bench-abi3
rm -rf "$work/wheels" "$work/native" "$work/abi3"
mkdir -p "$work/wheels"

echo "== building flux._flux twice (native, then abi3-py310) =="
"$maturin" build --release --quiet -i "$python" -o "$work/wheels/native"
CARGO_TARGET_DIR=$work/target "$maturin" build --release --quiet -i "$python" \
    --features abi3 -o "$work/wheels/abi3"
for kind in native abi3; do
    "$python" -m pip --disable-pip-version-check -q install --no-deps --target "$work/$kind" \
        "$work/wheels/$kind"/flux_ratelimit-*.whl
done
echo "== abi3 vs native: RateLimiter.hit from $("$python" -V) =="
"$python" benches/python/bench_abi3.py --native "$work/native" --abi3 "$work/abi3"
