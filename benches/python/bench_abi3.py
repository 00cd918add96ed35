"""abi3 vs per-version (native) builds of flux._flux: the cost of a hit from Python.

pyo3's ``abi3-py310`` builds one module for every CPython from 3.10 on, through the stable
ABI only; a per-version build may use CPython internals (inlined macros, direct struct access)
that the stable ABI hides behind function calls. Whether that shows on flux's hit path decides
which wheel `make wheel` ships, so it is measured here, both builds in one run.

Driver (the default): ``--native DIR --abi3 DIR`` name two ``pip install --target``
directories holding the two builds. Both builds are imported by the same interpreter, each in
its own child process (both are ``flux._flux``), the children taking turns round by round so
that noise on the shared machine falls on both alike. Prints the median ns per hit of each and
the ratio abi3 / native. Child mode (``--child``) times one build and prints JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

HOT_KEY = "user:42"


def child(keys: int, batches: int) -> None:
    """Times ``RateLimiter.hit`` in batches: one hot key (denied), then distinct keys."""
    import flux._flux as native
    from flux import RateLimiter

    limiter = RateLimiter(100, 60)
    hot = [HOT_KEY] * keys
    distinct = [f"user:{i}" for i in range(keys)]
    hit = limiter.hit
    out: dict[str, object] = {"module": native.__file__}
    gc.disable()
    for name, batch in (("hot", hot), ("distinct", distinct)):
        per_hit = []
        for _ in range(batches):
            start = time.perf_counter_ns()
            for key in batch:
                hit(key)
            per_hit.append((time.perf_counter_ns() - start) / len(batch))
        out[name] = statistics.median(per_hit)
    gc.enable()
    print(json.dumps(out))


def driver(native_dir: str, abi3_dir: str, rounds: int, keys: int, batches: int) -> None:
    results: dict[str, dict[str, list[float]]] = {"native": {}, "abi3": {}}
    builds = [("native", os.path.abspath(native_dir)), ("abi3", os.path.abspath(abi3_dir))]
    modules = {}
    for round_number in range(rounds):
        # Alternate who goes first, so neither build always runs on a warmer machine.
        for name, path in builds if round_number % 2 == 0 else builds[::-1]:
            env = dict(os.environ, PYTHONPATH=path)
            env.pop("FLUX_CONFIG", None)
            command = [sys.executable, __file__, "--child", "--keys", str(keys)]
            done = subprocess.run(
                [*command, "--batches", str(batches)],
                env=env,
                cwd=path,  # never the repo's flux/ (which holds a dev build)
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(done.stdout)
            modules[name] = row.pop("module")
            # Never time the virtualenv's own flux by mistake (an editable dev install).
            assert modules[name].startswith(path + os.sep), (name, modules[name])
            for scenario, ns in row.items():
                results[name].setdefault(scenario, []).append(ns)
    for name, module in modules.items():
        print(f"   {name:6}: {os.path.basename(module)}")
    print(f"{'scenario':<30}{'native ns/hit':>15}{'abi3 ns/hit':>15}{'abi3/native':>14}")
    for scenario in ("hot", "distinct"):
        native = statistics.median(results["native"][scenario])
        abi3 = statistics.median(results["abi3"][scenario])
        label = "one hot key (denied)" if scenario == "hot" else f"{keys} distinct keys"
        print(f"{label:<30}{native:>15.1f}{abi3:>15.1f}{abi3 / native:>13.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--native")
    parser.add_argument("--abi3")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    if args.child:
        child(args.keys, args.batches)
    else:
        driver(args.native, args.abi3, args.rounds, args.keys, args.batches)


if __name__ == "__main__":
    main()
