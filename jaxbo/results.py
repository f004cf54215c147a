"""``SweepResult``: the numbers of a sweep as named numpy arrays, saved as ``.npz`` + ``.json`` (no pickle)."""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from typing import Any

import numpy as np

from jaxbo.config import LATER_FIELDS, Config, field_names
from jaxbo.theory import (
    REGIME_NAMES,
    class_balance,
    clean_dominance,
    first_time,
    regime,
)

#: Default ε of the benign/harmful split: benign needs test accuracy >= 1 − ε.
REGIME_TOLERANCE = 0.005
#: The format ``SweepResult.save`` writes and ``load`` reads.
FORMAT = "jaxbo.SweepResult/1"
#: Codes of a run's limit regime (``SweepResult.limit_regime``): the three regimes for settled runs, then the
#: runs whose limit is not a limit (unsettled or unsolved) and those whose attention SVM is infeasible.
LIMIT_REGIME_NAMES = (*REGIME_NAMES, "unsettled", "infeasible")
UNSETTLED_REGIME, INFEASIBLE_REGIME = len(REGIME_NAMES), len(REGIME_NAMES) + 1


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """Final (and optionally logged) metrics of every run of a sweep.

    Attributes:
      dims: axis names: the grid's fields in the grid's order, then ``"seed"``.
      coords: value array of each grid axis (the seed axis is ``arange(seeds)``).
      final: metric name → array (*grid_shape, seeds, *metric_shape), e.g. ``final["test_accuracy"]``;
        names as ``jaxbo.Metrics`` fields.
      history: metric name → array (*grid_shape, seeds, n_logs, *metric_shape), or empty when the sweep did not
        log histories.
      log_steps: (n_logs,) step counts of the history rows (empty without histories).
      config: the base configuration; each run used it with its grid coordinates substituted.
      metadata: JSON-able facts: versions, backend, devices, precision, engine, plan, timing, key.
      regime_tolerance: ε of ``regime`` (benign: every label fitted and test accuracy >= 1 − ε).
    """

    dims: tuple[str, ...]
    coords: dict[str, np.ndarray]
    final: dict[str, np.ndarray]
    history: dict[str, np.ndarray]
    log_steps: np.ndarray
    config: Config
    metadata: dict[str, Any]
    regime_tolerance: float = REGIME_TOLERANCE

    def __repr__(self) -> str:
        def axis(name: str) -> str:
            values = np.asarray(self.coords[name])
            if len(values) <= 4:
                shown = ", ".join(f"{float(v):g}" for v in values)
            else:
                shown = f"{float(values[0]):g}, {float(values[1]):g}, …, {float(values[-1]):g}"
            return f"    {name}: {len(values)} [{shown}]"

        lines = [
            f"SweepResult({' × '.join(f'{n}={len(self.coords[n])}' for n in self.dims)}; "
            f"{int(np.prod(self.grid_shape)) * self.seeds} runs, model {self.config.model!r}, "
            f"engine {self.metadata.get('engine')!r})",
            *(axis(name) for name in self.dims[:-1]),
            f"  metrics: {', '.join(sorted(self.final))}",
            f"  history: {len(self.log_steps)} logged rows" if self.history else "  history: none",
        ]
        if self.final:
            counts = self.regime_counts()
            lines.append(
                "  majority regime (cells): " + ", ".join(f"{n} {c}" for n, c in counts.items() if c or n != "tied")
            )
        if self.has_limit:
            counts = self.regime_counts(limit=True)
            settled = float(np.mean(self.settled_fraction()))
            shown = ", ".join(f"{n} {c}" for n, c in counts.items() if c or n in REGIME_NAMES)
            lines.append(f"  t → ∞ limit (cells): {shown}; settled runs {settled:.0%}")
        return "\n".join(lines)

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(len(self.coords[name]) for name in self.dims[:-1])

    @property
    def seeds(self) -> int:
        return len(self.coords["seed"])

    @property
    def regime(self) -> np.ndarray:
        """Regime code of every run, (*grid_shape, seeds): ``theory.BENIGN``, ``HARMFUL`` or ``NOT_OVERFITTING``.

        "Fitted" reads ``train_accuracy``, or for a model whose targets are not all attainable (the causal model,
        ``Metrics`` with ``attainable_fit``) the fit of the attainable ones; its ``test_accuracy`` is then the
        worst position's."""
        fit = self.final.get("attainable_fit", self.final["train_accuracy"])
        codes = regime(fit, self.final["test_accuracy"], self.regime_tolerance)
        return np.asarray(codes, np.int32)

    def position_regime(self) -> np.ndarray:
        """The causal model's regime at each prediction position τ = τ₀ … T, (*grid_shape, seeds, P): fitted
        where every target of that position that some token of its prefix can fit is fitted
        (``position_fit``), benign where its test accuracy (``position_accuracy``) is also >= 1 − ε."""
        if "position_accuracy" not in self.final:
            raise ValueError(
                f"position_regime is the causal model's; this sweep ran Config.model = {self.config.model!r}"
            )
        fit = np.nan_to_num(self.final["position_fit"], nan=1.0)  # no attainable target: nothing left unfitted
        return np.asarray(regime(fit, self.final["position_accuracy"], self.regime_tolerance), np.int32)

    @property
    def has_limit(self) -> bool:
        """Whether the sweep computed its runs' t → ∞ limit (``sweep(..., limit=True)``)."""
        return "limit_status" in self.final

    @property
    def limit_regime(self) -> np.ndarray:
        """Regime code of every run's t → ∞ limit, (*grid_shape, seeds), in ``LIMIT_REGIME_NAMES`` order: the
        three regimes of the limit's hard-selection accuracies for settled runs, ``UNSETTLED_REGIME`` for runs
        whose selection is not locally optimal (or whose SVM was not solved), ``INFEASIBLE_REGIME`` where no
        max-margin p exists."""
        from jaxbo.limit import INFEASIBLE, SETTLED

        status = self.limit_status()
        fit = self.final.get("limit_attainable_fit", self.final["limit_train_accuracy"])
        codes = regime(fit, self.final["limit_test_accuracy"], self.regime_tolerance)
        codes = np.where(status == SETTLED, codes, np.where(status == INFEASIBLE, INFEASIBLE_REGIME, UNSETTLED_REGIME))
        return np.asarray(codes, np.int32)

    def settled_fraction(self) -> np.ndarray:
        """Fraction of seeds whose limit is settled (certified), (*grid_shape,)."""
        from jaxbo.limit import SETTLED

        return np.mean(self.limit_status() == SETTLED, axis=-1)

    def limit_status(self) -> np.ndarray:
        """``limit.LIMIT_STATUS`` code of every run, (*grid_shape, seeds)."""
        if not self.has_limit:
            raise ValueError("this sweep computed no limit: rerun jaxbo.sweep(..., limit=True)")
        return np.asarray(self.final["limit_status"], np.int32)

    def limit_mean(self, name: str) -> np.ndarray:
        """Mean over a cell's *settled* runs of ``final[name]`` (e.g. ``"limit_test_accuracy"``), (*grid_shape,
        …); NaN where no run of the cell is settled: an unsettled run's hard-selection numbers are not a limit."""
        from jaxbo.limit import SETTLED

        values = self._metric(name).astype(np.float64)
        settled = self.limit_status() == SETTLED
        settled = settled.reshape(settled.shape + (1,) * (values.ndim - settled.ndim))
        return _nan_reduce(np.nanmean, np.where(settled, values, np.nan), axis=len(self.dims) - 1)

    def _codes(self, limit: bool) -> tuple[np.ndarray, tuple[str, ...]]:
        return (self.limit_regime, LIMIT_REGIME_NAMES) if limit else (self.regime, REGIME_NAMES)

    def regime_fractions(self, limit: bool = False) -> np.ndarray:
        """Fraction of seeds in each regime, (*grid_shape, 3) in ``theory.REGIME_NAMES`` order; with ``limit``
        of the runs' limit regimes, (*grid_shape, 5) in ``LIMIT_REGIME_NAMES`` order."""
        codes, names = self._codes(limit)
        return np.stack([(codes == r).mean(axis=-1) for r in range(len(names))], axis=-1)

    def majority_regime(self, limit: bool = False) -> np.ndarray:
        """Most frequent regime over seeds per grid cell, (*grid_shape,); ties go to the lower code
        (``tied`` says which cells have one). With ``limit``, of the limit regimes, unsettled and infeasible
        runs counted as their own categories (so a cell of mostly unsettled runs is ``UNSETTLED_REGIME``)."""
        return np.argmax(self.regime_fractions(limit), axis=-1).astype(np.int32)

    def tied(self, limit: bool = False) -> np.ndarray:
        """Whether two regimes share the most seeds in a cell (e.g. 5 benign, 5 harmful), (*grid_shape,) bool."""
        fractions = self.regime_fractions(limit)
        return np.sum(fractions == fractions.max(axis=-1, keepdims=True), axis=-1) > 1

    def regime_counts(self, limit: bool = False) -> dict[str, int]:
        """Cells per majority regime, with tied cells counted apart under ``"tied"`` (and, with ``limit``,
        cells whose majority is unsettled or infeasible under those names)."""
        _, names = self._codes(limit)
        majority, tied = self.majority_regime(limit), self.tied(limit)
        counts = {name: int(np.sum((majority == code) & ~tied)) for code, name in enumerate(names)}
        return {**counts, "tied": int(tied.sum())}

    def cell_table(self) -> str:
        """One line per grid cell: coordinates, seed means of train/test accuracy and noisy fit, the regimes
        over seeds and the majority (or ``tie``). For small grids: it has ``prod(grid_shape)`` lines."""
        names = list(self.dims[:-1])
        train, test, noisy = (self.mean(name) for name in ("train_accuracy", "test_accuracy", "noisy_fit"))
        fractions, majority, tied = self.regime_fractions(), self.majority_regime(), self.tied()
        header = [*names, "train acc", "test acc", "noisy fit", "regimes over seeds", "majority"]
        if self.has_limit:
            header += ["limit test acc (settled)", "limit over seeds", "limit majority"]
            limit_test = self.limit_mean("limit_test_accuracy")
            limit_fractions, limit_majority = self.regime_fractions(True), self.majority_regime(True)
            limit_tied = self.tied(True)
        rows = []
        for index in np.ndindex(*self.grid_shape):
            seeds = np.rint(fractions[index] * self.seeds).astype(int)
            regimes = ", ".join(f"{REGIME_NAMES[code]} {count}" for code, count in enumerate(seeds) if count)
            rows.append(
                [
                    *(f"{float(self.coords[name][i]):g}" for name, i in zip(names, index, strict=True)),
                    f"{train[index]:.3f}",
                    f"{test[index]:.3f}",
                    "—" if np.isnan(noisy[index]) else f"{noisy[index]:.3f}",
                    regimes,
                    "tie" if tied[index] else REGIME_NAMES[majority[index]],
                ]
            )
            if self.has_limit:
                counted = np.rint(limit_fractions[index] * self.seeds).astype(int)
                rows[-1] += [
                    "—" if np.isnan(limit_test[index]) else f"{limit_test[index]:.3f}",
                    ", ".join(f"{LIMIT_REGIME_NAMES[code]} {count}" for code, count in enumerate(counted) if count),
                    "tie" if limit_tied[index] else LIMIT_REGIME_NAMES[limit_majority[index]],
                ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]
        )

    def clean_dominance(self, threshold: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Eq. 9 per run (``theory.clean_dominance``): (ratio, holds), each (*grid_shape, seeds)."""
        ratio, holds = clean_dominance(self.final["saturation_clean"], self.final["saturation_noisy"], threshold)
        return np.asarray(ratio), np.asarray(holds)

    def class_balance(self, bound: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
        """Eq. 10 per run (``theory.class_balance``): (ratios (…, 2) for clean/noisy, holds (…))."""
        ratios, holds = class_balance(self.final["saturation_clean"], self.final["saturation_noisy"], bound)
        return np.asarray(ratios), np.asarray(holds)

    def time_to_fit(self) -> np.ndarray:
        """First logged step from which every training label stays fitted, (*grid_shape, seeds); −1 if never.

        Needs a sweep with ``histories=True``.
        """
        return self._first_time("train_accuracy", 1.0)

    def time_to_generalise(self) -> np.ndarray:
        """First logged step from which test accuracy stays >= 1 − ε, (*grid_shape, seeds); −1 if never.

        Needs ``histories=True``. Comparing it with ``time_to_fit`` shows the paper's delayed generalisation.
        """
        return self._first_time("test_accuracy", 1.0 - self.regime_tolerance)

    def _first_time(self, name: str, threshold: float) -> np.ndarray:
        if not self.history:
            raise ValueError("this sweep kept no histories: rerun jaxbo.sweep(..., histories=True)")
        return np.asarray(first_time(self.history[name], self.log_steps, threshold))

    def mean(self, name: str) -> np.ndarray:
        """Mean over seeds of ``final[name]`` (NaNs, e.g. ``noisy_fit`` at η = 0, ignored), (*grid_shape, …)."""
        return _nan_reduce(np.nanmean, self._metric(name), axis=len(self.dims) - 1)

    def std(self, name: str) -> np.ndarray:
        """Standard deviation over seeds of ``final[name]``, NaNs ignored, (*grid_shape, …)."""
        return _nan_reduce(np.nanstd, self._metric(name), axis=len(self.dims) - 1)

    def _metric(self, name: str) -> np.ndarray:
        if name == "regime":
            return self.regime.astype(np.float64)
        if name not in self.final:
            raise KeyError(f"no metric {name!r}; metrics are {sorted(self.final)} and 'regime'")
        return self.final[name]

    def save(self, path: str | os.PathLike) -> tuple[str, str]:
        """Write ``path.npz`` (arrays) and ``path.json`` (everything else), creating missing parent folders;
        returns both paths."""
        base = os.fspath(path)
        base = base[: -len(".npz")] if base.endswith(".npz") else base
        parent = os.path.dirname(base)
        if parent:
            os.makedirs(parent, exist_ok=True)
        arrays = {f"coord/{k}": v for k, v in self.coords.items()}
        arrays.update({f"final/{k}": v for k, v in self.final.items()})
        arrays.update({f"history/{k}": v for k, v in self.history.items()})
        arrays["log_steps"] = self.log_steps
        np.savez_compressed(base + ".npz", **arrays)
        meta = {
            "format": FORMAT,
            "dims": list(self.dims),
            "config": config_to_json(self.config),
            "regime_tolerance": self.regime_tolerance,
            "regime_names": list(REGIME_NAMES),
            "metadata": self.metadata,
        }
        with open(base + ".json", "w") as handle:
            json.dump(meta, handle, indent=2, default=_json_default)
        return base + ".npz", base + ".json"

    def to_xarray(self):
        """An ``xarray.Dataset`` of the final metrics (and the regime), dims named; needs the xarray extra."""
        try:
            import xarray
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError("to_xarray needs xarray: pip install 'jaxbo-attention[xarray]'") from error
        variables = {}
        for name, value in {**self.final, "regime": self.regime}.items():
            extra = tuple(f"{name}_dim{i}" for i in range(value.ndim - len(self.dims)))
            variables[name] = (self.dims + extra, value)
        return xarray.Dataset(
            variables, coords=dict(self.coords), attrs={"config": json.dumps(config_to_json(self.config))}
        )


def load(path: str | os.PathLike) -> SweepResult:
    """Read a result written by ``SweepResult.save`` (``path`` with or without ``.npz``/``.json``).

    Only numeric arrays and JSON are read (``allow_pickle=False``): loading never executes code.
    """
    base = os.fspath(path)
    for suffix in (".npz", ".json"):
        base = base[: -len(suffix)] if base.endswith(suffix) else base
    meta = _read_meta(base)
    coords, final, history = {}, {}, {}
    if not os.path.exists(base + ".npz"):
        raise FileNotFoundError(f"jaxbo.load: {base}.json has no {base}.npz beside it (SweepResult.save writes both)")
    with np.load(base + ".npz", allow_pickle=False) as arrays:
        for name in arrays.files:
            group, _, key = name.partition("/")
            target = {"coord": coords, "final": final, "history": history}.get(group)
            if target is not None:
                target[key] = arrays[name]
        missing = [name for name in ("log_steps", *(f"coord/{dim}" for dim in meta["dims"])) if name not in arrays]
        if missing:
            raise ValueError(
                f"jaxbo.load: {base}.npz lacks the arrays {missing} that SweepResult.save writes: it is not the data "
                f"of {base}.json"
            )
        log_steps = arrays["log_steps"]
    dims = tuple(meta["dims"])
    coords = {name: coords[name] for name in dims}
    return SweepResult(
        dims=dims,
        coords=coords,
        final=final,
        history=history,
        log_steps=log_steps,
        config=config_from_json(meta["config"]),
        metadata=meta["metadata"],
        regime_tolerance=float(meta["regime_tolerance"]),
    )


def _read_meta(base: str) -> dict[str, Any]:
    """The ``.json`` half of a saved result, its format checked: a foreign or a newer file says so."""
    from jaxbo._version import __version__

    if not os.path.exists(base + ".json"):
        raise FileNotFoundError(
            f"jaxbo.load: {base}.json is missing: a sweep result is {base}.npz with its .json beside it "
            "(SweepResult.save writes both)"
        )
    try:
        with open(base + ".json") as handle:
            meta = json.load(handle)
    except ValueError as error:
        raise ValueError(f"jaxbo.load: {base}.json is not valid JSON ({error})") from None
    found = meta.get("format") if isinstance(meta, dict) else None
    if isinstance(found, str) and found.startswith("jaxbo.SweepResult/") and found != FORMAT:
        raise ValueError(
            f"jaxbo.load: {base}.json was written by a newer jaxbo (format {found}); this one ({__version__}) reads "
            f"{FORMAT}: upgrade jaxbo to read it"
        )
    if found != FORMAT:
        raise ValueError(
            f"jaxbo.load: {base}.json is not a jaxbo sweep result (its format is {found!r}, expected {FORMAT!r})"
        )
    return meta


def _nan_reduce(reduce, values: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells (no noisy samples) stay NaN
        return reduce(values, axis=axis)


def config_to_json(config: Config) -> dict[str, Any]:
    """``config`` as a JSON-able dict (layout as a list)."""
    return {name: _json_default(getattr(config, name)) for name in field_names()}


def config_fingerprint(config: Config) -> dict[str, Any]:
    """``config_to_json`` as a checkpoint fingerprint holds it: a field of ``config.LATER_FIELDS`` only when it
    differs from its default (what stores written before the field existed implied)."""
    values = config_to_json(config)
    defaults = Config()
    return {
        name: value
        for name, value in values.items()
        if name not in LATER_FIELDS or getattr(config, name) != getattr(defaults, name)
    }


def config_from_json(values: dict[str, Any]) -> Config:
    """Inverse of ``config_to_json``."""
    values = dict(values)
    values["layout"] = tuple(values["layout"])
    return Config(**values)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value


def _check_mergeable(first: SweepResult, part: SweepResult) -> None:
    """``ValueError`` naming the first property (axes, config, seeds, engine, pairing…) two parts differ in."""
    for name, mine, theirs in (
        ("dims", first.dims, part.dims),
        ("config", first.config, part.config),
        ("seeds", first.seeds, part.seeds),
        ("engine", first.metadata.get("engine"), part.metadata.get("engine")),
        ("paired", first.metadata.get("paired", False), part.metadata.get("paired", False)),
        ("regime_tolerance", first.regime_tolerance, part.regime_tolerance),
        ("metrics", sorted(first.final), sorted(part.final)),
        ("history", sorted(first.history), sorted(part.history)),
    ):
        if mine != theirs:
            raise ValueError(f"cannot merge: parts differ in {name} ({mine!r} vs {theirs!r})")


def merge(parts: list[SweepResult]) -> SweepResult:
    """One ``SweepResult`` from sweeps over slices of one grid (e.g. one slice per host of a multi-host run).

    The parts must share their axes, config, seeds, engine and regime tolerance, and differ along exactly one
    grid axis, whose values must not overlap; the merged axis is sorted by value. Metadata comes from the first
    part, with ``merged_from`` listing each part's plan and timing.
    """
    parts = list(parts)
    if not parts or not all(isinstance(part, SweepResult) for part in parts):
        raise TypeError("merge needs a non-empty list of SweepResult")
    first = parts[0]
    if len(parts) == 1:
        return first
    for part in parts[1:]:
        _check_mergeable(first, part)
    grid_dims = first.dims[:-1]
    varying = [
        name
        for name in grid_dims
        if any(not np.array_equal(part.coords[name], first.coords[name]) for part in parts[1:])
    ]
    if not varying:
        raise ValueError("cannot merge: parts overlap on every grid value (their grids are identical)")
    if len(varying) != 1:
        raise ValueError(f"cannot merge: parts must differ along exactly one grid axis, they differ along {varying}")
    (axis_name,) = varying
    axis = first.dims.index(axis_name)
    values = np.concatenate([part.coords[axis_name] for part in parts])
    unique, counts = np.unique(values, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"cannot merge: parts overlap on {axis_name} = {unique[counts > 1].tolist()}")
    order = np.argsort(values, kind="stable")

    def joined(name: str, group: str) -> np.ndarray:
        return np.take(np.concatenate([getattr(part, group)[name] for part in parts], axis=axis), order, axis=axis)

    metadata = dict(first.metadata)
    metadata["merged_from"] = [
        {
            "grid": {k: v.tolist() for k, v in part.coords.items() if k != "seed"},
            "plan": part.metadata.get("plan"),
            "elapsed_s": part.metadata.get("elapsed_s"),
        }
        for part in parts
    ]
    metadata["grid"] = {
        name: (values[order] if name == axis_name else first.coords[name]).tolist() for name in grid_dims
    }
    return SweepResult(
        dims=first.dims,
        coords={**first.coords, axis_name: values[order]},
        final={name: joined(name, "final") for name in first.final},
        history={name: joined(name, "history") for name in first.history},
        log_steps=first.log_steps,
        config=first.config,
        metadata=metadata,
        regime_tolerance=first.regime_tolerance,
    )
