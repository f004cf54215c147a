"""Benchmark of the t → ∞ limit's cost: the paper's grid (39 × 39) × 10 seeds with and without `limit=True`,
in fresh processes, alternating, cold (empty compilation cache) and steady (the same sweep again in that
process). Writes its section of docs/benchmarks.md.

    python scripts/bench_limit.py [--repeats 3]     # about 4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

from _bench import machine, span, write_section

# A user's fresh process: import, every core, the sweep with or without its limit, then the same sweep again.
FRESH = textwrap.dedent("""
    import time
    started = time.perf_counter()
    import json, sys, jax
    import jaxbo
    jaxbo.use_cpu_cores()
    jax.config.update("jax_compilation_cache_dir", sys.argv[1])
    grid = {"d": [250 + 125 * i for i in range(39)], "signal_norm": [5 + 2.5 * i for i in range(39)]}
    limit = sys.argv[2] == "limit"
    result = jaxbo.sweep(grid, seeds=10, limit=limit, progress=False)
    wall = time.perf_counter() - started
    steady = jaxbo.sweep(grid, seeds=10, limit=limit, progress=False).metadata["elapsed_s"]
    settled = float(result.settled_fraction().mean()) if limit else None
    print(json.dumps({"wall": wall, "compile": result.metadata["compile_s"], "steady": steady, "settled": settled}))
""")


def fresh_process(limit: bool) -> dict:
    environment = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    with tempfile.TemporaryDirectory() as cache:
        done = subprocess.run(
            [sys.executable, "-c", FRESH, cache, "limit" if limit else "plain"],
            capture_output=True,
            text=True,
            env=environment,
            check=True,
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per design")
    args = parser.parse_args(argv)  # first: --help prints this and writes nothing
    measured = {False: [], True: []}
    for _ in range(args.repeats):
        for limit in (False, True):  # alternating, so a drift of the machine hits both alike
            measured[limit].append(fresh_process(limit))
            print(limit, measured[limit][-1], flush=True)

    def ratio(name: str) -> float:
        return statistics.median(n[name] for n in measured[True]) / statistics.median(n[name] for n in measured[False])

    rows = [
        f"| {'with the limit' if limit else 'without'} | {span([n['wall'] for n in numbers])} | "
        f"{span([n['compile'] for n in numbers])} | {span([n['steady'] for n in numbers])} |"
        for limit, numbers in measured.items()
    ]
    settled = statistics.median(n["settled"] for n in measured[True])
    body = f"""## The t → ∞ limit's cost (`scripts/bench_limit.py`)

Machine: {machine()}. The paper's grid (39 × 39) × 10 seeds = 15,210 runs, reduced engine, final metrics only,
{args.repeats} fresh processes per design, alternating; *wall*: the process from its start to the first sweep's
result, compile included, from an empty compilation cache; *steady*: the same sweep again in that process.

| sweep | wall | compile | steady |
|---|---|---|---|
{chr(10).join(rows)}

With the limit / without (medians): **{ratio("wall"):.2f}×** wall, **{ratio("steady"):.2f}×** steady (target:
at most 1.5×). {settled:.0%} of the runs are settled at the paper's 1000 steps.
"""
    write_section("bench_limit", body)
    print(body)


if __name__ == "__main__":
    main()
