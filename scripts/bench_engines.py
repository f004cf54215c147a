"""Benchmark of the primal and reduced engines: seconds per run against d, steady state (compile excluded).
Writes its section of docs/benchmarks.md (the paper's grid from a fresh process: scripts/bench_sweep.py).

    python scripts/bench_engines.py     # minutes: d up to 10⁶; rewrites its section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse

from jaxbo.cli import use_cpu_cores

use_cpu_cores()

import jax  # noqa: E402
from _bench import machine, timed, write_section  # noqa: E402

import jaxbo  # noqa: E402

DIMENSIONS = (250, 1000, 4000, 16000, 100_000, 1_000_000)
PRIMAL_LIMIT = 1_000_000  # final-only runs hold only the n·T × d training tokens: 640 MB at d = 10⁶


def seconds_per_run(engine: str, d: int, runs: int, repeats: int = 3) -> float:
    """Steady-state seconds per run (compiled once first), ``runs`` seeds vmapped in one call."""
    run = jax.jit(jax.vmap(jaxbo.make_run(jaxbo.Config(d=d), log_history=False, engine=engine)))
    keys = jax.random.split(jax.random.key(0), runs)
    timed(run, keys)  # compile
    return min(timed(run, keys)[1] for _ in range(repeats)) / runs


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)  # first: --help prints this and writes nothing
    rows = []
    for d in DIMENSIONS:
        reduced = seconds_per_run("reduced", d, 32)
        primal = seconds_per_run("primal", d, 1, repeats=3 if d <= 16000 else 1) if d <= PRIMAL_LIMIT else None
        primal_text = f"{primal * 1e3:.1f} ms" if primal else "not run"
        ratio = f"{primal / reduced:.0f}×" if primal else "—"
        rows.append(f"| {d:,} | {primal_text} | {reduced * 1e3:.2f} ms | {ratio} |")
        print(rows[-1], flush=True)
    body = f"""## Engines against d (`scripts/bench_engines.py`)

Machine: {machine()}.

Seconds per run at paper defaults (n = 20, T = 8, 1000 steps, 1000 test samples, final metrics only, so
the test set is the exact 4-coordinate draw of `data.sample_test_projected` in both engines), steady state
after compilation, compile excluded (warm; d >= 10⁵: one timed call); primal runs one at a time, reduced
runs 32 vmapped seeds per call (its intended use); one CPU device, i.e. one core, per call:

| d | primal | reduced | primal / reduced |
|---|---|---|---|
{chr(10).join(rows)}
"""
    write_section("bench_engines", body)
    print("wrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
