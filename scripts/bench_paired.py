"""Paired against independent sweeps: wall time from fresh processes, and boundary uncertainty at equal seeds.

    python scripts/bench_paired.py [--seeds 8] [--repeats 3]

Speed: the paper grid (39 d × 39 ‖μ‖) × 10 seeds, paired (the reduced engine's shared step) and independent,
each from fresh processes with a cold and then a warm compilation cache, alternating, ``--repeats`` times; and
the f32 matrix-product peak of one core, to state the fraction of it the paired sweep reaches.

Boundaries: the grid of docs/theory.md's 1000-step row (13 geometric d from 10² to 10⁶ × 28 geometric ‖μ‖
from 1 to 3000), once with independent draws and once paired, the same seed count. For each boundary: the
seed-bootstrap standard error of the located ‖μ‖ at each d (median over d, relative to the boundary) and the
width of the fitted exponent's 95 % interval. Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import jaxbo

jaxbo.use_cpu_cores()  # before anything starts JAX: one CPU device per core

import numpy as np  # noqa: E402
from _bench import machine, span, write_section  # noqa: E402

from jaxbo import analysis  # noqa: E402

PAPER_GRID = {"d": [250 + 125 * i for i in range(39)], "signal_norm": [5 + 2.5 * i for i in range(39)]}
PAPER_RUNS = 39 * 39 * 10

# A user's fresh process: import, every core, the sweep (paired or not), then the same sweep again (steady).
FRESH = textwrap.dedent("""
    import time
    started = time.perf_counter()
    import json, sys, jax
    import jaxbo
    jaxbo.use_cpu_cores()
    jax.config.update("jax_compilation_cache_dir", sys.argv[1])
    grid = {"d": [250 + 125 * i for i in range(39)], "signal_norm": [5 + 2.5 * i for i in range(39)]}
    paired = sys.argv[2] == "paired"
    result = jaxbo.sweep(grid, seeds=10, paired=paired, progress=False)
    wall = time.perf_counter() - started
    steady = jaxbo.sweep(grid, seeds=10, paired=paired, progress=False).metadata["elapsed_s"]
    counts = [int((result.majority_regime() == r).sum()) for r in range(3)]
    print(json.dumps({"wall": wall, "sweep": result.metadata["elapsed_s"], "compile": result.metadata["compile_s"],
                      "steady": steady, "counts": counts, "shared": result.metadata["plan"].get("shared_step")}))
""")

# One core's f32 matrix-product peak: XLA's product of two 1024² matrices, and the paired step's own product
# ([G₀ | C | E] (160 × 164) times (164 × 39), three keys batched), each on one pinned core.
PEAK = textwrap.dedent("""
    import os, json, time
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1 --xla_cpu_multi_thread_eigen=false"
    import jax, jax.numpy as jnp
    def rate(shape_a, shape_b, repeats):
        a = jax.random.normal(jax.random.key(0), shape_a)
        b = jax.random.normal(jax.random.key(1), shape_b)
        product = jax.jit(lambda a, b: jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST))
        product(a, b).block_until_ready()
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(repeats):
                out = product(a, b)
            out.block_until_ready()
            best = min(best, (time.perf_counter() - start) / repeats)
        flops = 2 * shape_a[-2] * shape_a[-1] * shape_b[-1] * (shape_a[0] if len(shape_a) == 3 else 1)
        return flops / best / 1e9
    print(json.dumps({"square": rate((1024, 1024), (1024, 1024), 20), "step": rate((3, 160, 164), (3, 164, 39), 2000)}))
""")


def fresh(code: str, *args: str) -> dict:
    environment = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=environment, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def speed_rows(repeats: int) -> tuple[list[str], dict]:
    """Fresh-process rows (min–max over ``repeats``), cold then warm cache, paired and independent alternating."""
    measured = {(design, state): [] for design in ("independent", "paired") for state in ("cold", "warm")}
    for _ in range(repeats):
        for design in ("independent", "paired"):
            with tempfile.TemporaryDirectory() as cache:
                for state in ("cold", "warm"):  # the warm process finds the cold one's compiled programs
                    measured[(design, state)].append(fresh(FRESH, cache, design))
                    print(design, state, measured[(design, state)][-1], flush=True)
    rows = []
    for (design, state), numbers in measured.items():
        counts = " / ".join(map(str, numbers[-1]["counts"]))
        rows.append(
            f"| {design} | {state} | {len(numbers)} | {span([n['wall'] for n in numbers])} | "
            f"{span([n['compile'] for n in numbers])} | {span([n['sweep'] - n['compile'] for n in numbers])} | "
            f"{span([n['steady'] for n in numbers])} | {counts} |"
        )
    return rows, measured


GRID = {
    "d": np.unique(np.geomspace(100, 10**6, 13).round()).astype(int).tolist(),
    "signal_norm": np.geomspace(1.0, 3000.0, 28).tolist(),
}


def measure(seeds: int, paired: bool) -> dict:
    started = time.perf_counter()
    result = jaxbo.sweep(GRID, seeds=seeds, config=jaxbo.Config(n_test=500), paired=paired, progress=True)
    wall = time.perf_counter() - started
    measured = analysis.boundaries(result, bootstraps=200)
    fits = analysis.fit_boundaries(measured)
    row = {"wall": wall, "compile": result.metadata["compile_s"]}
    for kind in ("harmful", "not_overfitting"):
        values, errors = getattr(measured, kind), getattr(measured, f"{kind}_error")
        found = np.isfinite(values) & np.isfinite(errors)
        row[kind] = {
            "relative_error": float(np.median(errors[found] / values[found])) if found.any() else float("nan"),
            "points": int(found.sum()),
            "slope": fits[kind]["slope"],
            "ci": fits[kind]["slope_ci"],
        }
    row["contrasts"] = {name: contrast_error(result.final[name], paired) for name in CONTRASTS}
    return row


#: Metrics whose change between neighbouring ‖μ‖ values (same d) the contrast rows measure.
CONTRASTS = ("test_loss", "train_loss", "test_accuracy")


def contrast_error(values: np.ndarray, paired: bool) -> float:
    """Median over (d, neighbouring ‖μ‖) of the standard error of the mean change of a metric, (D, M, S) values:
    with paired draws the mean of each seed's own change (sd/√S); with independent ones two samples' means
    (√(v₁/S + v₂/S)). Cells where the metric does not vary at all (both standard errors 0) are left out."""
    values = np.asarray(values, np.float64)
    seeds = values.shape[-1]
    before, after = values[:, :-1], values[:, 1:]
    if paired:
        error = np.std(after - before, axis=-1, ddof=1) / np.sqrt(seeds)
    else:
        error = np.sqrt((np.var(before, axis=-1, ddof=1) + np.var(after, axis=-1, ddof=1)) / seeds)
    varies = (np.var(before, axis=-1) + np.var(after, axis=-1)) > 0
    return float(np.median(error[varies]))


def speed_text(rows: list[str], measured: dict, peak: dict) -> str:
    """The speed part of the section: the table, the ratios and the fraction of the matrix-product peak."""

    def median(design: str, state: str, field: str) -> float:
        return float(np.median([n[field] for n in measured[(design, state)]]))

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cold = {design: median(design, "cold", "wall") for design in ("independent", "paired")}
    steady = {design: median(design, "cold", "steady") for design in ("independent", "paired")}
    flops = PAPER_RUNS * 1000 * 2 * 160 * 164  # the paired step's product, K = N + 4
    achieved = flops / steady["paired"] / 1e9
    half = cold["paired"] <= cold["independent"] / 2
    seven = cold["paired"] <= 7.0
    shared = {n["shared"] for state in ("cold", "warm") for n in measured[("paired", state)]}
    compile_s = {design: median(design, "cold", "compile") for design in ("independent", "paired")}
    return f"""### Speed: the paper grid × 10 seeds, fresh processes

39 d × 39 ‖μ‖ × 10 seeds ({PAPER_RUNS:,} runs), paper defaults. Each row is a new Python process (`import jaxbo`,
`jaxbo.use_cpu_cores()`, `jaxbo.sweep(grid, seeds=10, paired=…)`): *cold* = empty compilation cache, *warm* =
a second process finding the first one's compiled programs. *wall* runs from process start (imports and compile
included); *compute* = sweep time − compile; *steady* = the same sweep again in that process. Min–max over
{len(measured[("paired", "cold")])} processes per row, the designs alternating. Paired runs used the shared step:
{shared == {True}}.

| draws | cache | processes | wall | compile | compute | steady | benign / harmful / not |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Read from the rows above (medians, written by the script):

- Cold wall, compile included: paired {cold["paired"]:.1f} s against independent {cold["independent"]:.1f} s, \
{cold["paired"] / cold["independent"]:.2f}× (the target, at most half: {"met" if half else "not met"}; at most 7 s: \
{"met" if seven else "not met"}).
- Steady (compiled programs in memory): {steady["paired"]:.1f} s against {steady["independent"]:.1f} s, \
{steady["paired"] / steady["independent"]:.2f}×.
- The product alone: {flops / 1e12:.2f} TFLOP ({PAPER_RUNS:,} runs × 1000 steps × 2·160·164 flops). One core's \
f32 product peak measured here: {peak["square"]:.0f} GFLOP/s (XLA, 1024² × 1024²); the step's own shape \
(3 keys × (160 × 164)·(164 × 39)) runs at {peak["step"]:.0f} GFLOP/s. At the square peak on {cores} cores the \
product takes {flops / (cores * peak["square"] * 1e9):.1f} s. The paired sweep's steady pass, everything included \
(sampling, the softmax and weights of every step, metrics, test draw), averages {achieved:.0f} GFLOP/s of \
product: {100 * achieved / (cores * peak["square"]):.0f} % of the {cores} cores' square peak.
- Compile, cold: paired {compile_s["paired"]:.1f} s, independent {compile_s["independent"]:.1f} s. Without it the \
cold walls compare as {(cold["paired"] - compile_s["paired"]) / (cold["independent"] - compile_s["independent"]):.2f}×.
"""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per speed row")
    args = parser.parse_args(argv)
    speed_table, speed_measured = speed_rows(args.repeats)
    peak = fresh(PEAK)
    print(peak, flush=True)
    speed = speed_text(speed_table, speed_measured, peak)
    rows, measured = [], {}
    for paired in (False, True):
        numbers = measured[paired] = measure(args.seeds, paired)
        for kind in ("harmful", "not_overfitting"):
            part = numbers[kind]
            low, high = part["ci"]
            rows.append(
                f"| {'paired' if paired else 'independent'} | {kind.replace('_', ' ')} | {part['points']} | "
                f"{100 * part['relative_error']:.1f} % | {part['slope']:.3f} [{low:.3f}, {high:.3f}] | "
                f"{high - low:.3f} | {numbers['wall'] - numbers['compile']:.1f} s |"
            )
            print(rows[-1], flush=True)
    reading = []
    for kind in ("harmful", "not_overfitting"):
        independent, paired = measured[False][kind], measured[True][kind]
        width = [part["ci"][1] - part["ci"][0] for part in (independent, paired)]
        reading.append(
            f"- {kind.replace('_', ' ')} boundary: pairing made the boundary error "
            f"{'smaller' if paired['relative_error'] < independent['relative_error'] else 'not smaller'} "
            f"({100 * independent['relative_error']:.1f} % → {100 * paired['relative_error']:.1f} %) and the "
            f"exponent's interval {'narrower' if width[1] < width[0] else 'not narrower'} ({width[0]:.3f} → "
            f"{width[1]:.3f})."
        )
    contrast_rows = []
    for name in CONTRASTS:
        independent, paired = (measured[design]["contrasts"][name] for design in (False, True))
        contrast_rows.append(f"| `{name}` | {independent:.2e} | {paired:.2e} | {paired / independent:.2f}× |")
    body = f"""## Paired against independent sweeps (`scripts/bench_paired.py`)

Machine: {machine()}. A paired sweep of the reduced engine trains a key's runs of every ‖μ‖ together, with one
Gram matrix (docs/exact_reduction.md, "Paired runs").

{speed}
### Boundaries at equal seeds

Grid: 13 geometric d (10²…10⁶) × 28 geometric ‖μ‖ (1…3000), {args.seeds} seeds, paper
defaults with 500 test samples, reduced engine; the same seed count both ways. *Boundary error*: the median
over d of the seed-bootstrap standard error of the located ‖μ‖, relative to it. *Exponent*: the fitted
‖μ‖ ∝ d^b with its bootstrap 95 % interval. *Compute*: wall time less compilation, in one process.

| draws | boundary | d with a boundary | boundary error | exponent b [95 %] | interval width | compute |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Read from the rows above (written by the script):

{chr(10).join(reading)}

[reading] `analysis.boundaries` locates a boundary where the *fractions* of seeds in two regimes cross along ‖μ‖. With
paired draws a seed's runs along ‖μ‖ share their noise, so the fractions are the empirical distribution of the
seeds' own switch points and the crossing is their median: its error is the spread of those switch points
between seeds, which pairing does not shrink (a boundary located per seed and then averaged is the same
statistic). What pairing shrinks is the error of a *change* between ‖μ‖ values, the seed noise cancelling in
each seed's own difference. Measured on the same two sweeps, the median standard error of the mean change of a
metric between neighbouring ‖μ‖ (same d; cells where the metric never varies left out):

| metric | independent | paired | paired / independent |
|---|---|---|---|
{chr(10).join(contrast_rows)}

Pairing changes which random numbers each run uses, not any cell's law, so the two rows of a boundary are two
estimates of the same quantity; only their uncertainty is meant to differ. The compute column differs because
the paired sweep trains each key's 28 runs together.
"""
    write_section("bench_paired", body)
    print("wrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
