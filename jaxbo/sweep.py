"""Many runs, one compiled program: the (d, ‖μ‖) phase diagram (and any other numeric grid) × seeds.

The Cartesian product of the grid × seeds is one flat batch of runs. Each chunk of it is one call of a
jitted ``vmap`` over runs with time in ``lax.scan``; every chunk of a group has the same shape, so a group
compiles once. With the reduced engine ``d`` is traced and the whole grid is one group. With the primal engine
``d`` fixes the array width: runs are zero-padded to the width of their *bucket* (a few buckets of nearby d,
chosen to bound the padded work), so the grid compiles once per bucket. Padding is exact: padded coordinates
of the data and of p are exactly 0.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import platform
import sys
import time
import zlib
from collections.abc import Callable, Mapping, Sequence

import jax
import jaxlib
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxbo import reduced
from jaxbo._version import __version__
from jaxbo.checkpoint import CheckpointStore
from jaxbo.config import SWEEPABLE, Config
from jaxbo.results import REGIME_TOLERANCE, SweepResult, config_to_json
from jaxbo.train import as_key, checked_engine, run

#: Default memory budget of one chunk's data, bytes; the chunk size follows from it.
MEMORY_BUDGET = 1 << 30
#: Training data of one chunk is kept near this size so every step's reads stay in the CPU cache: measured
#: on 2 EPYC cores, chunks of 32 reduced runs (3.3 MB) ran 3x faster than chunks of 512.
CACHE_BYTES = 4 << 20
#: Default upper bound on the number of d buckets (compiles) of a primal sweep.
MAX_BUCKETS = 4


def coordinate_hash(coordinates: Mapping[str, float]) -> int:
    """A stable 31-bit id of grid coordinates, e.g. {"d": 2000, "signal_norm": 20.0}: CRC-32 of their text."""
    text = ";".join(f"{name}={_canonical(name, coordinates[name])}" for name in sorted(coordinates))
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def run_key(key, seed: int, coordinates: Mapping[str, float]) -> jax.Array:
    """The key of the run at ``coordinates`` with seed index ``seed`` in a sweep with base ``key``.

    ``fold_in`` on the seed index, then on the coordinates' values (not their positions), so a run's numbers
    do not depend on what else is in the grid: ``simulate(run_key(key, s, c), config.replace(**c))`` is that run.
    """
    return jax.random.fold_in(jax.random.fold_in(as_key(key), seed), coordinate_hash(coordinates))


def _key_identity(key: jax.Array) -> list[int]:
    """The raw bits of a typed key, to recognise the same sweep in a checkpoint."""
    return np.asarray(jax.random.key_data(key)).ravel().tolist()


def _canonical(name: str, value) -> str:
    return str(int(value)) if name == "d" else repr(float(value))


def validate_grid(grid: Mapping[str, Sequence[float]], config: Config) -> dict[str, np.ndarray]:
    """Check ``grid`` before anything is traced; returns it as 1-D numpy arrays (d as int64).

    Raises ``TypeError``/``ValueError`` naming the key, the value and what is allowed.
    """
    if not isinstance(grid, Mapping) or not grid:
        raise TypeError(f"grid must be a non-empty mapping of Config field names to 1-D sequences, got {grid!r}")
    checked = {}
    for name, values in grid.items():
        if name not in SWEEPABLE:
            raise ValueError(
                f"grid key {name!r} cannot be swept: allowed keys are {SWEEPABLE} "
                "(shape-fixing fields such as T or n_train need separate sweeps)"
            )
        if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
            raise TypeError(f"grid[{name!r}] = {values!r} must be a 1-D sequence of numbers")
        array = np.asarray(values)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"grid[{name!r}] must be a non-empty 1-D sequence, got shape {array.shape}")
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
            raise TypeError(f"grid[{name!r}] = {values!r} must hold real numbers, got dtype {array.dtype}")
        if name == "d":
            if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
                raise ValueError(f"grid['d'] = {values!r} must hold whole numbers >= 2")
            array = array.astype(np.int64)
        for value in array:
            value = int(value) if name == "d" else float(value)
            try:
                config.replace(**{name: value}).validate()
            except (TypeError, ValueError) as error:
                raise ValueError(f"grid[{name!r}] holds an invalid value: {error}") from None
        if len(np.unique(array)) != len(array):
            raise ValueError(f"grid[{name!r}] = {values!r} repeats a value; each grid value must be distinct")
        checked[name] = array
    return checked


def plan_buckets(widths: np.ndarray, max_buckets: int = MAX_BUCKETS) -> list[int]:
    """Bucket widths for the distinct d values ``widths``: each d runs padded to the smallest bucket >= d.

    Chooses at most ``max_buckets`` contiguous groups of the sorted values minimising Σ_d bucket(d) (the
    padded work), by dynamic programming over the split points.
    """
    values = np.sort(np.unique(widths))
    count = len(values)
    buckets = min(max_buckets, count)
    # cost[i][j]: values[i:j] padded to values[j - 1].
    best = {(0, 0): (0.0, [])}
    for used in range(1, buckets + 1):
        for end in range(1, count + 1):
            options = [
                (
                    best[(used - 1, start)][0] + (end - start) * float(values[end - 1]),
                    [*best[(used - 1, start)][1], end],
                )
                for start in range(end)
                if (used - 1, start) in best
            ]
            if options:
                best[(used, end)] = min(options, key=lambda option: option[0])
    _, ends = min((best[(used, count)] for used in range(1, buckets + 1) if (used, count) in best), key=lambda o: o[0])
    return [int(values[end - 1]) for end in ends]


def _bytes_per_run(config: Config, engine: str, width: int, log_history: bool) -> int:
    """Rough peak bytes of one run's arrays (tokens and their sampling temporaries, W, histories)."""
    T = config.T
    if engine == "reduced":
        N = config.n_train * T
        test_width = (2 + N) if log_history else 3
        data = 4 * T * (config.n_train * (2 + N) + config.n_test * test_width) * 3 + 4 * N * N * 2
    else:
        # Final-only runs draw their test set in 4 coordinates (data.sample_test_projected).
        data = 4 * T * width * (config.n_train + (config.n_test if log_history else 0)) * 3 + 4 * T * config.n_test * 12
        if config.attention != "identity":
            data += 4 * width * width * 4
    history = 4 * 40 * config.n_logs if log_history else 0
    return data + history


def _run_chunk(base_key, seed_index, coordinate_id, values, config, *, width, engine, log_history, optimizer):
    """Final metrics (and histories) of a chunk of runs: every argument but the key has a leading (B,) axis."""

    def one(seed, identifier, swept):
        key = jax.random.fold_in(jax.random.fold_in(base_key, seed), identifier)
        result = run(
            key,
            dataclasses.replace(config, **swept),
            width=width,
            optimizer=optimizer,
            log_history=log_history,
            engine=engine,
        )
        return result.final, result.history

    return jax.vmap(one)(seed_index, coordinate_id, values)


_run_chunk_jit = jax.jit(_run_chunk, static_argnames=("width", "engine", "log_history", "optimizer"))


@dataclasses.dataclass
class _Progress:
    """Progress lines on stderr between chunks (never inside the compiled loop): one every ``every`` seconds
    once the sweep has run ``after`` seconds, and a last one when it ends."""

    total_runs: int
    total_chunks: int
    enabled: bool
    after: float = 2.0
    every: float = 2.0
    started: float = dataclasses.field(default_factory=time.perf_counter)
    last: float = -float("inf")

    def update(self, chunks: int, runs: int) -> None:
        now = time.perf_counter()
        elapsed = now - self.started
        finished = chunks == self.total_chunks
        # One line every ``every`` seconds once past ``after``, and a closing line if any was printed.
        due = elapsed >= self.after and now - self.last >= self.every
        if not self.enabled or not (due or (finished and self.last > -float("inf"))):
            return
        self.last = now
        rate = runs / elapsed if elapsed > 0 else float("inf")
        eta = (self.total_runs - runs) / rate if rate > 0 else float("inf")
        print(
            f"jaxbo.sweep: chunk {chunks}/{self.total_chunks}, {runs}/{self.total_runs} runs, "
            f"{rate:.1f} runs/s, elapsed {elapsed:.1f} s, ETA {eta:.1f} s",
            file=sys.stderr,
            flush=True,
        )


def _scatter(into: dict[str, np.ndarray], arrays: dict[str, np.ndarray], rows: np.ndarray, total: int) -> None:
    """Copy a chunk's arrays (leading axis: the chunk, maybe padded) to rows ``rows`` of the (total, …) arrays."""
    for name, values in arrays.items():
        values = np.asarray(values)
        if name not in into:
            into[name] = np.empty((total, *values.shape[1:]), values.dtype)
        into[name][rows] = values[: len(rows)]


def sweep(
    grid: Mapping[str, Sequence[float]],
    *,
    seeds: int = 10,
    config: Config | None = None,
    key=None,
    progress: bool = True,
    engine: str = "auto",
    histories: bool = False,
    optimizer: optax.GradientTransformation | None = None,
    chunk_size: int | None = None,
    memory_budget: int = MEMORY_BUDGET,
    max_buckets: int = MAX_BUCKETS,
    regime_tolerance: float = REGIME_TOLERANCE,
    devices: Sequence[jax.Device] | None = None,
    checkpoint: str | os.PathLike | None = None,
    _after_chunk: Callable[[int], None] | None = None,
) -> SweepResult:
    """Train every grid point × seed and collect final metrics (and histories) in a ``SweepResult``.

    Args:
      grid: Config field name → 1-D sequence of values, e.g. ``{"d": [250, 500], "signal_norm": [5, 10]}``;
        any of ``config.SWEEPABLE`` (d, signal_norm, rho, sigma, noise_rate, lr). Axes keep the grid's order.
      seeds: runs per grid point.
      config: base configuration for every field the grid does not set (default ``Config()``).
      key: base key or int seed (default 0). Run keys: ``run_key(key, seed, coordinates)``.
      progress: print a progress line on stderr between chunks once the sweep takes over 2 s.
      engine: ``"auto"``, ``"primal"`` or ``"reduced"``, as in ``simulate``.
      histories: also keep every run's logged metrics (memory: runs × n_logs × ~40 floats).
      optimizer: optax transformation for every run (default gradient descent with ``config.lr``; with ``lr``
        in the grid only the default follows it).
      chunk_size: runs per compiled call; default from ``memory_budget`` and a cache target (``CACHE_BYTES``).
      memory_budget: bytes of run data one chunk may hold, used when ``chunk_size`` is None.
      max_buckets: most distinct padded widths (compiles) of a primal sweep over d.
      regime_tolerance: ε of the benign/harmful split (benign: all labels fitted, test accuracy >= 1 − ε).
      devices: devices to shard each chunk's runs over (a 1-D mesh, ``NamedSharding``); default all local
        devices. Chunks are rounded up to a multiple of the device count. Results do not depend on it: each
        run's randomness comes from its own key. On a CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=K``
        (set before JAX starts) makes K devices, one per core; ``python -m jaxbo`` does this by itself.
      checkpoint: directory for finished chunks (``jaxbo.checkpoint``): a rerun with the same arguments
        loads them and computes only the rest, giving the same numbers as an uninterrupted sweep; a
        directory of another sweep (grid, config, seeds, key, engine, plan or jaxbo version) is refused.

    Returns:
      ``SweepResult`` with arrays (*grid_shape, seeds, …) and the plan in ``metadata["plan"]``.
    """
    started = time.perf_counter()
    config = Config() if config is None else config
    engine = checked_engine(config, optimizer, engine)
    axes = validate_grid(grid, config)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds = {seeds!r} must be an int >= 1")
    for name, value, low in (
        ("chunk_size", chunk_size, 1),
        ("memory_budget", memory_budget, 1),
        ("max_buckets", max_buckets, 1),
    ):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ValueError(f"{name} = {value!r} must be an int >= {low}")
    if not (isinstance(regime_tolerance, int | float) and 0 <= regime_tolerance < 1):
        raise ValueError(f"regime_tolerance = {regime_tolerance!r} must be a number in [0, 1)")
    base_key = as_key(0 if key is None else key)
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices or not all(isinstance(device, jax.Device) for device in devices):
        raise TypeError(f"devices must be a non-empty sequence of jax.Device, got {devices!r}")
    batch_sharding = NamedSharding(Mesh(np.array(devices), ("runs",)), PartitionSpec("runs"))

    names = list(axes)
    shape = tuple(len(axes[name]) for name in names)
    cells = list(itertools.product(*(range(n) for n in shape)))
    swept = {
        name: np.array([axes[name][cell[i]] for cell in cells for _ in range(seeds)]) for i, name in enumerate(names)
    }
    seed_index = np.tile(np.arange(seeds, dtype=np.int32), len(cells))
    identifiers = np.array(
        [coordinate_hash({n: axes[n][cell[i]] for i, n in enumerate(names)}) for cell in cells for _ in range(seeds)],
        dtype=np.int32,
    )
    total = len(seed_index)

    # Group runs by array width: one group (one compile) unless the primal engine sweeps d.
    if engine == "primal" and "d" in axes:
        bucket_widths = plan_buckets(axes["d"], max_buckets)
        run_width = np.array([min(w for w in bucket_widths if w >= d) for d in swept["d"]])
        groups = [(width, np.flatnonzero(run_width == width)) for width in bucket_widths]
    else:
        width = reduced.width(config) if engine == "reduced" else config.d
        groups = [(width, np.arange(total))]

    plan_groups = []
    for width, members in groups:
        per_run = _bytes_per_run(config, engine, width, histories)
        train_bytes = 4 * config.n_train * config.T * width
        size = chunk_size or max(1, min(memory_budget // per_run, CACHE_BYTES // train_bytes))
        size = min(size, len(members))
        size = math.ceil(size / len(devices)) * len(devices)  # every device gets the same number of runs
        plan_groups.append(
            {
                "width": int(width),
                "runs": len(members),
                "chunk_size": int(size),
                "chunks": math.ceil(len(members) / size),
                "bytes_per_run": int(per_run),
            }
        )
    tracker = _Progress(total, sum(g["chunks"] for g in plan_groups), progress)
    store = None
    if checkpoint is not None:
        store = CheckpointStore(
            checkpoint,
            {
                "jaxbo": __version__,
                "grid": {name: axes[name].tolist() for name in names},
                "config": config_to_json(config),
                "seeds": seeds,
                "key": _key_identity(base_key),
                "engine": engine,
                "histories": histories,
                "optimizer": "sgd(config.lr)" if optimizer is None else f"custom {type(optimizer).__name__}",
                "plan": plan_groups,
                "devices": len(devices),
            },
        )

    finals: dict[str, np.ndarray] = {}
    histories_out: dict[str, np.ndarray] = {}
    chunks_done = runs_done = 0
    for group_index, ((width, members), plan) in enumerate(zip(groups, plan_groups, strict=True)):
        size = plan["chunk_size"]
        for chunk_index, start in enumerate(range(0, len(members), size)):
            chunk = members[start : start + size]
            stored = store.load(group_index, chunk_index, chunk) if store else None
            if stored is not None:
                for into, prefix in ((finals, "final/"), (histories_out, "history/")):
                    part = {k[len(prefix) :]: v for k, v in stored.items() if k.startswith(prefix)}
                    _scatter(into, part, chunk, total)
                chunks_done += 1
                runs_done += len(chunk)
                tracker.update(chunks_done, runs_done)
                continue
            # The last chunk repeats its final run to keep the compiled shape; the repeats are dropped.
            padded = np.concatenate([chunk, np.full(size - len(chunk), chunk[-1])])
            values = {name: swept[name][padded].astype(np.int32 if name == "d" else np.float32) for name in names}
            batch = jax.device_put((seed_index[padded], identifiers[padded], values), batch_sharding)
            final, history = _run_chunk_jit(
                base_key,
                *batch,
                config,
                width=int(width),
                engine=engine,
                log_history=histories,
                optimizer=optimizer,
            )
            final = vars(jax.device_get(final))
            history = vars(jax.device_get(history)) if histories else {}
            _scatter(finals, final, chunk, total)
            _scatter(histories_out, history, chunk, total)
            if store:
                arrays = {f"final/{k}": np.asarray(v)[: len(chunk)] for k, v in final.items()}
                arrays.update({f"history/{k}": np.asarray(v)[: len(chunk)] for k, v in history.items()})
                store.save(group_index, chunk_index, chunk, arrays)
            chunks_done += 1
            runs_done += len(chunk)
            tracker.update(chunks_done, runs_done)
            if _after_chunk is not None:
                _after_chunk(chunks_done)

    def by_grid(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: value.reshape((*shape, seeds, *value.shape[1:])) for name, value in arrays.items()}

    elapsed = time.perf_counter() - started
    metadata = {
        "engine": engine,
        "plan": {"groups": plan_groups, "total_runs": total, "compiles": len(plan_groups)},
        "elapsed_s": elapsed,
        "runs_per_s": total / elapsed,
        "key": key if isinstance(key, int) else ("0" if key is None else "custom key"),
        "optimizer": "sgd(config.lr)" if optimizer is None else repr(optimizer),
        "histories": histories,
        "checkpoint": None if store is None else {"directory": store.directory, "chunks_loaded": store.loaded},
        "precision": "float32, HIGHEST-precision contractions",
        "versions": {
            "jaxbo": __version__,
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "optax": optax.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "backend": jax.default_backend(),
        "devices": [f"{device.platform}:{device.id} {device.device_kind}" for device in devices],
        "device_count": len(devices),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "grid": {name: axes[name].tolist() for name in names},
    }
    history_arrays = by_grid(histories_out) if histories else {}
    return SweepResult(
        dims=(*names, "seed"),
        coords={**{name: axes[name] for name in names}, "seed": np.arange(seeds)},
        final=by_grid(finals),
        history=history_arrays,
        log_steps=(np.arange(1, config.n_logs + 1) * config.log_every) if histories else np.zeros(0, np.int64),
        config=config,
        metadata=metadata,
        regime_tolerance=float(regime_tolerance),
    )
