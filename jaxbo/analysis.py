"""Analysis of a finished sweep: where the regimes switch on the (d, ‖μ‖) plane, and the exponents of those
boundaries in d (and in n across sweeps), against the paper's SNR theory (docs/model.md §7).

Pure numpy over a ``SweepResult``; nothing here traces or compiles. (These functions lived in ``jaxbo.theory``
before 0.2; ``theory`` keeps the paper's formulas.)
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from jaxbo.results import SweepResult
from jaxbo.theory import BENIGN, HARMFUL, NOT_OVERFITTING

# --- Measured regime boundaries and their exponents (docs/model.md §7: SNR = ‖μ‖/(σ√d)) -------------------------------
# [exact] v3: harmful for SNR = o(d^(−1/4)), not overfitting for SNR = ω(n^(−1/2)). [reading] In the (d, ‖μ‖)
# plane: harmful below ‖μ‖ ≈ c_h σ d^(1/4) (slope ¼ in log–log), not overfitting above ‖μ‖ ≈ c_no σ √(d/n)
# (slope ½). The constants are not in the paper's recoverable text: they are estimated here from runs.

THEORY_SLOPES = {"harmful": 0.25, "not_overfitting": 0.5}


@dataclasses.dataclass(frozen=True)
class Boundaries:
    """Measured regime boundaries of a (d, ‖μ‖) sweep, one per d.

    Attributes:
      d: (D,) the sweep's d values.
      harmful: (D,) ‖μ‖ where the majority regime switches from harmful to benign (NaN: no switch on the grid).
      not_overfitting: (D,) ‖μ‖ where it switches from benign to not overfitting (NaN: none).
      harmful_error, not_overfitting_error: (D,) bootstrap standard deviations (over seeds) of the above.
      harmful_replicates, not_overfitting_replicates: (B, D) the bootstrap replicates (for fits).
      n_train, sigma: the sweep's n and σ (the boundaries' scale).
    """

    d: np.ndarray
    harmful: np.ndarray
    not_overfitting: np.ndarray
    harmful_error: np.ndarray
    not_overfitting_error: np.ndarray
    harmful_replicates: np.ndarray
    not_overfitting_replicates: np.ndarray
    n_train: int
    sigma: float


def _switch(lower: np.ndarray, upper: np.ndarray, signal_norms: np.ndarray, *, last: bool) -> np.ndarray:
    """‖μ‖ where ``upper − lower`` (seed fractions, (..., M) over increasing ‖μ‖) turns from < 0 to >= 0,
    interpolated linearly in log ‖μ‖; the first such turn (``last=False``) or the last one. NaN where there is
    none. Boundaries are searched from the side of their own region (the harmful one from small ‖μ‖, the
    not-overfitting one from large ‖μ‖), so a stray seed on the far side of the grid cannot move them."""
    difference = upper - lower
    below = difference < 0
    crossing = below[..., :-1] & ~below[..., 1:]
    found = crossing.any(axis=-1)
    if last:
        j = crossing.shape[-1] - 1 - np.argmax(crossing[..., ::-1], axis=-1)
    else:
        j = np.argmax(crossing, axis=-1)
    x = np.log(signal_norms)
    left = np.take_along_axis(difference, j[..., None], -1)[..., 0]
    right = np.take_along_axis(difference, j[..., None] + 1, -1)[..., 0]
    share = np.where(right != left, -left / np.where(right != left, right - left, 1.0), 0.0)
    position = np.where(found, x[j] + share * (x[j + 1] - x[j]), np.nan)
    return np.exp(position)


def boundaries(
    result, *, select: dict | None = None, bootstraps: int = 200, seed: int = 0, limit: bool = False
) -> Boundaries:
    """The ‖μ‖ of each regime switch at every d of a ``SweepResult`` over (d, ‖μ‖) × seeds.

    At each d, the seed fractions of the three regimes are taken along increasing ‖μ‖; the harmful boundary is
    where the harmful fraction falls below the benign one, the not-overfitting boundary where the
    not-overfitting fraction rises to the benign one — each interpolated between grid points (in log ‖μ‖),
    not picked as a cell. Uncertainty: resampling seeds with replacement ``bootstraps`` times.

    Args:
      result: a sweep with axes ``d`` and ``signal_norm``; any other axis must be fixed by ``select``.
      select: values of further axes, e.g. ``{"noise_rate": 0.2}``.
      bootstraps: bootstrap replicates (0: no uncertainty, errors NaN).
      seed: the bootstrap's numpy seed.
      limit: locate the boundaries of the runs' t → ∞ limit (``SweepResult.limit_regime``, a sweep with
        ``limit=True``) instead of the horizon's: the fractions are over every seed, so unsettled and infeasible
        runs count for no regime.
    """
    codes = _plane_codes(result, select, limit)  # (D, M, S), ‖μ‖ increasing
    signal_norms = np.sort(np.asarray(result.coords["signal_norm"], np.float64))
    rng = np.random.default_rng(seed)
    seeds = codes.shape[-1]
    draws = [np.arange(seeds)] + [rng.integers(0, seeds, seeds) for _ in range(bootstraps)]
    estimates = []
    for draw in draws:
        fractions = [np.mean(codes[..., draw] == code, axis=-1) for code in (BENIGN, HARMFUL, NOT_OVERFITTING)]
        benign, harmful, not_overfitting = fractions
        estimates.append(
            (
                _switch(harmful, benign, signal_norms, last=False),
                _switch(benign, not_overfitting, signal_norms, last=True),
            )
        )
    harmful_all = np.stack([e[0] for e in estimates])
    not_all = np.stack([e[1] for e in estimates])

    def spread(replicates: np.ndarray) -> np.ndarray:
        if bootstraps == 0:
            return np.full(replicates.shape[1:], np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a d without any switch stays NaN
            return np.nanstd(replicates, axis=0)

    return Boundaries(
        d=np.asarray(result.coords["d"]),
        harmful=harmful_all[0],
        not_overfitting=not_all[0],
        harmful_error=spread(harmful_all[1:]),
        not_overfitting_error=spread(not_all[1:]),
        harmful_replicates=harmful_all[1:],
        not_overfitting_replicates=not_all[1:],
        n_train=int(result.config.n_train),
        sigma=float(result.config.sigma),
    )


def _plane_codes(result, select, limit: bool = False) -> np.ndarray:
    """Regime codes (D, M, S) on the (d, ‖μ‖) plane, ‖μ‖ sorted increasing; other axes fixed by ``select``."""
    dims = list(result.dims[:-1])
    for name in ("d", "signal_norm"):
        if name not in dims:
            raise ValueError(f"boundaries need a sweep over d and signal_norm; its axes are {dims}")
    select = dict(select or {})
    index = []
    for name in dims:
        if name in ("d", "signal_norm"):
            index.append(slice(None))
        elif name in select:
            matches = np.flatnonzero(np.isclose(result.coords[name], select[name]))
            if not matches.size:
                raise ValueError(f"select[{name!r}] = {select[name]!r} is not a grid value: {result.coords[name]}")
            index.append(int(matches[0]))
        elif len(result.coords[name]) == 1:
            index.append(0)
        else:
            raise ValueError(
                f"axis {name!r} has {len(result.coords[name])} values: fix one with select={{{name!r}: v}}"
            )
    codes = np.asarray(result.limit_regime if limit else result.regime)[tuple(index)]
    if dims.index("d") > dims.index("signal_norm"):
        codes = np.swapaxes(codes, 0, 1)
    order = np.argsort(np.asarray(result.coords["signal_norm"]))
    return codes[:, order]


def _line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


#: A boundary's exponent is fitted only over d values spanning at least this factor (largest / smallest):
#: over a narrower span, log d barely varies and the slope is set by the seed noise of a few points.
MIN_D_SPAN = 4.0


def fit_boundaries(
    measured, *, min_points: int = 3, min_span: float = MIN_D_SPAN, limit: bool = False
) -> dict[str, dict]:
    """Fit log ‖μ‖ = a + b·log d to each measured boundary; b against the theory's ¼ (harmful) and ½ (not
    overfitting), and the constants c_h = ‖μ‖/(σ d^(1/4)), c_no = ‖μ‖/(σ√(d/n)) (geometric means over d).

    Confidence intervals (95 %, percentile) come from refitting every bootstrap replicate of ``boundaries``.

    Args:
      measured: ``Boundaries`` from ``boundaries(result)``, or a ``SweepResult`` over (d, ‖μ‖) (its boundaries
        are located first, with ``boundaries``' defaults).
      min_points: fewest d values with a boundary for a fit.
      min_span: smallest ratio of the largest to the smallest of those d values for a fit.
      limit: with a ``SweepResult``, fit the boundaries of its t → ∞ limit (``boundaries(result, limit=True)``).

    Returns:
      {"harmful": {...}, "not_overfitting": {...}}, each with ``slope``, ``slope_ci``, ``theory_slope``,
      ``intercept``, ``constant`` (c_h or c_no), ``constant_ci``, ``d`` (the d values used), ``points`` and
      ``reason``: ``""`` for a fit, else why there is none (``slope`` and the rest NaN): fewer than
      ``min_points`` d values with a boundary, or a span of d below ``min_span``.
    """
    if isinstance(measured, SweepResult):
        measured = boundaries(measured, limit=limit)
    if not isinstance(measured, Boundaries):
        raise TypeError(f"fit_boundaries takes boundaries(result) or a SweepResult, got {type(measured).__name__}")
    fits = {}
    for kind, theory_slope in THEORY_SLOPES.items():
        values = getattr(measured, kind)
        replicates = getattr(measured, f"{kind}_replicates")
        scale = measured.sigma * (
            np.sqrt(measured.d / measured.n_train) if kind == "not_overfitting" else measured.d**0.25
        )
        used = np.isfinite(values)
        span = float(measured.d[used].max() / measured.d[used].min()) if used.any() else 1.0
        reason = ""
        if used.sum() < min_points:
            reason = f"a boundary at {int(used.sum())} value(s) of d (a fit needs >= {min_points})"
        elif span < min_span:
            reason = f"d values with a boundary span ×{span:.2g} (a fit needs >= ×{min_span:g})"
        fit = {"theory_slope": theory_slope, "d": measured.d[used].tolist(), "points": int(used.sum())}
        fit["reason"] = reason
        if reason:
            fits[kind] = {
                **fit,
                "slope": np.nan,
                "slope_ci": (np.nan, np.nan),
                "intercept": np.nan,
                "constant": np.nan,
                "constant_ci": (np.nan, np.nan),
            }
            continue
        x = np.log(measured.d[used].astype(np.float64))
        slope, intercept = _line_fit(x, np.log(values[used]))
        slopes, constants = [], []
        for replicate in replicates:
            inside = used & np.isfinite(replicate)
            if inside.sum() >= min_points:
                slopes.append(_line_fit(np.log(measured.d[inside].astype(np.float64)), np.log(replicate[inside]))[0])
                constants.append(np.exp(np.mean(np.log(replicate[inside] / scale[inside]))))
        fits[kind] = {
            **fit,
            "slope": slope,
            "slope_ci": tuple(np.percentile(slopes, [2.5, 97.5]).tolist()) if slopes else (np.nan, np.nan),
            "intercept": intercept,
            "constant": float(np.exp(np.mean(np.log(values[used] / scale[used])))),
            "constant_ci": tuple(np.percentile(constants, [2.5, 97.5]).tolist()) if constants else (np.nan, np.nan),
        }
    return fits


def n_exponent(measured: list[Boundaries], *, min_points: int = 2) -> dict:
    """How the not-overfitting boundary moves with n at fixed d: the slope b of log ‖μ‖ = a_d + b·log n (one
    intercept per d, pooled over the d values every sweep shares), against the theory's −½.

    Args:
      measured: ``boundaries`` of sweeps that differ in ``n_train`` (n fixes shapes, so one sweep per n).

    Returns:
      {"slope", "slope_ci" (bootstrap 95 %), "theory_slope": −0.5, "n": [...], "d": [...]}.
    """
    if len(measured) < min_points or len({m.n_train for m in measured}) < min_points:
        raise ValueError(f"n_exponent needs boundaries of >= {min_points} sweeps with different n_train")
    common = sorted(set.intersection(*(set(m.d.tolist()) for m in measured)))

    def pooled(rows: list[np.ndarray]) -> float:
        xs, ys = [], []
        logs = np.log([m.n_train for m in measured])
        for column in range(len(common)):
            values = np.array([row[column] for row in rows])
            ok = np.isfinite(values)
            if ok.sum() >= min_points:
                xs.append(logs[ok] - logs[ok].mean())
                ys.append(np.log(values[ok]) - np.log(values[ok]).mean())
        if not xs:
            return np.nan
        x, y = np.concatenate(xs), np.concatenate(ys)
        return float(np.sum(x * y) / np.sum(x * x))

    def at_common(m: Boundaries, values: np.ndarray) -> np.ndarray:
        return np.array([values[list(m.d).index(d)] for d in common])

    slope = pooled([at_common(m, m.not_overfitting) for m in measured])
    count = min(len(m.not_overfitting_replicates) for m in measured)
    slopes = [pooled([at_common(m, m.not_overfitting_replicates[b]) for m in measured]) for b in range(count)]
    slopes = [s for s in slopes if np.isfinite(s)]
    return {
        "slope": slope,
        "slope_ci": tuple(np.percentile(slopes, [2.5, 97.5]).tolist()) if slopes else (np.nan, np.nan),
        "theory_slope": -0.5,
        "n": [m.n_train for m in measured],
        "d": common,
    }
