"""Figures: the (d, ‖μ‖) phase diagram of a sweep and the training dynamics of one run.

matplotlib is imported inside the functions that draw, so ``import jaxbo`` does not pay for it (~0.5 s).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from jaxbo import engines
from jaxbo.data import ROLE_NAMES
from jaxbo.results import SweepResult
from jaxbo.theory import REGIME_NAMES
from jaxbo.theory import regime as regime_code

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn: ``import jaxbo`` stays fast
    from matplotlib.figure import Figure

REGIME_COLOURS = ("#4daf4a", "#e41a1c", "#377eb8")  # benign, harmful, not overfitting
#: A regime panel's codes beyond ``theory.REGIME_NAMES``: cells whose seeds split evenly between regimes.
TIE = len(REGIME_NAMES)
PANEL_REGIMES = (*REGIME_NAMES, "tie")
PANEL_COLOURS = (*REGIME_COLOURS, "#bdbdbd")
#: The limit's regime panel: the three regimes, unsettled and infeasible runs' cells, then ties.
LIMIT_PANEL_REGIMES = (*REGIME_NAMES, "unsettled", "infeasible", "tie")
LIMIT_PANEL_COLOURS = (*REGIME_COLOURS, "#984ea3", "#252525", "#bdbdbd")
LIMIT_TIE = len(LIMIT_PANEL_REGIMES) - 1
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
    """Edges of the cells around sorted ``centres`` (len + 1): midpoints inside, the data's ends outside.

    The outer cells end at the first and last grid values rather than half a step beyond them, so no cell is
    drawn where nothing ran (half a step below a coarse grid's first ‖μ‖ or d can be negative). A single value
    gets a cell of width 1 around it.
    """
    centres = np.asarray(centres, np.float64)
    if centres.size == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    middle = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[centres[0]], middle, [centres[-1]]])


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


def model_name(config) -> str:
    """The model a run trained, in words (its engines' ``Engine.title``): the attention model with its W, or the
    encoder with its MLP width."""
    for engine in engines.for_model(config.model):
        if engine.title is not None:
            return engine.title(config)
    return f"{config.model} model"


def _fixed_settings(result: SweepResult, varying: set[str]) -> str:
    """The settings every panel shares, from the result itself (fields on a grid axis are left out)."""
    config = result.config
    parts = [model_name(config), f"n={config.n_train}", f"T={config.T}", f"layout={config.layout}"]
    for name in ("noise_rate", "rho", "sigma", "lr", "d", "signal_norm"):
        if name not in varying and name not in result.dims:
            parts.append(f"{SYMBOLS[name]}={_number(getattr(config, name))}")
    parts.append(_count(config.steps, "step"))
    parts.append(_count(result.seeds, "seed"))
    parts.append(f"engine={result.metadata.get('engine')}")
    return ", ".join(parts)


def is_geometric(values: np.ndarray) -> bool:
    """Whether sorted positive ``values`` (>= 3) are evenly spaced in log (so log axes show them evenly)."""
    values = np.asarray(values, np.float64)
    if values.size < 3 or np.any(values <= 0):
        return False
    ratios = np.diff(np.log(values))
    return bool(np.allclose(ratios, ratios[0], rtol=0.05) and not np.allclose(np.diff(values), np.diff(values)[0]))


def log_cell_edges(centres: np.ndarray) -> np.ndarray:
    """``cell_edges`` in log space: geometric midpoints, for a geometric grid on log axes."""
    return np.exp(cell_edges(np.log(np.asarray(centres, np.float64))))


METRIC_TITLES = {
    "train_accuracy": "train accuracy",
    "test_accuracy": "test accuracy",
    "train_loss": "train loss",
    "test_loss": "test loss",
    "noisy_fit": "noisy samples fitted",
    "fit_by_attention": "noisy fitted by attention",
    "fit_by_head": "noisy fitted, relevant token most attended",
    "head_noise_share": "noisy margin from the head's noise part",
    "limit_test_accuracy": "t → ∞ limit: test accuracy",
    "limit_train_accuracy": "t → ∞ limit: train accuracy",
    "limit_noisy_fit": "t → ∞ limit: noisy samples fitted",
    "limit_test_loss": "t → ∞ limit: test loss",
    "limit_correlation": "cos(p, p_mm)",
    "limit_regime": "t → ∞ limit: regime",
    "regime": "regime",
}


def _seeds_text(seeds: int) -> str:
    return "1 seed" if seeds == 1 else f"mean of {seeds} seeds"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def plain_number(value: float) -> str:
    """A tick label without exponents: 250, 1,000,000, 0.005."""
    value = float(value)
    if abs(value) >= 1 and value == round(value):
        return f"{round(value):,}"
    return f"{value:.3g}"


def grid_ticks(axis, which: str, values: np.ndarray, most: int | None = None) -> None:
    """Ticks of a log-scaled grid axis at grid values (at most ``most``, evenly spread, ends included), labelled
    as plain numbers; the log scale's own minor labels would overprint and miss every grid value. By default
    a horizontal axis with labels wider than 5 characters gets 4 ticks, else 6."""
    values = np.asarray(values, np.float64)
    if most is None:
        most = 4 if which == "x" and max(len(plain_number(value)) for value in values) > 5 else 6
    chosen = values[np.unique(np.round(np.linspace(0, len(values) - 1, min(most, len(values)))).astype(int))]
    set_ticks = axis.set_xticks if which == "x" else axis.set_yticks
    set_ticks(chosen, [plain_number(value) for value in chosen])
    set_ticks([], minor=True)


def regime_panel(result: SweepResult, limit: bool = False) -> np.ndarray:
    """The codes a regime panel draws, (*grid_shape,): each cell's majority regime, or ``TIE`` where two
    regimes share the most seeds (the summary and the cell table call those ties too). With ``limit``, the
    limit's majority (``LIMIT_PANEL_REGIMES``: unsettled and infeasible cells as their own) or ``LIMIT_TIE``."""
    if limit:
        return np.where(result.tied(True), LIMIT_TIE, result.majority_regime(True)).astype(np.int32)
    return np.where(result.tied(), TIE, result.majority_regime()).astype(np.int32)


#: Metrics with a fixed [0, 1] colour scale: a fraction of samples, so 1 always gets the top colour.
FRACTIONS = (
    "train_accuracy",
    "test_accuracy",
    "clean_accuracy",
    "noisy_fit",
    "max_attention",
    "fit_by_attention",
    "fit_by_head",
    "limit_train_accuracy",
    "limit_noisy_fit",
)
#: Accuracies whose colour scale splits at the benign threshold 1 − ε, so the drop that makes a cell harmful shows.
THRESHOLDED = ("test_accuracy", "limit_test_accuracy")
REGIME_PANELS = ("regime", "limit_regime")


def _colour_range(name: str, values: np.ndarray) -> tuple[float, float]:
    """The colour range of a metric over every panel that shows it: [0, 1] for fractions (accuracies, noisy fit),
    else the data's 1st–99th percentile; a constant metric gets a range centred on its value."""
    if name in FRACTIONS:
        return 0.0, 1.0
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(finite, [1, 99]))
    if high - low <= 1e-6 * max(1.0, abs(low)):  # constant: mid colour, a readable colour bar
        half = 0.1 * abs(low) if low else 0.5
        return low - half, low + half
    return low, high


def colour_panel(figure, axis, edges, data: np.ndarray, name: str, result: SweepResult, colour_range, suffix: str):
    """One phase-diagram panel: the majority regime in the regime colours, or a metric's seed means on
    ``colour_range`` (low, high), with its colour bar and title."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    x_edges, y_edges = edges
    if name in REGIME_PANELS:
        limit = name == "limit_regime"
        names, palette = (LIMIT_PANEL_REGIMES, LIMIT_PANEL_COLOURS) if limit else (PANEL_REGIMES, PANEL_COLOURS)
        count = len(names)
        colours, norm = ListedColormap(palette), BoundaryNorm(np.arange(count + 1) - 0.5, count)
        mesh = axis.pcolormesh(x_edges, y_edges, data, cmap=colours, norm=norm)
        bar = figure.colorbar(mesh, ax=axis, ticks=np.arange(count))
        bar.ax.set_yticklabels(names)
        what = "t → ∞ limit, majority" if limit else "majority"
        axis.set_title(f"regime ({what}; benign: test ≥ {1 - result.regime_tolerance:g}){suffix}")
        return
    low, high = colour_range
    cmap = "magma" if name.endswith("loss") else "viridis"
    # limit_mean: an unsettled run's numbers are no limit, so a limit panel averages the settled runs alone.
    seeds = "settled runs' mean" if name.startswith("limit_") else _seeds_text(result.seeds)
    label = f"{METRIC_TITLES.get(name, name)} ({seeds})"
    if name in THRESHOLDED:
        from matplotlib.colors import TwoSlopeNorm

        threshold = 1.0 - result.regime_tolerance
        mesh = axis.pcolormesh(x_edges, y_edges, data, cmap=cmap, norm=TwoSlopeNorm(threshold, low, high))
        bar = figure.colorbar(mesh, ax=axis, label=f"{label}\ncolours split at 1 − ε = {threshold:g} (line)")
        bar.ax.axhline(threshold, color="white", linewidth=1.5)
        # The upper half spans only ε: without ticks of its own it would show "1.00" alone.
        ticks = [*np.linspace(low, threshold, 4)[:-1], threshold, high]
        bar.set_ticks(ticks, labels=[f"{tick:.3f}" for tick in ticks])
    else:
        mesh = axis.pcolormesh(x_edges, y_edges, data, cmap=cmap, vmin=low, vmax=high)
        figure.colorbar(mesh, ax=axis, label=label)
    axis.set_title(METRIC_TITLES.get(name, name) + suffix)


def thresholded_range(values: np.ndarray, tolerance: float) -> tuple[float, float]:
    """Colour range of a thresholded accuracy: from its lowest value (at most 1 − 4ε, so the threshold 1 − ε
    never sits at the scale's end) to 1; the colours split at 1 − ε, benign cells above it."""
    finite = values[np.isfinite(values)]
    low = min(float(finite.min()) if finite.size else 0.0, 1.0 - 4 * tolerance)
    return max(low, 0.0), 1.0


def phase_diagram(
    result: SweepResult,
    *,
    x: str = "d",
    y: str = "signal_norm",
    metrics: tuple[str, ...] | None = None,
    select: Mapping[str, float] | None = None,
    title: str | None = None,
    theory: bool = False,
    snr_levels: tuple[float, ...] | None = None,
    boundary: np.ndarray | None = None,
    boundary_label: str = "predicted boundary",
    limit: bool = False,
) -> Figure:
    """Panels of seed means (and the majority regime) over the (x, y) grid, one panel per metric.

    A sweep with further axes (e.g. ``noise_rate``) gets one row of panels per combination of their values,
    each row titled with its own coordinates; ``select`` fixes some of them to one value instead. Test accuracy
    runs from its lowest value to 1 with the colours split at the benign threshold 1 − ε (marked on its colour
    bar), so the drop that makes a cell harmful shows; other fractions (train accuracy, noisy fit) are drawn on
    a fixed [0, 1] scale; any other metric's colour range is its data's 1st–99th percentile, so small
    differences show. Every row shares each metric's colour scale. The regime panel draws cells whose seeds tie
    between regimes as ``tie`` (grey). Cells end at the grid's first and last values. A geometric axis is drawn
    on a log scale, ticked at grid values in plain numbers. The title names the model.

    Args:
      result: a sweep with ``x`` and ``y`` among its axes.
      x, y: axis names for the horizontal and vertical directions.
      metrics: panels, from ``train_accuracy``, ``test_accuracy``, ``train_loss``, ``test_loss`` (the paper's
        Figure 5), ``noisy_fit`` and ``regime``, or any other scalar ``Metrics`` field; for a sweep with
        ``limit=True`` also ``limit_regime`` and any scalar ``limit_<field>`` (means over settled runs).
        Default: train accuracy, test accuracy and regime, and with ``limit`` the limit's test accuracy and
        regime beside them.
      select: values of further grid axes to keep, e.g. ``{"noise_rate": 0.2}``; the others become rows.
      title: figure title (default: the settings every panel shares, read from the result).
      theory: (x = d, y = signal_norm only) draw the measured boundaries (``analysis.boundaries``, with
        bootstrap errors) and their fitted lines ‖μ‖ ∝ d^b (``analysis.fit_boundaries``, exponent and 95 % CI
        against the theory's ¼ and ½ in the legend), and SNR = ‖μ‖/(σ√d) contour lines.
      snr_levels: SNR values of the contour lines (default: powers of 10 inside the grid) when ``theory``.
      boundary: optional (len(y values), len(x values)) array; its 0.5 level is drawn over every panel, e.g. a
        predicted region (True inside) from ``jaxbo.theory``.
      boundary_label: legend text of that line.
      limit: draw the runs' t → ∞ limit beside the horizon (needs ``sweep(..., limit=True)``): its regime
        panel marks unsettled and infeasible cells, and with ``theory`` the limit's own boundaries and fits
        are drawn on the limit's panels.

    Returns:
      A matplotlib ``Figure`` with one ``pcolormesh`` panel per metric per row, with colour bars.
    """
    from matplotlib.figure import Figure

    metrics = _panels(result, metrics, limit)
    rows = _plane_indexers(result, x, y, select)
    xs, ys = np.asarray(result.coords[x]), np.asarray(result.coords[y])
    log_x, log_y = is_geometric(xs), is_geometric(ys)
    x_edges = log_cell_edges(xs) if log_x else cell_edges(xs)
    y_edges = log_cell_edges(ys) if log_y else cell_edges(ys)
    if boundary is not None:
        level = np.asarray(boundary, np.float64)
        if level.shape != (len(ys), len(xs)):
            raise ValueError(f"boundary has shape {level.shape}, expected {(len(ys), len(xs))} (y values, x values)")
    if theory and (x, y) != ("d", "signal_norm"):
        raise ValueError(f"theory=True needs x='d' and y='signal_norm', got x={x!r}, y={y!r}")
    values = {name: _panel_values(result, name) for name in metrics}
    # One colour scale per metric across every row, from the panels drawn (``select`` may drop some).
    drawn = {
        name: np.stack([plane(values[name]) for _, plane in rows]) for name in metrics if name not in REGIME_PANELS
    }
    ranges = {
        name: thresholded_range(panels, result.regime_tolerance) if name in THRESHOLDED else _colour_range(name, panels)
        for name, panels in drawn.items()
    }
    # A bare Figure (no pyplot): no global state, no GUI backend needed.
    figure = Figure(figsize=(5 * len(metrics), 0.4 + 4.2 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), len(metrics), squeeze=False)
    legend_handles: list = []
    legend_labels: list[str] = []
    for (label, plane), row in zip(rows, axes, strict=True):
        suffix = f" ({label})" if label else ""
        for axis, name in zip(row, metrics, strict=True):
            colour_panel(figure, axis, (x_edges, y_edges), plane(values[name]), name, result, ranges.get(name), suffix)
            axis.set_xlabel(LABELS.get(x, x))
            axis.set_ylabel(LABELS.get(y, y))
            axis.set_xscale("log" if log_x else "linear")
            axis.set_yscale("log" if log_y else "linear")
            if log_x:
                grid_ticks(axis, "x", xs)
            if log_y:
                grid_ticks(axis, "y", ys)
            if boundary is not None:
                axis.contour(xs, ys, level, levels=[0.5], colors="black", linewidths=2)
                axis.plot([], [], color="black", linewidth=2, label=boundary_label)
                axis.legend(loc="upper right", fontsize="small")
        if theory:
            row_select = {**(select or {}), **_row_coordinates(result, x, y, label)}
            handles, labels = _row_theory(result, row, metrics, row_select, snr_levels, (x_edges, y_edges))
            legend_handles += handles
            legend_labels += [f"{text} ({label})" if label else text for text in labels]
    if legend_handles:  # below the panels, outside them, so it never covers data; grey, so white marks show
        figure.legend(
            legend_handles,
            legend_labels,
            loc="outside lower center",
            ncols=2,
            fontsize="small",
            facecolor="0.82",
            framealpha=1.0,
        )
    figure.suptitle(_fixed_settings(result, {x, y}) if title is None else title)
    return figure


def _panels(result: SweepResult, metrics, limit: bool) -> tuple[str, ...]:
    """The panels to draw: ``metrics``, or the default (with the limit's beside the horizon's for ``limit``)."""
    if limit and not result.has_limit:
        raise ValueError("limit=True needs a sweep with its runs' limit: jaxbo.sweep(..., limit=True)")
    if metrics is not None:
        return tuple(metrics)
    return ("train_accuracy", "test_accuracy", "regime") + (("limit_test_accuracy", "limit_regime") if limit else ())


def _row_theory(result: SweepResult, row, metrics, select: dict, snr_levels, edges) -> tuple[list, list[str]]:
    """The theory overlay of one row: the horizon's boundaries on its panels, the limit's on the limit's."""
    handles, labels = [], []
    for of_limit in (False, True):
        panels = [axis for axis, name in zip(row, metrics, strict=True) if name.startswith("limit_") == of_limit]
        if panels:
            found = _theory_overlay(result, panels, select, snr_levels, edges, limit=of_limit)
            handles, labels = handles + found[0], labels + found[1]
    return handles, labels


def _panel_values(result: SweepResult, name: str) -> np.ndarray:
    """What a panel draws, (*grid_shape,): regime codes for the regime panels, a settled-run mean for a limit
    metric (``SweepResult.limit_mean``), else the seed mean."""
    if name in REGIME_PANELS:
        return regime_panel(result, limit=name == "limit_regime")
    if name.startswith("limit_"):
        return result.limit_mean(name)
    return result.mean(name)


def _row_coordinates(result: SweepResult, x: str, y: str, label: str) -> dict[str, float]:
    """The further-axis values of a row, parsed back from its label (``η=0.1, ρ=0.2``)."""
    by_symbol = {SYMBOLS.get(name, name): name for name in result.dims[:-1] if name not in (x, y)}
    values = {}
    for part in filter(None, (text.strip() for text in label.split(","))):
        symbol, _, value = part.partition("=")
        values[by_symbol[symbol]] = float(value)
    return values


def _theory_overlay(
    result: SweepResult, row, select: dict, snr_levels, edges, limit: bool = False
) -> tuple[list, list[str]]:
    """Measured boundaries with errors, fitted ‖μ‖ ∝ d^b lines and SNR contours on every panel of ``row``
    (the limit's boundaries with ``limit``); returns the row's legend (handles, labels)."""
    from matplotlib import patheffects

    from jaxbo import analysis

    measured = analysis.boundaries(result, select=select, limit=limit)
    prefix = "t → ∞ limit: " if limit else ""
    fits = analysis.fit_boundaries(measured)
    d = np.asarray(result.coords["d"], np.float64)
    mu = np.asarray(result.coords["signal_norm"], np.float64)
    sigma = result.config.sigma
    snr = mu[:, None] / (sigma * np.sqrt(d[None, :]))
    if snr_levels is None:
        snr_levels = tuple(
            10.0**k for k in range(int(np.floor(np.log10(snr.min()))), int(np.ceil(np.log10(snr.max()))))
        )
    # White (not-overfitting) marks are drawn with black edges and the legend sits on grey, so every entry shows.
    styles = {"harmful": ("black", "o"), "not_overfitting": ("white", "s")}
    for axis in row:
        for kind, (colour, marker) in styles.items():
            name = kind.replace("_", " ")
            axis.errorbar(
                d,
                getattr(measured, kind),
                yerr=getattr(measured, f"{kind}_error"),
                fmt=marker,
                color=colour,
                ecolor="black",
                markeredgecolor="black",
                markersize=3,
                linewidth=0.8,
                label=f"{prefix}measured {name} boundary",
            )
            fit = fits[kind]
            if fit["reason"]:  # say on the figure why no exponent is drawn
                axis.plot([], [], linestyle="none", label=f"{prefix}{name}: no exponent fit, {fit['reason']}")
                continue
            low, high = fit["slope_ci"]
            line_d = np.geomspace(min(fit["d"]), max(fit["d"]), 100)  # only where the boundary was measured
            axis.plot(
                line_d,
                np.exp(fit["intercept"]) * line_d ** fit["slope"],
                "--",
                color=colour,
                linewidth=1.5,
                path_effects=[patheffects.Stroke(linewidth=3, foreground="black"), patheffects.Normal()],
                label=f"{prefix}{name} fit ‖μ‖ ∝ d^{fit['slope']:.2f} [{low:.2f}, {high:.2f}] "
                f"(theory {fit['theory_slope']:g})",
            )
        if snr_levels:
            lines = axis.contour(d, mu, snr, levels=sorted(snr_levels), colors="grey", linewidths=0.7, linestyles=":")
            axis.clabel(lines, fmt=lambda v: f"SNR={v:g}", fontsize="x-small")
        axis.set_xlim(edges[0][0], edges[0][-1])
        axis.set_ylim(edges[1][0], edges[1][-1])
    handles, labels = row[0].get_legend_handles_labels()
    return handles, labels


def dynamics(run, *, title: str | None = None, saturation: bool = False) -> Figure:
    """The paper's Figure-3-style panels for one ``Run``: attention per token role over training for clean
    samples and for noisy samples, and train/test accuracy (with the noisy-fit rate and the mean largest
    attention probability) over training (for the encoder, [CLS]'s attention); with
    ``saturation=True`` a fourth panel shows the cumulative 𝔖 per class over clean and noisy samples
    (the quantities of the paper's Eq. 9 and 10).

    ``run`` must come from ``simulate`` (a single run with histories), not a vmapped batch. ``title``
    defaults to the run's engine, steps and final accuracies (``""``: none).
    """
    from matplotlib.figure import Figure

    history = run.history
    steps = np.asarray(run.log_steps)
    if steps.ndim != 1:
        raise ValueError(f"dynamics needs one run; got log_steps of shape {steps.shape} (index the batch first)")
    figure = Figure(figsize=(20 if saturation else 15, 4.2), layout="constrained")
    axes = figure.subplots(1, 4 if saturation else 3)
    styles = ("-", "--", ":", "-.")
    # The encoder's attention is its [CLS] token's, whose mass on itself is not on any role.
    who = "[CLS] attention" if hasattr(run.params, "cls") else "attention"
    for axis, name, label in (
        (axes[0], "attention_clean", "clean samples"),
        (axes[1], "attention_noisy", "noisy samples"),
    ):
        values = np.asarray(getattr(history, name))
        for role, style in enumerate(styles):
            axis.plot(steps, values[:, role], style, label=ROLE_NAMES[role].replace("_", " "))
        axis.set_title(f"{who} on token roles, {label}")
        axis.set_xlabel("step")
        axis.set_ylabel("attention mass")
        axis.set_ylim(-0.02, 1.02)
        axis.legend()
    for name, label in (("train_accuracy", "train"), ("test_accuracy", "test"), ("noisy_fit", "noisy samples fitted")):
        axes[2].plot(steps, np.asarray(getattr(history, name)), label=label)
    axes[2].plot(steps, np.asarray(history.max_attention), ":", label="largest attention probability")
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
    if title is None:
        final = run.final
        title = (
            f"one run ({run.engine} engine, {_count(int(steps[-1]), 'step')}): train accuracy "
            f"{float(final.train_accuracy):.3f}, test accuracy {float(final.test_accuracy):.3f}, noisy samples fitted "
            f"{float(final.noisy_fit):.3f}"
        )
    if title:
        figure.suptitle(title)
    return figure


def selected_tokens(runs, *, titles: list[str] | None = None) -> Figure:
    """v3's Figure 1 from trained runs: for every sequence, the token attention selects most, projected on
    the μ₊₁ and μ₋₁ directions (x·μ₁/‖μ‖, x·μ₂/‖μ‖); training sequences above (coloured by observed label ỹ,
    noisy samples marked ×), test sequences below (coloured by label). The fixed head ν ∝ μ₁ − μ₂ decides
    on the sign of x·μ₁ − x·μ₂, so the decision boundary is the diagonal.

    Args:
      runs: one ``Run`` or a list (one column each, e.g. harmful, benign, not overfitting), each from
        ``simulate(..., keep_data=True)``.
      titles: a title per run (default: its regime); train and test accuracy are always added.
    """
    from matplotlib.figure import Figure

    from jaxbo.model import effective_query  # the attention the run's final query gives

    runs = [runs] if not isinstance(runs, list | tuple) else list(runs)
    if any(run.data is None for run in runs):
        raise ValueError("selected_tokens needs the runs' data: simulate(key, config, keep_data=True)")
    figure = Figure(figsize=(5.2 * len(runs), 9.6), layout="constrained")
    axes = figure.subplots(2, len(runs), squeeze=False)
    for column, run in enumerate(runs):
        query = np.asarray(effective_query(run.params))
        train_accuracy, test_accuracy = float(run.final.train_accuracy), float(run.final.test_accuracy)
        regime = REGIME_NAMES[int(np.asarray(regime_code(train_accuracy, test_accuracy)))]
        name = titles[column] if titles else regime
        for row, (dataset, which) in enumerate(zip(run.data, ("train", "test"), strict=True)):
            tokens = np.asarray(dataset.tokens)
            chosen = np.argmax(tokens @ query, axis=-1)  # the softmax's largest entry is the largest logit
            selected = tokens[np.arange(len(tokens)), chosen]
            scale = float(np.max(np.abs(selected[:, :2]))) * 1.1
            labels = np.asarray(dataset.labels)
            noisy = np.asarray(dataset.noisy_mask)
            axis = axes[row, column]
            for label, colour in ((1.0, "#377eb8"), (-1.0, "#e41a1c")):
                keep = (labels == label) & ~noisy
                axis.scatter(
                    selected[keep, 0],
                    selected[keep, 1],
                    s=10,
                    color=colour,
                    alpha=0.6,
                    label=f"{'ỹ' if which == 'train' else 'y'} = {label:+.0f}",
                )
                keep = (labels == label) & noisy
                if keep.any():
                    axis.scatter(
                        selected[keep, 0],
                        selected[keep, 1],
                        s=60,
                        color=colour,
                        marker="x",
                        label=f"noisy, ỹ = {label:+.0f}",
                    )
            axis.plot([-scale, scale], [-scale, scale], "k--", linewidth=1, label="decision boundary")
            axis.set_xlim(-scale, scale)
            axis.set_ylim(-scale, scale)
            axis.set_aspect("equal")
            axis.set_xlabel("selected token · μ₊₁/‖μ‖")
            axis.set_ylabel("selected token · μ₋₁/‖μ‖")
            accuracy = train_accuracy if which == "train" else test_accuracy
            axis.set_title(f"{name}\n{which} (accuracy {accuracy:.3f})", fontsize="medium")
            axis.legend(fontsize="x-small", loc="upper left")
    return figure


def head_attention(values, *, title: str | None = None) -> Figure:
    """The heads' specialisation: each head's mean attention per token role on clean and on noisy training
    samples (``Metrics.head_attention``), one bar group per head.

    Args:
      values: (H, 2, 4) attention (heads × [clean, noisy] × ``data.ROLE_NAMES``), e.g.
        ``run.final.head_attention``, or a ``Run`` (its final metrics are read), or the seed mean of a sweep
        cell (``result.final["head_attention"][cell].mean(0)``).
      title: figure title (default: "attention per role, per head").
    """
    from matplotlib.figure import Figure

    if hasattr(values, "final"):
        values = values.final.head_attention
    values = np.asarray(values, np.float64)
    if values.ndim != 3 or values.shape[1:] != (2, len(ROLE_NAMES)):
        raise ValueError(f"head_attention needs an (H, 2, {len(ROLE_NAMES)}) array, got shape {values.shape}")
    heads = values.shape[0]
    figure = Figure(figsize=(5.5 + 0.6 * heads, 4.2), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    width = 0.8 / len(ROLE_NAMES)
    for axis, group, label in zip(axes, range(2), ("clean samples", "noisy samples"), strict=True):
        for role, name in enumerate(ROLE_NAMES):
            axis.bar(np.arange(heads) + (role - 1.5) * width, values[:, group, role], width, label=name)
        axis.set_xticks(np.arange(heads), [f"head {h + 1}" for h in range(heads)])
        axis.set_ylim(0, 1)
        axis.set_title(label)
    axes[0].set_ylabel("mean attention")
    axes[1].legend(fontsize="small")
    figure.suptitle("attention per role, per head" if title is None else title)
    return figure
