"""Figures: the (d, ‖μ‖) phase diagram of a sweep and the training dynamics of one run."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from jaxbo.data import ROLE_NAMES
from jaxbo.results import SweepResult
from jaxbo.theory import REGIME_NAMES

REGIME_COLOURS = ("#4daf4a", "#e41a1c", "#377eb8")  # benign, harmful, not overfitting
LABELS = {
    "d": "dimension d",
    "signal_norm": "signal norm ‖μ‖",
    "noise_rate": "noise rate η",
    "rho": "ρ",
    "sigma": "σ",
    "lr": "learning rate",
}


def cell_edges(centres: np.ndarray) -> np.ndarray:
    """Edges of the cells around sorted ``centres`` (len + 1): midpoints inside, half a step outside."""
    centres = np.asarray(centres, np.float64)
    if centres.size == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    middle = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - middle[0]], middle, [2 * centres[-1] - middle[-1]]])


def _two_axes(result: SweepResult, x: str, y: str, select: Mapping[str, float] | None):
    """Indexer that reduces ``result``'s grid to the (y, x) plane; other axes fixed by ``select``."""
    grid_dims = list(result.dims[:-1])
    for name in (x, y):
        if name not in grid_dims:
            raise ValueError(f"the sweep has no axis {name!r}; its axes are {grid_dims}")
    select = dict(select or {})
    index = []
    for name in grid_dims:
        if name in (x, y):
            index.append(slice(None))
            continue
        if name not in select:
            raise ValueError(
                f"axis {name!r} has {len(result.coords[name])} values: pick one with select={{{name!r}: v}}"
            )
        matches = np.flatnonzero(np.isclose(result.coords[name], select[name]))
        if not matches.size:
            raise ValueError(f"select[{name!r}] = {select[name]!r} is not a grid value; values: {result.coords[name]}")
        index.append(int(matches[0]))
    kept = [name for name in grid_dims if name in (x, y)]
    transpose = kept != [y, x]

    def plane(values: np.ndarray) -> np.ndarray:
        values = values[tuple(index)]
        return values.T if transpose else values

    return plane


def phase_diagram(
    result: SweepResult,
    *,
    x: str = "d",
    y: str = "signal_norm",
    select: Mapping[str, float] | None = None,
    title: str | None = None,
    boundary: np.ndarray | None = None,
    boundary_label: str = "predicted boundary",
) -> Figure:
    """Train accuracy, test accuracy (means over seeds) and the majority regime over the (x, y) grid.

    Args:
      result: a sweep with ``x`` and ``y`` among its axes.
      x, y: axis names for the horizontal and vertical directions.
      select: values of any further grid axes, e.g. ``{"noise_rate": 0.2}``.
      title: figure title (default: the settings held fixed).
      boundary: optional (len(y values), len(x values)) array; its 0.5 level is drawn over every panel, e.g. a
        predicted region (True inside) from ``jaxbo.theory``.
      boundary_label: legend text of that line.

    Returns:
      A matplotlib ``Figure`` with three ``pcolormesh`` panels and colour bars.
    """
    plane = _two_axes(result, x, y, select)
    xs, ys = result.coords[x], result.coords[y]
    x_edges, y_edges = cell_edges(xs), cell_edges(ys)
    # A bare Figure (no pyplot): no global state, no GUI backend needed.
    figure = Figure(figsize=(15, 4.4), layout="constrained")
    axes = figure.subplots(1, 3)
    for axis, name, label in (
        (axes[0], "train_accuracy", "train accuracy"),
        (axes[1], "test_accuracy", "test accuracy"),
    ):
        mesh = axis.pcolormesh(x_edges, y_edges, plane(result.mean(name)), cmap="viridis", vmin=0.5, vmax=1.0)
        figure.colorbar(mesh, ax=axis, label=f"{label} (mean of {result.seeds} seeds)")
        axis.set_title(label)
    codes = plane(result.majority_regime())
    cmap = ListedColormap(REGIME_COLOURS)
    mesh = axes[2].pcolormesh(x_edges, y_edges, codes, cmap=cmap, norm=BoundaryNorm([-0.5, 0.5, 1.5, 2.5], 3))
    bar = figure.colorbar(mesh, ax=axes[2], ticks=[0, 1, 2])
    bar.ax.set_yticklabels(REGIME_NAMES)
    axes[2].set_title(f"regime (majority of seeds; benign: test ≥ {1 - result.regime_tolerance:g})")
    for axis in axes:
        axis.set_xlabel(LABELS.get(x, x))
        axis.set_ylabel(LABELS.get(y, y))
        if boundary is not None:
            level = np.asarray(boundary, np.float64)
            if level.shape != (len(ys), len(xs)):
                raise ValueError(
                    f"boundary has shape {level.shape}, expected {(len(ys), len(xs))} (y values, x values)"
                )
            axis.contour(xs, ys, level, levels=[0.5], colors="black", linewidths=2)
            axis.plot([], [], color="black", linewidth=2, label=boundary_label)
            axis.legend(loc="upper right", fontsize="small")
    config = result.config
    if title is None:
        title = (
            f"n={config.n_train}, T={config.T}, layout={config.layout}, η={config.noise_rate:g}, ρ={config.rho:g}, "
            f"σ={config.sigma:g}, lr={config.lr:g}, {config.steps} steps, engine={result.metadata.get('engine')}"
        )
    figure.suptitle(title)
    return figure


def dynamics(run, *, title: str | None = None, saturation: bool = False) -> Figure:
    """The paper's Figure-3-style panels for one ``Run``: attention per token role over training for clean
    samples and for noisy samples, and train/test accuracy (with the noisy-fit rate) over training; with
    ``saturation=True`` a fourth panel shows the cumulative 𝔖 per class over clean and noisy samples
    (the quantities of the paper's Eq. 9 and 10).

    ``run`` must come from ``simulate`` (a single run with histories), not a vmapped batch.
    """
    history = run.history
    steps = np.asarray(run.log_steps)
    if steps.ndim != 1:
        raise ValueError(f"dynamics needs one run; got log_steps of shape {steps.shape} (index the batch first)")
    figure = Figure(figsize=(20 if saturation else 15, 4.2), layout="constrained")
    axes = figure.subplots(1, 4 if saturation else 3)
    styles = ("-", "--", ":", "-.")
    for axis, name, label in (
        (axes[0], "attention_clean", "clean samples"),
        (axes[1], "attention_noisy", "noisy samples"),
    ):
        values = np.asarray(getattr(history, name))
        for role, style in enumerate(styles):
            axis.plot(steps, values[:, role], style, label=ROLE_NAMES[role].replace("_", " "))
        axis.set_title(f"attention on token roles, {label}")
        axis.set_xlabel("step")
        axis.set_ylabel("attention mass")
        axis.set_ylim(-0.02, 1.02)
        axis.legend()
    for name, label in (("train_accuracy", "train"), ("test_accuracy", "test"), ("noisy_fit", "noisy samples fitted")):
        axes[2].plot(steps, np.asarray(getattr(history, name)), label=label)
    axes[2].set_title("accuracy")
    axes[2].set_xlabel("step")
    axes[2].set_ylim(-0.02, 1.02)
    axes[2].legend()
    if saturation:
        for name, label in (("saturation_clean", "clean"), ("saturation_noisy", "noisy")):
            values = np.asarray(getattr(history, name))
            for column, klass in enumerate(("y = +1", "y = −1")):
                axes[3].plot(steps, values[:, column], "-" if label == "clean" else "--", label=f"{label}, {klass}")
        axes[3].set_title("cumulative 𝔖 = Σ s_R(1 − s_R)")
        axes[3].set_xlabel("step")
        axes[3].legend()
    if title:
        figure.suptitle(title)
    return figure
