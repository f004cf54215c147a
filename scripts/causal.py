"""The causal model (the paper's third limit), measured: writes docs/causal.md, its figures and a benchmark row.

    python scripts/causal.py [--seeds 10] [--limit-seeds 10] [--quick]

On the paper's grid (d = 250…5000 × ‖μ‖ = 5…100, 39 × 39), with one key and the same seeds for every model, in
this one process: the paper's model, the causal model with sequence-level label noise (the paper's noise, a
control) and with token-level noise (each next-label target flipped on its own). For each: regime counts,
boundaries and their exponents (``analysis.fit_boundaries``), the share of targets no selection can fit, and
test accuracy at each prefix τ in the cells whose majority is harmful; then the t → ∞ limit on a 10 × 10
subgrid; and the cost of the causal sweep against the paper model's (the benchmark row in docs/benchmarks.md).
``--quick`` runs a 6 × 6 subgrid with 2 seeds and prints the page instead of writing it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import jaxbo

jaxbo.use_cpu_cores()  # before anything starts JAX: one CPU device per core

import numpy as np  # noqa: E402
from _bench import machine, write_section  # noqa: E402

from jaxbo import analysis, causal_model, plot, theory  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_GRID = {"d": [250 + 125 * i for i in range(39)], "signal_norm": [5 + 2.5 * i for i in range(39)]}
#: docs/theory.md's wide grid: d = 10²…10⁶ and ‖μ‖ = 1…3000, geometric, where the boundaries' exponents are read.
WIDE_GRID = {
    "d": np.unique(np.geomspace(100, 10**6, 13).round()).astype(int).tolist(),
    "signal_norm": np.geomspace(1.0, 3000.0, 28).tolist(),
}
HORIZONS = (1000, 10_000)
MODELS = (
    ("the paper's model", jaxbo.Config()),
    ("causal, sequence-level noise", jaxbo.Config(model="causal")),
    ("causal, token-level noise", jaxbo.Config(model="causal", target_noise="token")),
)


def subgrid(grid: dict, every: int) -> dict:
    return {name: values[::every] for name, values in grid.items()}


def timed_sweep(grid: dict, config: jaxbo.Config, seeds: int, limit: bool = False):
    started = time.perf_counter()
    result = jaxbo.sweep(grid, seeds=seeds, config=config, key=0, progress=False, limit=limit)
    return result, time.perf_counter() - started


def counts(result: jaxbo.SweepResult, limit: bool = False) -> str:
    found = result.regime_counts(limit=limit)
    names = ("benign", "harmful", "not overfitting", "tied") + (("unsettled", "infeasible") if limit else ())
    return " / ".join(str(found.get(name, 0)) for name in names)


def fitted(fits: dict, name: str) -> str:
    fit = fits.get(name)
    if not fit or not np.isfinite(fit.get("slope", np.nan)):
        return "—"
    low, high = fit["slope_ci"]
    return f"{fit['slope']:.2f} [{low:.2f}, {high:.2f}] over {fit['points']} d"


def has_benign(result: jaxbo.SweepResult) -> bool:
    """Whether any cell's majority is benign: every boundary is a switch to or from benign, so without such a
    cell ``analysis.boundaries`` has nothing to locate (it would read a switch between two absent regimes)."""
    return bool(result.regime_counts()["benign"])


def boundary_means(measured) -> tuple[float, float]:
    """Geometric means over d of the harmful and not-overfitting boundaries (NaN where none is found)."""
    means = []
    for values in (measured.harmful, measured.not_overfitting):
        found = np.asarray(values, np.float64)
        found = found[np.isfinite(found)]
        means.append(float(np.exp(np.mean(np.log(found)))) if found.size else np.nan)
    return means[0], means[1]


MODEL_HEADER = (
    "| model | cells: benign / harmful / not / tied | harmful boundary ‖μ‖ | its slope b | not-overfitting boundary "
    "‖μ‖ | its slope b | mean noisy fit | unattainable targets | wall |\n|---|---|---|---|---|---|---|---|---|"
)
LIMIT_HEADER = (
    "| model | horizon: benign / harmful / not / tied | limit: benign / harmful / not / tied / unsettled / infeasible "
    "| settled runs | horizon mean test accuracy | limit mean test accuracy (settled) | wall (with limit) |\n"
    "|---|---|---|---|---|---|---|"
)


def model_rows(results: list) -> list[str]:
    rows = [MODEL_HEADER]
    for (label, _), (result, seconds) in zip(MODELS, results, strict=True):
        unattainable = np.nanmean(result.final["unattainable"]) if "unattainable" in result.final else 0.0
        if has_benign(result):
            measured = analysis.boundaries(result)
            fits = analysis.fit_boundaries(measured)
            harmful, not_overfitting = boundary_means(measured)
            located = (
                f"{harmful:.1f} | {fitted(fits, 'harmful')} | {not_overfitting:.1f} | {fitted(fits, 'not_overfitting')}"
            )
        else:
            located = " | ".join(["— (no benign cell)"] * 4)
        rows.append(
            f"| {label} | {counts(result)} | {located} | {np.nanmean(result.final['noisy_fit']):.3f} "
            f"| {unattainable:.4f} | {seconds:.1f} s ({result.metadata['engine']}) |"
        )
    return rows


def position_rows(results: list) -> list[str]:
    """Mean test accuracy at each prefix τ over the runs of cells whose (untied) majority regime is each one."""
    rows, count = [], 0
    for (label, _), (result, _) in list(zip(MODELS, results, strict=True))[1:]:
        majority, tied = result.majority_regime(), result.tied()
        by_position = result.final["position_accuracy"]  # (*grid, seeds, P)
        count = by_position.shape[-1]
        for code, name in enumerate(theory.REGIME_NAMES):
            cells = (majority == code) & ~tied
            if not cells.any():
                continue
            means = np.nanmean(by_position[cells], axis=(0, 1))
            shown = " | ".join(f"{value:.3f}" for value in means)
            rows.append(f"| {label} | {name} ({int(cells.sum())} cells) | {shown} | {means[0] - means[-1]:+.3f} |")
    start = causal_model.prediction_start(MODELS[1][1].layout)
    header = " | ".join(f"τ = {start + k}" for k in range(count))
    return [f"| model | cells | {header} | first − last |", "|---|---|" + "---|" * (count + 1), *rows]


def position_figure(results: list, out: str) -> str:
    """Test accuracy against τ, mean over the runs of each majority regime's cells, one panel per noise kind."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.8), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    for axis, (label, config), (result, _) in zip(axes, MODELS[1:], results[1:], strict=True):
        start = causal_model.prediction_start(config.layout)
        majority, tied = result.majority_regime(), result.tied()
        by_position = result.final["position_accuracy"]
        taus = start + np.arange(by_position.shape[-1])
        for code, name in enumerate(theory.REGIME_NAMES):
            cells = (majority == code) & ~tied
            if cells.any():
                means = np.nanmean(by_position[cells], axis=(0, 1))
                axis.plot(taus, means, marker="o", color=f"C{code}", label=f"{name} ({int(cells.sum())} cells)")
        axis.set(title=label, xlabel="prefix τ (prediction after token τ)", xticks=taus)
        axis.legend(fontsize=8)
    axes[0].set_ylabel("test accuracy of f_τ")
    name = "causal_positions.png"
    figure.savefig(os.path.join(out, name), dpi=110)
    return name


def limit_rows(grid: dict, seeds: int) -> tuple[list[str], float, list]:
    rows, walls = [LIMIT_HEADER], []
    for label, config in MODELS:
        result, seconds = timed_sweep(grid, config, seeds, limit=True)
        walls.append(seconds)
        settled = float(np.mean(result.settled_fraction()))
        means = result.limit_mean("limit_test_accuracy")
        accuracy = f"{np.nanmean(means):.3f}" if np.isfinite(means).any() else "— (none settled)"
        rows.append(
            f"| {label} | {counts(result)} | {counts(result, limit=True)} | {settled:.1%} | "
            f"{np.nanmean(result.final['test_accuracy']):.3f} | {accuracy} | {seconds:.1f} s |"
        )
    return rows, walls[1] / walls[0], walls


def wide_rows(grid: dict, seeds: int, horizons: tuple[int, ...]) -> tuple[list[str], list[str], dict]:
    """The three models on the wide grid at each horizon: exponents (first table) and boundaries per d (second)."""
    fits_table = [
        "| model | steps | harmful slope b [95 %] (theory ¼) | not-overfitting slope b [95 %] (theory ½) "
        "| cells benign / harmful / not / tied | mean noisy fit | attainable fit | wall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    d_header = " | ".join(f"d = {d:,}" for d in grid["d"])
    per_d = [f"| model | steps | {d_header} |", "|---|---|" + "---|" * len(grid["d"])]
    measured_by = {}
    for steps in horizons:
        for label, config in MODELS:
            config = config.replace(steps=steps, log_every=steps)
            result, seconds = timed_sweep(grid, config, seeds)
            measured = analysis.boundaries(result)
            fits = analysis.fit_boundaries(measured) if has_benign(result) else {}
            measured_by[(label, steps)] = (measured, result)
            attainable = (
                f"{np.nanmean(result.final['attainable_fit']):.3f}" if "attainable_fit" in result.final else "—"
            )
            fits_table.append(
                f"| {label} | {steps:,} | {fitted(fits, 'harmful')} | {fitted(fits, 'not_overfitting')} "
                f"| {counts(result)} | {np.nanmean(result.final['noisy_fit']):.3f} | {attainable} | {seconds:.1f} s |"
            )
            cells = " | ".join(
                f"{h:.1f} / {n:.1f}" if has_benign(result) else "—"
                for h, n in zip(measured.harmful, measured.not_overfitting, strict=True)
            )
            per_d.append(f"| {label} | {steps:,} | {cells} |")
    return fits_table, per_d, measured_by


def findings(results: list, measured_by: dict) -> list[str]:
    """What the tables say, computed from them: the sequence-level control against the paper's model, what
    token-level noise does to fitting and to the not-overfitting boundary, and accuracy along the sequence."""
    paper, sequence, token = (result for result, _ in results)
    lines = []
    agree = np.mean(paper.majority_regime() == sequence.majority_regime())
    lines.append(
        f"- **Sequence-level noise (the control)**: the causal model's majority regime equals the paper model's in "
        f"{agree:.0%} of the paper grid's cells, with mean noisy fit {np.nanmean(sequence.final['noisy_fit']):.3f} "
        f"against {np.nanmean(paper.final['noisy_fit']):.3f}."
    )
    noisy_fit = np.nanmean(token.final["noisy_fit"])
    unattainable = np.nanmean(token.final["noisy_unattainable"])
    lines.append(
        f"- **Token-level noise**: {np.nanmean(token.final['unattainable']):.1%} of all targets (and "
        f"{unattainable:.1%} of the noisy ones, each alone) are out of reach of any selection; of the rest the model "
        f"fits a mean {np.nanmean(token.final['attainable_fit']):.3f}, noisy targets {noisy_fit:.3f}, so "
        f"{token.regime_counts()['not overfitting']} of {token.majority_regime().size} cells do not overfit at "
        f"{token.config.steps:,} steps."
    )
    for steps in sorted({steps for _, steps in measured_by}):
        _, wide_token = measured_by[("causal, token-level noise", steps)]
        control, wide_sequence = measured_by[("causal, sequence-level noise", steps)]
        shares = [np.mean(result.majority_regime() == theory.NOT_OVERFITTING) for result in (wide_token, wide_sequence)]
        lines.append(
            f"  On the wide grid (d up to 10⁶) at {steps:,} steps, {shares[0]:.0%} of its cells do not overfit "
            f"(sequence-level noise: {shares[1]:.0%}, with a not-overfitting boundary at "
            f"{int(np.sum(np.isfinite(control.not_overfitting)))} of {len(control.d)} d)"
            + ("; with no benign cell it has no boundary to locate." if not has_benign(wide_token) else ".")
        )
    majority, tied = sequence.majority_regime(), sequence.tied()
    harmful = (majority == theory.HARMFUL) & ~tied
    if harmful.any():
        means = np.nanmean(sequence.final["position_accuracy"][harmful], axis=(0, 1))
        lines.append(
            f"- **Along the sequence** (sequence-level noise, the {int(harmful.sum())} harmful cells): test accuracy "
            f"falls from {means[0]:.3f} at the first prediction to {means[-1]:.3f} at the last, monotonically: "
            f"{bool(np.all(np.diff(means) <= 0))}."
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="seeds per cell on the paper grid")
    parser.add_argument("--limit-seeds", type=int, default=10, help="seeds per cell of the limit's 10 × 10 subgrid")
    parser.add_argument("--wide-seeds", type=int, default=8, help="seeds per cell of the wide d grid")
    parser.add_argument("--quick", action="store_true", help="6 × 6 subgrid, 2 seeds, print only")
    args = parser.parse_args()
    where = machine()  # now: the commit of the code this process imported
    grid = subgrid(PAPER_GRID, 7) if args.quick else PAPER_GRID
    seeds = 2 if args.quick else args.seeds
    small, small_seeds = (grid, 2) if args.quick else (subgrid(PAPER_GRID, 4), args.limit_seeds)
    out = tempfile.mkdtemp() if args.quick else os.path.join(ROOT, "docs")
    results = [timed_sweep(grid, config, seeds) for _, config in MODELS]
    for (label, _), (result, _) in zip(MODELS[1:], results[1:], strict=True):
        name = "causal_" + label.split(", ")[1].split("-")[0] + ".png"
        plot.phase_diagram(result, theory=has_benign(result)).savefig(os.path.join(out, name), dpi=110)
    position_figure(results, out)
    limits, limit_ratio, limit_walls = limit_rows(small, small_seeds)
    wide = {name: values[::5] for name, values in WIDE_GRID.items()} if args.quick else WIDE_GRID
    wide_seeds = 2 if args.quick else args.wide_seeds
    horizons = (100,) if args.quick else HORIZONS
    wide_fits, wide_boundaries, measured_by = wide_rows(wide, wide_seeds, horizons)
    shape = f"{len(grid['d'])} d × {len(grid['signal_norm'])} ‖μ‖ × {seeds} seeds"
    small_shape = f"{len(small['d'])} d × {len(small['signal_norm'])} ‖μ‖ × {small_seeds} seeds"
    ratio = results[1][1] / results[0][1]
    token_ratio = results[2][1] / results[0][1]
    text = PAGE.format(
        machine=where,
        shape=shape,
        small_shape=small_shape,
        models="\n".join(model_rows(results)),
        positions="\n".join(position_rows(results)),
        limits="\n".join(limits),
        findings="\n".join(findings(results, measured_by)),
        wide_shape=f"{len(wide['d'])} d × {len(wide['signal_norm'])} ‖μ‖ × {wide_seeds} seeds",
        wide_fits="\n".join(wide_fits),
        wide_boundaries="\n".join(wide_boundaries),
    )
    bench = BENCHMARK.format(
        machine=where,
        shape=shape,
        paper=results[0][1],
        sequence=results[1][1],
        token=results[2][1],
        ratio=ratio,
        token_ratio=token_ratio,
        small_shape=small_shape,
        limit_ratio=limit_ratio,
        limit_paper=limit_walls[0],
        limit_causal=limit_walls[1],
    )
    if args.quick:
        print(text, bench, sep="\n")
        return
    with open(os.path.join(out, "causal.md"), "w") as handle:
        handle.write(text)
    write_section("bench_causal", bench)
    print(text, bench, sep="\n")


PAGE = """# The causal model: token selection after every prefix (`scripts/causal.py`)

Machine: {machine}.

The paper analyses one prediction per sequence; its third named limit is the autoregressive setting. jaxbo's
causal model (`Config(model="causal")`, docs/model.md §8) keeps the paper's data, W = I and fixed head ν, and
puts one query p under a causal mask: after every prefix τ = τ₀ … T that holds a token of each role (τ₀ = 3 for
the default layout, so 6 predictions for T = 8) it reads f_τ = νᵀ Σ_{{t≤τ}} s_{{τ,t}} x_t, with s_{{τ,·}} the
softmax of x_tᵀp over the prefix, and p is trained from 0 by gradient descent on the mean logistic loss over
sequences and positions. Label noise flips whole sequences (*sequence-level*, the paper's noise) or each
next-label target on its own (*token-level*, η of all targets, balanced over the classes).

Regimes, with the paper's ε: a run is *benign* when every attainable target is fitted and test accuracy is at
least 1 − ε at every τ, *harmful* when every attainable target is fitted but some τ's test accuracy is lower,
*not overfitting* when an attainable target is left unfitted. *Attainable* counts, per sequence, the most
targets one token selection fits together (a running maximum over the prefix: the selected token changes
only where a new token is a record), by an exact dynamic programme; soft attention can fit no more. Targets
beyond that are reported apart (the "unattainable" column), not counted against the run.

## What the runs say

Computed from the tables below (1000 steps on the paper's grid unless a line says otherwise):

{findings}

## The paper's grid

{shape}, the same key and seeds for the three models; boundaries located and fitted as in docs/theory.md
(`analysis.boundaries`, `analysis.fit_boundaries`: slope b of log ‖μ‖ against log d with its 95 % bootstrap
interval; the boundary columns are geometric means over the d where one is found). Wall time is each sweep's,
compile included.

{models}

Phase diagrams (with the theory overlay and the measured boundaries where a benign cell gives them any):

![sequence-level noise](causal_sequence.png)

![token-level noise](causal_token.png)

## Test accuracy along the sequence

Mean test accuracy of f_τ at each prefix over the runs of the cells whose (untied) majority regime is the
row's; the last column is the first prefix's minus the last one's (positive: accuracy falls as tokens
accumulate).

{positions}

![test accuracy along the sequence](causal_positions.png)

## The wide grid: boundaries and exponents

The reduced engines run any d at one cost, so the boundaries' growth with d is read where it can be: d =
10²…10⁶ and ‖μ‖ = 1…3000, geometric ({wide_shape}), at two horizons, boundaries and fits as in docs/theory.md.

{wide_fits}

Boundaries at each d (harmful / not overfitting, ‖μ‖; nan where the column has no such switch):

{wide_boundaries}

## The t → ∞ limit

The causal attention SVM of each run's running selection α̂_{{i,τ}} (every prefix's selection beats the
prefix's other tokens by a margin of 1; equivalently one constraint per token, n(T − 1) in all: docs/model.md
§8), certified per constraint with the target of the prefix where it binds. With one selection for every
prefix and sequence-level noise it is the paper model's limit exactly (tested). On {small_shape}:

{limits}
"""

BENCHMARK = """## The causal model (`scripts/causal.py`)

Machine: {machine}.

The paper grid ({shape}), compile included, the three sweeps in one process with one key (target: the causal
sweep within 8× the paper model's):

| sweep | wall | against the paper model |
|---|---|---|
| the paper's model (reduced engine) | {paper:.1f} s | 1.00× |
| causal, sequence-level noise (causal_reduced engine) | {sequence:.1f} s | {ratio:.2f}× |
| causal, token-level noise (causal_reduced engine) | {token:.1f} s | {token_ratio:.2f}× |

With the t → ∞ limit on {small_shape}: paper model {limit_paper:.1f} s, causal (sequence-level) {limit_causal:.1f} s
({limit_ratio:.2f}×).
"""


if __name__ == "__main__":
    main()
