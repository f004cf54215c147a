"""Benchmark of the kernel engines (W and p trained): seconds per run against d for the kernel and primal
paths, where a kernel run's time goes, and the paper's Figure-5 grid (39 × 39 × 1 seed, W and p trained); then
the reduced kernel engine (Gaussian W₀, 2 + nT coordinates): seconds per run from d = 250 to 10⁶ and the same
grid, cold, in the same process. Writes its section of docs/benchmarks.md.

    python scripts/bench_kernel.py     # minutes: the Figure-5 grid; rewrites its section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from jaxbo.cli import use_cpu_cores

use_cpu_cores()

import jax  # noqa: E402
import numpy as np  # noqa: E402
from _bench import machine, span, timed, write_section  # noqa: E402

import jaxbo  # noqa: E402
from jaxbo import data, kernel_form, model  # noqa: E402

PAPER_GRID = {"d": [250 + 125 * i for i in range(39)], "signal_norm": [5 + 2.5 * i for i in range(39)]}
DIMENSIONS = (250, 1000, 2000, 5000)
TRAINED = jaxbo.Config(attention="trained")
GAUSSIAN = TRAINED.replace(weight_init="gaussian")
REDUCED_DIMENSIONS = (250, 5000, 10**4, 10**6)


def seconds_per_run(engine: str, d: int, runs: int, config: jaxbo.Config = TRAINED) -> float:
    """Steady seconds per run (compiled first), ``runs`` seeds vmapped in one call, final metrics only."""
    run = jax.jit(jax.vmap(jaxbo.make_run(config.replace(d=d), log_history=False, engine=engine)))
    keys = jax.random.split(jax.random.key(0), runs)
    timed(run, keys)
    return min(timed(run, keys)[1] for _ in range(2 if d <= 2000 else 1)) / runs


def setup_parts(d: int) -> tuple[float, float]:
    """Steady seconds of W₀'s draw and of M = W₀Xᵀ, K, G for one run at d."""
    config = TRAINED.replace(d=d)
    draw = jax.jit(lambda key: model.random_weights(key, config, d))
    tokens = data.sample(jax.random.key(1), config, config.n_train, flip=True).tokens
    W0 = draw(jax.random.key(2))
    prepare = jax.jit(kernel_form.prepare)
    timed(draw, jax.random.key(3))
    timed(prepare, W0, tokens)
    return timed(draw, jax.random.key(4))[1], timed(prepare, W0, tokens)[1]


#: The Gaussian Figure-5 grid alone, in a process of its own: the wall a user's script sees, compile included.
FRESH = """
import time
import jaxbo
jaxbo.use_cpu_cores()
started = time.perf_counter()
jaxbo.sweep({grid!r}, seeds=1, config=jaxbo.Config(attention="trained", weight_init="gaussian"), progress=False)
print(time.perf_counter() - started)
"""


def fresh_gaussian_walls(repeats: int = 2) -> list[float]:
    """Seconds of the Gaussian Figure-5 grid, each in a fresh Python process (no compiled program reused)."""
    program = FRESH.format(grid=PAPER_GRID)
    runs = [subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)]
    runs += [subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
             for _ in range(repeats - 1)]  # fmt: skip
    return [float(run.stdout.split()[-1]) for run in runs]


def reduced_kernel_rows() -> list[str]:
    """Rows of the reduced kernel engine's steady seconds per run at ``REDUCED_DIMENSIONS``."""
    seconds = {d: seconds_per_run("reduced_kernel", d, 8, GAUSSIAN) for d in REDUCED_DIMENSIONS}
    base = seconds[REDUCED_DIMENSIONS[0]]
    return [f"| {d:,} | {value * 1e3:.1f} ms | {value / base:.2f}× |" for d, value in seconds.items()]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)  # first: --help prints this and writes nothing
    rows, primal_cost = [], {}
    for d in DIMENSIONS:
        kernel_seconds = seconds_per_run("kernel", d, 4)
        primal_seconds = seconds_per_run("primal", d, 1)
        primal_cost[d] = primal_seconds
        draw, prepare = setup_parts(d)
        rows.append(
            f"| {d:,} | {primal_seconds * 1e3:.0f} ms | {kernel_seconds * 1e3:.1f} ms | "
            f"{primal_seconds / kernel_seconds:.0f}× | {draw * 1e3:.1f} ms | {prepare * 1e3:.1f} ms |"
        )
        print(rows[-1], flush=True)
    started = time.perf_counter()
    result = jaxbo.sweep(PAPER_GRID, seeds=1, config=TRAINED, progress=False)
    wall = time.perf_counter() - started
    counts = np.bincount(result.majority_regime().ravel(), minlength=3)
    # The primal grid is too slow to run here: estimate it from the measured per-run costs (linear in d²).
    ds = np.array(DIMENSIONS, float)
    coefficients = np.polyfit(ds**2, [primal_cost[d] for d in DIMENSIONS], 1)
    primal_grid = float(sum(np.polyval(coefficients, d**2) for d in PAPER_GRID["d"]) * 39 / jax.device_count())
    reduced_rows = reduced_kernel_rows()
    started = time.perf_counter()
    gaussian = jaxbo.sweep(PAPER_GRID, seeds=1, config=GAUSSIAN, progress=False)
    gaussian_wall = time.perf_counter() - started
    gaussian_counts = np.bincount(gaussian.majority_regime().ravel(), minlength=3)
    fresh = fresh_gaussian_walls()
    body = f"""## Trained W: the kernel engine (`scripts/bench_kernel.py`)

Machine: {machine()}.

Seconds per run, W and p trained (paper defaults: n = 20, T = 8, 1000 steps, 1000 test samples, final metrics
only), steady state (compile excluded); primal one run per call, kernel 4 vmapped runs per call, one core each;
W₀'s draw and M = W₀Xᵀ, K, G (`kernel_form.prepare`) are the kernel run's d-dependent parts:

| d | primal | kernel | primal / kernel | W₀ draw | M, K, G |
|---|---|---|---|---|---|
{chr(10).join(rows)}

The paper's Figure-5 grid (39 × 39 cells, 1 seed, W and p trained, 1521 runs) with `jaxbo.sweep`
(engine {result.metadata["engine"]}, {jax.device_count()} CPU devices, compile included, cold, in this process):
**{wall:.0f} s** (compile {result.metadata["compile_s"]:.1f} s, {result.metadata["plan"]["compiles"]} compiles);
cells benign / harmful / not overfitting: {counts[0]} / {counts[1]} / {counts[2]}. The primal path, estimated from
the per-run costs above (a + b·d² fit, the same devices): {primal_grid / 60:.0f} min, i.e.
{primal_grid / wall:.0f}× the kernel engine.

### A Gaussian W₀: the reduced kernel engine

W₀ with N(0, 1/(3d)) entries (`weight_init="gaussian"`), run by the reduced kernel engine in 2 + nT
coordinates (exact in law; docs/exact_reduction.md). Seconds per run, steady, 8 vmapped runs per call:

| d | reduced kernel | against d = 250 |
|---|---|---|
{chr(10).join(reduced_rows)}

The same Figure-5 grid with a Gaussian W₀ (engine {gaussian.metadata["engine"]}, compile included, cold, after the
kernel engine's grid in this process): **{gaussian_wall:.1f} s** (compile {gaussian.metadata["compile_s"]:.1f} s,
{gaussian.metadata["plan"]["compiles"]} compile), {wall / gaussian_wall:.0f}× faster than the kernel engine's grid
above; cells benign / harmful / not overfitting: {gaussian_counts[0]} / {gaussian_counts[1]} /
{gaussian_counts[2]} (another W₀ law and other samples than the kernel engine's: docs/universality.md compares
the laws). The same grid alone, each time in a fresh process (JAX started, nothing compiled before, as a user's
script runs it): **{span(fresh)}** ({len(fresh)} processes).
"""
    write_section("bench_kernel", body)
    print(body)


if __name__ == "__main__":
    main()
