"""Figures: the (d, ‖μ‖) phase diagram of a sweep and the training dynamics of one run.

matplotlib is imported inside the functions that draw, so ``import jaxbo`` does not pay for it (~0.5 s).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from jaxbo.data import ROLE_NAMES
from jaxbo.results import SweepResult
from jaxbo.theory import REGIME_NAMES

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn: ``import jaxbo`` stays fast
    from matplotlib.figure import Figure

REGIME_COLOURS = ("#4daf4a", "#e41a1c", "#377eb8")  # benign, harmful, not overfitting
LABELS = {
    "d": "dimension d",
    "signal_norm": "signal norm ‖μ‖",
    "noise_rate": "noise rate η",
    "rho": "ρ",
    "sigma": "σ",
    "lr": "learning rate",
}
SYMBOLS = {"d": "d", "signal_norm": "‖μ‖", "noise_rate": "η", "rho": "ρ", "sigma": "σ", "lr": "lr"}


def cell_edges(centres: np.ndarray) -> np.ndarray:
    """Edges of the cells around sorted ``centres`` (len + 1): midpoints inside, half a step outside."""
    centres = np.asarray(centres, np.float64)
    if centres.size == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    middle = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - middle[0]], middle, [2 * centres[-1] - middle[-1]]])


def _plane_indexers(result: SweepResult, x: str, y: str, select: Mapping[str, float] | None):
    """One (label, indexer) per panel row: the grid reduced to the (y, x) plane at each combination of the
    values of the other axes; ``select`` fixes some of them (the rest become rows)."""
    grid_dims = list(result.dims[:-1])
    for name in (x, y):
        if name not in grid_dims:
            raise ValueError(f"the sweep has no axis {name!r}; its axes are {grid_dims}")
    select = dict(select or {})
    unknown = sorted(set(select) - set(grid_dims) - {x, y})
    if unknown:
        raise ValueError(
            f"select names {unknown}, which are not further grid axes; those are "
            f"{[name for name in grid_dims if name not in (x, y)]}"
        )
    choices = []  # per grid axis: list of (index, value) it takes
    for name in grid_dims:
        if name in (x, y):
            choices.append([(slice(None), None)])
        elif name in select:
            matches = np.flatnonzero(np.isclose(result.coords[name], select[name]))
            if not matches.size:
                raise ValueError(
                    f"select[{name!r}] = {select[name]!r} is not a grid value; values: {result.coords[name]}"
                )
            choices.append([(int(matches[0]), result.coords[name][matches[0]])])
        else:
            choices.append([(i, value) for i, value in enumerate(result.coords[name])])
    transpose = [name for name in grid_dims if name in (x, y)] != [y, x]
    rows = []
    for combination in itertools.product(*choices):
        index = tuple(i for i, _ in combination)
        label = ", ".join(
            f"{SYMBOLS.get(name, name)}={_number(value)}"
            for name, (_, value) in zip(grid_dims, combination, strict=True)
            if name not in (x, y)
        )

        def plane(values: np.ndarray, index=index) -> np.ndarray:
            values = values[index]
            return values.T if transpose else values

        rows.append((label, plane))
    return rows


def _number(value) -> str:
    return f"{float(value):g}"


def _fixed_settings(result: SweepResult, varying: set[str]) -> str:
    """The settings every panel shares, from the result itself (fields on a grid axis are left out)."""
    config = result.config
    parts = [f"n={config.n_train}", f"T={config.T}", f"layout={config.layout}"]
    for name in ("noise_rate", "rho", "sigma", "lr", "d", "signal_norm"):
        if name not in varying and name not in result.dims:
            parts.append(f"{SYMBOLS[name]}={_number(getattr(config, name))}")
    parts.append(f"{config.steps} steps")
    parts.append(f"{result.seeds} seeds")
    parts.append(f"engine={result.metadata.get('engine')}")
    return ", ".join(parts)


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

    A sweep with further axes (e.g. ``noise_rate``) gets one row of panels per combination of their values,
    each row titled with its own coordinates; ``select`` fixes some of them to one value instead.

    Args:
      result: a sweep with ``x`` and ``y`` among its axes.
      x, y: axis names for the horizontal and vertical directions.
      select: values of further grid axes to keep, e.g. ``{"noise_rate": 0.2}``; the others become rows.
      title: figure title (default: the settings every panel shares, read from the result).
      boundary: optional (len(y values), len(x values)) array; its 0.5 level is drawn over every panel, e.g. a
        predicted region (True inside) from ``jaxbo.theory``.
      boundary_label: legend text of that line.

    Returns:
      A matplotlib ``Figure`` with three ``pcolormesh`` panels per row and colour bars.
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.figure import Figure

    rows = _plane_indexers(result, x, y, select)
    xs, ys = result.coords[x], result.coords[y]
    x_edges, y_edges = cell_edges(xs), cell_edges(ys)
    if boundary is not None:
        level = np.asarray(boundary, np.float64)
        if level.shape != (len(ys), len(xs)):
            raise ValueError(f"boundary has shape {level.shape}, expected {(len(ys), len(xs))} (y values, x values)")
    # A bare Figure (no pyplot): no global state, no GUI backend needed.
    figure = Figure(figsize=(15, 0.4 + 4.2 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), 3, squeeze=False)
    train, test = result.mean("train_accuracy"), result.mean("test_accuracy")
    regimes = result.majority_regime()
    for (label, plane), row in zip(rows, axes, strict=True):
        suffix = f" ({label})" if label else ""
        for axis, values, name in ((row[0], train, "train accuracy"), (row[1], test, "test accuracy")):
            mesh = axis.pcolormesh(x_edges, y_edges, plane(values), cmap="viridis", vmin=0.5, vmax=1.0)
            figure.colorbar(mesh, ax=axis, label=f"{name} (mean of {result.seeds} seeds)")
            axis.set_title(name + suffix)
        mesh = row[2].pcolormesh(
            x_edges,
            y_edges,
            plane(regimes),
            cmap=ListedColormap(REGIME_COLOURS),
            norm=BoundaryNorm([-0.5, 0.5, 1.5, 2.5], 3),
        )
        bar = figure.colorbar(mesh, ax=row[2], ticks=[0, 1, 2])
        bar.ax.set_yticklabels(REGIME_NAMES)
        row[2].set_title(f"regime (majority; benign: test ≥ {1 - result.regime_tolerance:g}){suffix}")
        for axis in row:
            axis.set_xlabel(LABELS.get(x, x))
            axis.set_ylabel(LABELS.get(y, y))
            if boundary is not None:
                axis.contour(xs, ys, level, levels=[0.5], colors="black", linewidths=2)
                axis.plot([], [], color="black", linewidth=2, label=boundary_label)
                axis.legend(loc="upper right", fontsize="small")
    figure.suptitle(_fixed_settings(result, {x, y}) if title is None else title)
    return figure


def dynamics(run, *, title: str | None = None, saturation: bool = False) -> Figure:
    """The paper's Figure-3-style panels for one ``Run``: attention per token role over training for clean
    samples and for noisy samples, and train/test accuracy (with the noisy-fit rate) over training; with
    ``saturation=True`` a fourth panel shows the cumulative 𝔖 per class over clean and noisy samples
    (the quantities of the paper's Eq. 9 and 10).

    ``run`` must come from ``simulate`` (a single run with histories), not a vmapped batch.
    """
    from matplotlib.figure import Figure

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
