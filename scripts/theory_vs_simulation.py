"""Theory against simulation (docs/theory.md): the measured phase diagram with the region where the existence
construction's sufficient conditions hold, and time-to-fit vs time-to-generalise along a line across it.

    python scripts/theory_vs_simulation.py [--out docs]

Writes docs/theory_vs_simulation.png and prints the numbers quoted in docs/theory.md.
"""

from __future__ import annotations

import argparse
import os
import re

from jaxbo.cli import use_cpu_cores

use_cpu_cores()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import jaxbo  # noqa: E402
from jaxbo import model, reduced, theory  # noqa: E402
from jaxbo.plot import REGIME_COLOURS, cell_edges  # noqa: E402

D_VALUES = np.geomspace(250, 200_000, 24).round().astype(int).tolist()
SIGNAL_VALUES = np.linspace(5, 100, 20).tolist()
LINE_D = [250, 500, 1000, 2000, 4000, 8000, 16000]


@jax.jit
def _construction_works(keys: jax.Array, config: jaxbo.Config) -> jax.Array:
    """Per key: does p* fit every label and reach test accuracy >= 0.995? ``config`` is traced (one compile)."""

    def one(key):
        train_set, test_set = reduced.sample_train_test(key, config)
        params = model.Params(p=theory.existence_query(train_set, config), nu=model.head(config, reduced.width(config)))
        train_ok = jnp.all(train_set.labels * model.forward(params, train_set.tokens)[0] > 0)
        test_ok = jnp.mean(test_set.labels * model.forward(params, test_set.tokens)[0] > 0) >= 0.995
        return train_ok & test_ok

    return jax.vmap(one)(keys)


def construction_works(config: jaxbo.Config, seeds: int = 4) -> float:
    """Fraction of seeds where the existence construction p* fits every label and has test accuracy >= 0.995.

    Evaluated in the exact reduced representation (inner products are all the construction uses).
    """
    keys = jax.random.split(jax.random.key(5), seeds)
    return float(jnp.mean(_construction_works(keys, config)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()
    base = jaxbo.Config(n_test=500)
    result = jaxbo.sweep({"d": D_VALUES, "signal_norm": SIGNAL_VALUES}, seeds=8, config=base, progress=False)
    n_noisy = 4  # ⌈0.2 · 20⌉ = 4 flipped labels
    conditions = np.zeros((len(SIGNAL_VALUES), len(D_VALUES)))
    works = np.zeros_like(conditions)
    for i, signal_norm in enumerate(SIGNAL_VALUES):
        for j, d in enumerate(D_VALUES):
            config = base.replace(d=d, signal_norm=float(signal_norm))
            ratios = theory.existence_conditions(config, n_noisy)
            conditions[i, j] = max(float(value) for value in ratios.values()) < 1
            works[i, j] = construction_works(config)
    regimes = result.majority_regime().T  # (signal, d)
    benign = regimes == theory.BENIGN
    summary = [
        f"Over the {benign.size} cells (d = {D_VALUES[0]}…{D_VALUES[-1]} geometric, ‖μ‖ = {SIGNAL_VALUES[0]:g}…"
        f"{SIGNAL_VALUES[-1]:g}, 8 seeds each): measured benign in {int(benign.sum())}; the existence construction's "
        f"sufficient conditions hold in {int(conditions.sum())}, of which {int((benign & (conditions > 0)).sum())} "
        f"are measured benign; the construction p* itself fits every label and generalises (in most seeds) in "
        f"{int((works >= 0.5).sum())}, of which {int((benign & (works >= 0.5)).sum())} are measured benign.",
    ]

    line = jaxbo.sweep(
        {"d": LINE_D, "signal_norm": [20.0]},
        seeds=8,
        config=base.replace(steps=4000, log_every=20),
        histories=True,
        progress=False,
    )
    fit, generalise = line.time_to_fit()[:, 0], line.time_to_generalise()[:, 0]

    figure = Figure(figsize=(16, 5), layout="constrained")
    left, middle, right = figure.subplots(1, 3)
    x_edges = np.exp(cell_edges(np.log(np.array(D_VALUES, float))))  # geometric d: cells even on a log axis
    y_edges = cell_edges(np.array(SIGNAL_VALUES))
    from matplotlib.colors import BoundaryNorm, ListedColormap

    mesh = left.pcolormesh(
        x_edges, y_edges, regimes, cmap=ListedColormap(REGIME_COLOURS), norm=BoundaryNorm([-0.5, 0.5, 1.5, 2.5], 3)
    )
    bar = figure.colorbar(mesh, ax=left, ticks=[0, 1, 2])
    bar.ax.set_yticklabels(theory.REGIME_NAMES)
    left.contour(D_VALUES, SIGNAL_VALUES, conditions, levels=[0.5], colors="black", linewidths=2)
    left.contour(D_VALUES, SIGNAL_VALUES, works, levels=[0.5], colors="white", linewidths=2, linestyles="--")
    left.plot([], [], "k-", label="existence conditions hold (right/above)")
    left.plot([], [], "w--", label="construction p* fits and generalises")
    left.legend(loc="upper right", fontsize="small", facecolor="grey")
    left.set_title("measured regime (8 seeds) vs the existence construction")
    left.set_xlabel("dimension d")
    left.set_xscale("log")
    left.set_ylabel("signal norm ‖μ‖")
    snr = np.asarray(theory.signal_to_noise(np.array(SIGNAL_VALUES)[:, None], 1.0, np.array(D_VALUES)[None, :]))
    mesh = middle.pcolormesh(x_edges, y_edges, np.log10(snr), cmap="magma")
    figure.colorbar(mesh, ax=middle, label="log₁₀ SNR = log₁₀ ‖μ‖/(σ√d)")
    middle.contour(D_VALUES, SIGNAL_VALUES, benign.astype(float), levels=[0.5], colors="cyan", linewidths=2)
    middle.set_title("SNR with the measured benign region (cyan)")
    middle.set_xlabel("dimension d")
    middle.set_xscale("log")
    for values, label, style in ((fit, "time to fit (all labels)", "o-"), (generalise, "time to generalise", "s--")):
        mean = np.array([np.mean(v[v >= 0]) if np.any(v >= 0) else np.nan for v in values])
        right.plot(LINE_D, mean, style, label=label)
    right.set_xscale("log")
    right.set_xlabel("dimension d (‖μ‖ = 20)")
    right.set_ylabel("gradient steps (mean over seeds that reach it)")
    right.set_title("time to fit vs time to generalise, ‖μ‖ = 20")
    right.legend()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "theory_vs_simulation.png")
    figure.savefig(path, dpi=110)
    summary += [
        "",
        "| d (‖μ‖ = 20, 4000 steps) | mean time to fit | seeds fitted | mean time to generalise | seeds |",
        "|---|---|---|---|---|",
    ]
    for d, f, g in zip(LINE_D, fit, generalise, strict=True):
        summary.append(
            f"| {d} | {np.mean(f[f >= 0]) if np.any(f >= 0) else 'never'} | {int(np.sum(f >= 0))}/{len(f)} | "
            f"{np.mean(g[g >= 0]) if np.any(g >= 0) else 'never'} | {int(np.sum(g >= 0))}/{len(g)} |"
        )
    # Delayed generalisation, searched for directly: a seed shows it when its test accuracy is below 1 − ε at
    # the time of the fit and reaches 1 − ε later on (within 8000 steps).
    summary += [
        "",
        "| ‖μ‖ | d | seeds fitted | seeds below 1 − ε at the fit | of those, recovered later |",
        "|---|---|---|---|---|",
    ]
    search_d = [500, 2000, 8000, 32000]
    for signal_norm in (5.0, 7.5, 10.0):
        search = jaxbo.sweep(
            {"d": search_d, "signal_norm": [signal_norm]},
            seeds=8,
            progress=False,
            histories=True,
            config=base.replace(steps=8000, log_every=40),
        )
        fit = search.time_to_fit()[:, 0]  # (d, seeds)
        accuracy = search.history["test_accuracy"][:, 0]  # (d, seeds, L)
        for i, d in enumerate(search_d):
            fitted = below = recovered = 0
            for seed in range(search.seeds):
                if fit[i, seed] < 0:
                    continue
                fitted += 1
                at = int(np.searchsorted(search.log_steps, fit[i, seed]))
                if accuracy[i, seed, at] < 1 - search.regime_tolerance:
                    below += 1
                    recovered += bool(np.any(accuracy[i, seed, at:] >= 1 - search.regime_tolerance))
            summary.append(f"| {signal_norm:g} | {d} | {fitted}/8 | {below} | {recovered} |")
    text = "\n".join(summary)
    print(text)
    page = os.path.join(args.out, "theory.md")
    if os.path.exists(page):
        content = open(page).read()
        block = f"<!-- theory_vs_simulation:start -->\n{text}\n<!-- theory_vs_simulation:end -->"
        pattern = re.compile(r"<!-- theory_vs_simulation:start -->.*?<!-- theory_vs_simulation:end -->", re.S)
        content = pattern.sub(lambda _: block, content) if pattern.search(content) else content + "\n" + block + "\n"
        with open(page, "w") as handle:
            handle.write(content)
    print(path)


if __name__ == "__main__":
    main()
