#!/usr/bin/env bash
# make bench, Python part: flux's embedded store from Python beside `limits` and
# rust-py-rate-limit, interleaved in one run (bench_memory.py), then memory per idle key
# (bench_memory_per_key.py), the shared-memory store against the per-process one
# (bench_shared.py). Reports PASS/FAIL against the README's targets but never fails on a
# number.
#
# Runs in its own virtualenv, .bench-venv at the repo root, so the dev venv (.venv) gets no
# benchmark dependencies. flux goes in as a release wheel built by maturin from this tree; the
# wheel is rebuilt only when the sources change (a fingerprint is kept in the venv), so a
# second run goes straight to the benchmarks.
#
# Environment: PYTHON (interpreter for the venv, default python3), BENCH_VENV (default
# <repo>/.bench-venv), BENCH_KEYS (distinct keys, default 1000000, as tests/c/bench.sh).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
here=benches/python
venv=${BENCH_VENV:-$repo/.bench-venv}
python=${PYTHON:-python3}
keys=${BENCH_KEYS:-1000000}

# Pinned so that runs months apart compare the same competitors.
limits_req='limits==5.8.0'
redis_req='redis==8.1.0' # limits needs redis-py for its Redis storage
# The decorator benchmark's frameworks and competitors.
web_reqs=('Flask==3.1.3' 'Werkzeug==3.1.9' 'fastapi==0.165.0' 'starlette==1.10.0' 'Flask-Limiter==4.1.1' 'slowapi==0.1.10')
rpl_req='rust-py-rate-limit==0.3.1'

vpy="$venv/bin/python"
pip() { "$vpy" -m pip --disable-pip-version-check -q "$@"; }
# -I: never import flux from the working directory (the repo's flux/ holds a dev build).
importable() { "$vpy" -I -c "import $1" >/dev/null 2>&1; }
pyversion() { "$1" -c 'import sys; print(sys.version)'; }

started=$SECONDS

# 1. The virtualenv and the competitors.
deps_id="$(pyversion "$python") | $limits_req | $redis_req | ${web_reqs[*]}"
if [[ ! -x $vpy || ! -f $venv/.bench-deps || $(cat "$venv/.bench-deps") != "$deps_id" ]]; then
    echo "== creating $venv =="
    rm -rf "$venv"
    "$python" -m venv "$venv"
    pip install "$limits_req" "$redis_req" "${web_reqs[@]}"
    echo "$deps_id" >"$venv/.bench-deps"
fi
if ! importable rust_py_rate_limit; then
    echo "== installing $rpl_req =="
    if ! pip install "$rpl_req" 2>"$venv/rpl-install.log"; then
        echo "!! rust-py-rate-limit could NOT be installed for $("$vpy" -V 2>&1):"
        tail -n 15 "$venv/rpl-install.log" | sed 's/^/!!   /'
        echo "!! the benchmarks go on without it (its rows and its target are marked SKIP)."
    fi
fi

# 2. flux, as a release wheel of this tree (rebuilt only when the sources changed).
fingerprint=$(
    {
        pyversion "$vpy"
        git ls-files -co --exclude-standard -- Cargo.toml Cargo.lock pyproject.toml \
            core ffi flux ':!core/tests' ':!core/benches' ':!ffi/tests' |
            sort | while read -r f; do if [[ -f $f ]]; then sha256sum "$f"; fi; done
    } | sha256sum | cut -d' ' -f1
)
if [[ ! -f $venv/.flux-fingerprint || $(cat "$venv/.flux-fingerprint") != "$fingerprint" ]] ||
    ! importable flux._flux; then
    echo "== building the flux wheel (maturin, release) =="
    # Build for .venv's interpreter when it is the same Python, so that cargo reuses what
    # `make build-dev` just compiled instead of rebuilding pyo3 for another interpreter path.
    interp=$vpy
    if [[ -x .venv/bin/python && $(pyversion .venv/bin/python) == "$(pyversion "$vpy")" ]]; then
        interp=.venv/bin/python
    fi
    if [[ -x .venv/bin/maturin ]]; then
        maturin=.venv/bin/maturin
    else
        pip install 'maturin>=1.5,<2'
        maturin=$venv/bin/maturin
    fi
    rm -rf "$venv/wheels"
    "$maturin" build --release --quiet -i "$interp" -o "$venv/wheels"
    wheel=$(ls "$venv"/wheels/flux_ratelimit-*.whl)
    pip install --force-reinstall --no-deps "$wheel"
    pip install "$wheel" # the dependencies, if this Python needs any
    echo "$fingerprint" >"$venv/.flux-fingerprint"
else
    echo "== flux wheel up to date (sources unchanged since the last bench build) =="
fi
echo "   setup took $((SECONDS - started)) s"
echo

# 3. The benchmarks, with flux's defaults: no FLUX_CONFIG, and run from the venv's directory,
# as flux also reads ./flux.toml and ./config/flux.toml.
bench() {
    (cd "$venv" && env -u FLUX_CONFIG -u FLUX_REDIS_URL "$vpy" "$repo/$here/$1" --keys "$keys")
}
bench bench_memory.py
echo
bench bench_memory_per_key.py
echo
bench bench_analytics.py
echo
bench bench_shared.py
echo
bench bench_redis.py
echo
bench bench_decorators.py
echo
bench bench_policies.py
echo
echo "Python benchmarks took $((SECONDS - started)) s in all"
