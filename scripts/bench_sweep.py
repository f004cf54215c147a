"""Benchmark of ``jaxbo.sweep`` (issue: sweep): one compiled call against a Python loop over ``simulate``,
and the paper's 39 × 39 grid with 1 seed. Writes its section of docs/benchmarks.md.

    python scripts/bench_sweep.py [--skip-primal-grid]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from jaxbo.cli import use_cpu_cores

use_cpu_cores()

import jax  # noqa: E402
from _bench import machine, timed, write_section  # noqa: E402

import jaxbo  # noqa: E402

PAPER_GRID = {"d": [250 + 125 * i for i in range(39)], "signal_norm": [5 + 2.5 * i for i in range(39)]}


def loop_versus_sweep(engine: str) -> tuple[float, float, int]:
    """Seconds for the same runs as a Python loop over simulate and as one sweep (both from a cold cache)."""
    grid = {"d": [250, 500, 750, 1000], "signal_norm": [5.0 * 2**i for i in range(8)]}
    seeds = 4
    config = jaxbo.Config()
    start = time.perf_counter()
    for d in grid["d"]:
        for signal_norm in grid["signal_norm"]:
            for seed in range(seeds):
                coordinates = {"d": d, "signal_norm": signal_norm}
                key = jaxbo.sweep_module.run_key(0, seed, coordinates)  # the sweep's own run keys
                jax.block_until_ready(jaxbo.simulate(key, config.replace(**coordinates), engine=engine).final)
    loop = time.perf_counter() - start
    _, swept = timed(jaxbo.sweep, grid, seeds=seeds, config=config, engine=engine, progress=False)
    return loop, swept, len(grid["d"]) * len(grid["signal_norm"]) * seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-primal-grid", action="store_true", help="skip the slow primal 39 × 39 run")
    args = parser.parse_args()
    rows = []
    for engine in ("primal", "reduced"):
        loop, swept, runs = loop_versus_sweep(engine)
        rows.append(
            f"| {engine} | {runs} | {loop:.1f} s ({runs / loop:.1f} runs/s) | {swept:.1f} s "
            f"({runs / swept:.1f} runs/s) | {loop / swept:.1f}× |"
        )
        print(rows[-1], flush=True)
    grid_rows = []
    for engine in ("reduced", "primal"):
        if engine == "primal" and args.skip_primal_grid:
            continue
        result, seconds = timed(jaxbo.sweep, PAPER_GRID, seeds=1, engine=engine, progress=True)
        counts = np.bincount(result.majority_regime().ravel(), minlength=3)
        plan = result.metadata["plan"]
        grid_rows.append(
            f"| {engine} | 1521 | {seconds:.1f} s | {plan['compiles']} | {counts[0]} / {counts[1]} / {counts[2]} |"
        )
        print(grid_rows[-1], flush=True)
    body = f"""## Sweep against a loop over `simulate` (`scripts/bench_sweep.py`)

Machine: {machine()}.

Same runs (d ∈ {{250, 500, 750, 1000}} × ‖μ‖ ∈ {{5, 10, …, 640}} × 4 seeds, paper defaults: 1000 steps, 1000 test
samples), both from a cold compilation cache:

| engine | runs | Python loop over `simulate` | one `jaxbo.sweep` call | speed-up |
|---|---|---|---|---|
{chr(10).join(rows)}

The paper's 39 × 39 grid (d = 250 + 125i, ‖μ‖ = 5 + 2.5i, i = 0…38), 1 seed, 1000 steps, 1000 test samples
(the authors' code: ≈ 88 hours on a 2-core CPU, one process per cell):

| engine | runs | wall time | compiles | cells benign / harmful / not overfitting |
|---|---|---|---|---|
{chr(10).join(grid_rows)}
"""
    write_section("bench_sweep", body)
    print("wrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
