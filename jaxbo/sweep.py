"""Many runs, one compiled program: the (d, ‖μ‖) phase diagram (and any other numeric grid) × seeds.

``sweep`` reads top to bottom in three stages:
1. plan (``jaxbo.plan``, pure): the run table and its chunks, sized for the backend;
2. execute (here): each chunk is one call of a compiled program that ``shard_map``s the chunk's runs over
   the devices, ``vmap``s them on each device and keeps time in ``lax.scan``; sharding, checkpoints and the
   progress bar live in this stage;
3. assemble (here): the flat arrays become a ``SweepResult`` with named axes and metadata.

Runs are independent, so the compiled chunk holds no cross-device communication: ``shard_map`` gives each
device its own runs, and data-dependent loops inside a run (the χ² draw's rejection loop) stay on that
device. (Under plain ``jit`` sharding, such a loop's batch-wide stop test became an all-reduce every
iteration, and two CPU devices could wait on each other forever.)
"""

from __future__ import annotations

import functools
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence

import jax
import jaxlib
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxbo import devices as devices_lib
from jaxbo._version import __version__
from jaxbo.checkpoint import NUMBERS_RELEASE, CheckpointStore
from jaxbo.config import Config, with_traced
from jaxbo.engines import Engine
from jaxbo.plan import (
    CACHE_BYTES,
    MAX_BUCKETS,
    MEMORY_BUDGET,
    PAIRED_AXIS,
    Backend,
    Group,
    Plan,
    coordinate_hash,
    make_plan,
    plan_buckets,
    validate_grid,
)
from jaxbo.results import REGIME_TOLERANCE, SweepResult, config_fingerprint
from jaxbo.train import as_key, checked_engine, jit_config, run, run_paired

__all__ = [
    "CACHE_BYTES",
    "MAX_BUCKETS",
    "MEMORY_BUDGET",
    "SweepInterrupted",
    "chunk_program",
    "coordinate_hash",
    "plan_buckets",
    "run_key",
    "sweep",
    "validate_grid",
]

#: Names of the collective operations a compiled chunk must never contain (runs are independent).
COLLECTIVES = ("all-reduce", "all-gather", "all-to-all", "collective-permute", "reduce-scatter")


def run_key(key, seed: int, coordinates: Mapping[str, float], paired: bool = False) -> jax.Array:
    """The key of the run at ``coordinates`` with seed index ``seed`` in a sweep with base ``key``.

    ``fold_in`` on the seed index, then on the coordinates' values (not their positions), so a run's numbers
    do not depend on what else is in the grid: ``simulate(run_key(key, s, c), config.replace(**c))`` is that run.
    ``paired`` (a paired sweep's keys) leaves ``signal_norm`` out of the coordinates.
    """
    return jax.random.fold_in(jax.random.fold_in(as_key(key), seed), coordinate_hash(coordinates, paired))


def _key_identity(key: jax.Array) -> list[int]:
    """The raw bits of a typed key, to recognise the same sweep in a checkpoint."""
    return np.asarray(jax.random.key_data(key)).ravel().tolist()


# --- 2. execute ------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def chunk_program(
    devices: tuple[jax.Device, ...],
    *,
    width: int,
    engine: Engine,
    log_history: bool,
    optimizer: optax.GradientTransformation | None,
    sub_chunks: int = 1,
    pair_size: int = 1,
    limit: bool = False,
):
    """The jitted program of one chunk: ``program(base_key, seed_index, coordinate_id, values, config)``.

    Every per-run argument has a leading (B,) axis, B a multiple of ``len(devices) * sub_chunks * pair_size``;
    it returns (final ``Metrics``, history or None, ``limit.Limit`` or None) with the same leading axis. Each
    device trains its B / len(devices) runs in ``sub_chunks`` vmapped batches, one after another
    (``lax.map``): on a CPU a batch then fits in the cache while one call still covers many runs. With
    ``pair_size`` M > 1 each M consecutive runs are one key's runs at M values of ‖μ‖ (``plan.paired_order``),
    stepped together by ``train.run_paired``.
    """

    def one(base_key, seed, identifier, swept, config):
        key = jax.random.fold_in(jax.random.fold_in(base_key, seed), identifier)
        result = run(
            key,
            with_traced(config, **swept),
            width=width,
            optimizer=optimizer,
            log_history=log_history,
            engine=engine,
            limit=limit,
        )
        return result.final, result.history, result.limit

    def one_key(base_key, seed, identifier, swept, config):  # (M,) arguments: one key's runs
        key = jax.random.fold_in(jax.random.fold_in(base_key, seed[0]), identifier[0])
        shared = {name: values[0] for name, values in swept.items() if name != PAIRED_AXIS}
        config = with_traced(config, **shared)
        final, history = run_paired(
            key, config, swept[PAIRED_AXIS], width=width, engine=engine, log_history=log_history
        )
        return final, history, None  # a limit makes runs step alone (sweep: the plan's unshared reasons)

    def paired(base_key, seed_index, coordinate_id, values, config):
        grouped = jax.tree.map(lambda a: a.reshape(-1, pair_size, *a.shape[1:]), (seed_index, coordinate_id, values))
        outputs = jax.vmap(one_key, in_axes=(None, 0, 0, 0, None))(base_key, *grouped, config)
        return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), outputs)

    def local(base_key, seed_index, coordinate_id, values, config):
        batched = paired if pair_size > 1 else jax.vmap(one, in_axes=(None, 0, 0, 0, None))
        if sub_chunks == 1:
            return batched(base_key, seed_index, coordinate_id, values, config)
        split = jax.tree.map(lambda a: a.reshape(sub_chunks, -1, *a.shape[1:]), (seed_index, coordinate_id, values))
        outputs = jax.lax.map(lambda args: batched(base_key, *args, config), split)
        return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), outputs)

    runs = PartitionSpec("runs")
    sharded = jax.shard_map(
        local,
        mesh=Mesh(np.array(devices), ("runs",)),
        in_specs=(PartitionSpec(), runs, runs, runs, PartitionSpec()),
        out_specs=runs,
        # Every value is per-device; the varying-axis type check would only ask scan carries to be cast.
        check_vma=False,
    )
    return jax.jit(sharded)


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; its message says what was saved and how to resume (``str(error)``).

    A ``KeyboardInterrupt``, so code that stops on Ctrl-C still stops; the command line prints only the message.
    """


def _interrupt_message(plan: Plan, store: CheckpointStore | None, chunks_done: int, runs_done: int) -> str:
    done = f"{chunks_done} of {plan.total_chunks} chunks ({runs_done:,} of {plan.total_runs:,} runs)"
    if store is None:
        return (
            f"jaxbo.sweep interrupted after {done}; nothing was saved: pass checkpoint=DIR (command line: "
            "--checkpoint DIR) to keep finished chunks and resume from them"
        )
    return f"jaxbo.sweep interrupted: {done} saved in {store.directory}; run the same call again to resume from there"


class _Progress:
    """A ``tqdm`` bar over runs (it redraws in place in terminals and notebooks) that keeps compile time
    apart: the bar's clock, rate and ETA stop while a program compiles, and the compile time shows beside it."""

    def __init__(self, plan: Plan, enabled: bool):
        from tqdm.auto import tqdm  # the ecosystem's progress bar, notebook-aware; imported only when used

        self.bar = tqdm(
            total=plan.total_runs,
            unit="run",
            desc="jaxbo.sweep",
            disable=not enabled,
            file=sys.stderr,
            mininterval=0.5,
            dynamic_ncols=True,
        )
        self.compile_seconds = 0.0
        self.compiles = 0

    def say(self, text: str) -> None:
        """One line on stderr (above the bar), shown whenever the bar is."""
        if not self.bar.disable:
            self.bar.write(text, file=sys.stderr)

    def compiling(self, total: int) -> None:
        self.bar.set_postfix_str(f"compiling {self.compiles + 1}/{total}…", refresh=True)

    def compiled(self, seconds: float) -> None:
        self.compile_seconds += seconds
        self.compiles += 1
        self.bar.unpause()  # the compile does not count towards the rate
        self.bar.set_postfix_str(f"compile {self.compile_seconds:.1f} s", refresh=False)

    def advance(self, runs: int) -> None:
        self.bar.update(runs)

    def resumed(self, runs: int) -> None:
        """Start the bar at ``runs`` already done (loaded from a checkpoint) without counting them in the rate."""
        self.bar.n = self.bar.initial = self.bar.last_print_n = runs
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _scatter(into: dict[str, np.ndarray], arrays: Mapping[str, np.ndarray], rows: np.ndarray, total: int) -> None:
    """Copy a chunk's arrays (leading axis: the chunk, maybe padded) to rows ``rows`` of the (total, …) arrays."""
    for name, values in arrays.items():
        values = np.asarray(values)
        if name not in into:
            into[name] = np.empty((total, *values.shape[1:]), values.dtype)
        into[name][rows] = values[: len(rows)]


def _chunk_inputs(plan: Plan, group: Group, rows: np.ndarray, sharding: NamedSharding):
    """Device-placed (seed_index, coordinate_id, values) of a chunk, padded to the group's chunk size by
    repeating its last run, or its last key's runs where they step together (the repeats are dropped afterwards)."""
    padded = np.concatenate([rows, np.resize(rows[-group.pair_size :], group.chunk_size - len(rows))])
    dtypes = {name: plan.engine.d_dtype if name == "d" else np.float32 for name in plan.names}
    values = {name: plan.values[name][padded].astype(dtypes[name]) for name in plan.names}
    return jax.device_put((plan.seed_index[padded], plan.coordinate_ids[padded], values), sharding)


def _load_finished(plan: Plan, store: CheckpointStore | None, collect) -> set[tuple[int, int]]:
    """(group, chunk) of every chunk ``store`` holds intact, each handed to ``collect(arrays, rows)``."""
    loaded = set()
    for g, group in enumerate(plan.groups) if store else ():
        for c in range(group.chunks):
            arrays = store.load(g, c, group.chunk_rows(c))
            if arrays is not None:
                collect(arrays, group.chunk_rows(c))
                loaded.add((g, c))
    return loaded


def _chunk_arrays(compiled, base_key, inputs, traced_config, rows: np.ndarray, histories: bool):
    """The flat ``final/…`` (a limit's as ``final/limit_…``) and ``history/…`` arrays of one computed chunk, its
    padding dropped."""
    final, history, limit = jax.device_get(compiled(base_key, *inputs, traced_config))
    arrays = {f"final/{k}": np.asarray(v)[: len(rows)] for k, v in vars(final).items()}
    if limit is not None:
        arrays.update({f"final/limit_{k}": np.asarray(v)[: len(rows)] for k, v in vars(limit).items()})
    if histories:
        arrays.update({f"history/{k}": np.asarray(v)[: len(rows)] for k, v in vars(history).items()})
    return arrays


def execute(
    plan: Plan,
    config: Config,
    base_key: jax.Array,
    devices: Sequence[jax.Device],
    *,
    histories: bool,
    optimizer: optax.GradientTransformation | None,
    store: CheckpointStore | None,
    progress: _Progress,
    after_chunk: Callable[[int], None] | None = None,
    limit: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run every chunk of ``plan`` not already in ``store``; returns flat (final, history) arrays (runs, …).

    Chunks found in ``store`` are loaded first and said once on stderr (the progress bar starts after them, so
    its rate counts computed runs only). Ctrl-C raises ``SweepInterrupted``, saying what was saved.
    """
    finals: dict[str, np.ndarray] = {}
    histories_out: dict[str, np.ndarray] = {}

    def collect(arrays: dict[str, np.ndarray], rows: np.ndarray) -> None:
        for into, prefix in ((finals, "final/"), (histories_out, "history/")):
            part = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            _scatter(into, part, rows, plan.total_runs)

    done = _load_finished(plan, store, collect)
    runs_done = sum(len(plan.groups[g].chunk_rows(c)) for g, c in done)
    if done:
        progress.say(
            f"jaxbo.sweep: resuming from {store.directory}: {len(done)} of {plan.total_chunks} chunks "
            f"({runs_done:,} of {plan.total_runs:,} runs) loaded, {plan.total_chunks - len(done)} to compute"
        )
        progress.resumed(runs_done)
    sharding = NamedSharding(Mesh(np.array(devices), ("runs",)), PartitionSpec("runs"))
    traced_config = jit_config(config, plan.engine)
    try:
        for g, group in enumerate(plan.groups):
            compiled = None  # one program per group, compiled when its first chunk needs computing
            for c in range(group.chunks):
                if (g, c) in done:
                    continue
                rows = group.chunk_rows(c)
                inputs = _chunk_inputs(plan, group, rows, sharding)
                if compiled is None:
                    program = chunk_program(
                        tuple(devices),
                        width=group.width,
                        engine=plan.engine,
                        log_history=histories,
                        optimizer=optimizer,
                        sub_chunks=group.sub_chunks,
                        pair_size=group.pair_size,
                        limit=limit,
                    )
                    progress.compiling(len(plan.groups))
                    started = time.perf_counter()
                    compiled = program.lower(base_key, *inputs, traced_config).compile()
                    progress.compiled(time.perf_counter() - started)
                arrays = _chunk_arrays(compiled, base_key, inputs, traced_config, rows, histories)
                if store:
                    store.save(g, c, rows, arrays)
                collect(arrays, rows)
                done.add((g, c))
                runs_done += len(rows)
                progress.advance(len(rows))
                if after_chunk is not None:
                    after_chunk(len(done))
    except KeyboardInterrupt as interrupt:
        if isinstance(interrupt, SweepInterrupted):
            raise
        raise SweepInterrupted(_interrupt_message(plan, store, len(done), runs_done)) from None
    return finals, histories_out


# --- 3. assemble -----------------------------------------------------------------------------------------------


def _metadata(plan: Plan, devices, *, key, optimizer, histories, store, elapsed, progress, limit=False) -> dict:
    """The JSON-able facts of a sweep: what ran, where, with which versions and random-number settings."""
    return {
        "engine": plan.engine.name,
        "plan": plan.describe(),
        "elapsed_s": elapsed,
        "compile_s": progress.compile_seconds,
        "runs_per_s": plan.total_runs / elapsed,
        "key": key if isinstance(key, int) else ("0" if key is None else "custom key"),
        "optimizer": "sgd(config.lr)" if optimizer is None else repr(optimizer),
        "histories": histories,
        "limit": limit,
        "paired": plan.paired,
        "checkpoint": None if store is None else {"directory": store.directory, "chunks_loaded": store.loaded},
        "precision": "float32, HIGHEST-precision contractions",
        "random": devices_lib.random_settings(),
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
        "grid": {name: values.tolist() for name, values in plan.axes.items()},
    }


def assemble(plan: Plan, config: Config, finals, histories_out, *, histories: bool, metadata, regime_tolerance):
    """The ``SweepResult`` of flat per-run arrays: (runs, …) → (*grid_shape, seeds, …)."""

    def by_grid(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: value.reshape((*plan.grid_shape, plan.seeds, *value.shape[1:])) for name, value in arrays.items()}

    return SweepResult(
        dims=(*plan.names, "seed"),
        coords={**plan.axes, "seed": np.arange(plan.seeds)},
        final=by_grid(finals),
        history=by_grid(histories_out) if histories else {},
        log_steps=(np.arange(1, config.n_logs + 1) * config.log_every) if histories else np.zeros(0, np.int64),
        config=config,
        metadata=metadata,
        regime_tolerance=float(regime_tolerance),
    )


# --- the public entry point --------------------------------------------------------------------------------------


def _unshared(engine: Engine, config: Config, optimizer, limit: bool) -> list[str]:
    """Why a paired sweep's runs of one key cannot step together: the engine's reasons, and a limit (the
    shared step computes none)."""
    reasons = list(engine.unshared(config, optimizer))
    if limit:
        reasons.append("limit=True (the shared step computes no limit: each run steps alone)")
    return reasons


def _check_paired(paired, axes) -> None:
    if not isinstance(paired, bool):
        raise TypeError(f"paired = {paired!r} must be True or False")
    if paired and PAIRED_AXIS not in axes:
        raise ValueError(
            f"paired=True shares each seed's random draws across the values of {PAIRED_AXIS!r}, but the grid has "
            f"no {PAIRED_AXIS!r} axis (its axes: {list(axes)})"
        )


def _check_options(seeds, chunk_size, memory_budget, max_buckets, regime_tolerance) -> None:
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds = {seeds!r} must be an int >= 1")
    for name, value in (("chunk_size", chunk_size), ("memory_budget", memory_budget), ("max_buckets", max_buckets)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} = {value!r} must be an int >= 1")
    if isinstance(regime_tolerance, bool) or not (
        isinstance(regime_tolerance, int | float) and 0 <= regime_tolerance < 1
    ):
        raise ValueError(f"regime_tolerance = {regime_tolerance!r} must be a number in [0, 1)")


def _open_store(checkpoint, plan: Plan, config: Config, base_key, optimizer, histories: bool, devices, report, limit):
    """The checkpoint store of this sweep: its fingerprint names everything a chunk's numbers depend on;
    ``report`` (or None: warnings) receives its one-line notes."""
    return CheckpointStore(
        checkpoint,
        {
            "jaxbo": NUMBERS_RELEASE,
            "grid": {name: values.tolist() for name, values in plan.axes.items()},
            "config": config_fingerprint(config),
            "seeds": plan.seeds,
            "key": _key_identity(base_key),
            "engine": plan.engine.store_name,
            "histories": histories,
            "optimizer": "sgd(config.lr)" if optimizer is None else f"custom {type(optimizer).__name__}",
            "plan": [group.describe() for group in plan.groups],
            "devices": len(devices),
            # Only when set, so checkpoints of independent sweeps written before pairing existed still match.
            **({"paired": True} if plan.paired else {}),
            **({"limit": True} if limit else {}),
        },
        report=report,
    )


def _execute_under_bar(
    plan, config, base_key, devices, checkpoint, *, histories, optimizer, progress, after_chunk, limit
):
    """``execute`` under a progress bar, the checkpoint store opened beneath it so a resume's notes print as
    clean lines above the bar (warnings when it is off); returns (finals, histories, store, bar)."""
    bar = _Progress(plan, progress)
    try:
        report = (lambda text: bar.say(f"jaxbo.sweep: {text}")) if progress else None
        store = (
            None
            if checkpoint is None
            else _open_store(checkpoint, plan, config, base_key, optimizer, histories, devices, report, limit)
        )
        finals, histories_out = execute(
            plan,
            config,
            base_key,
            devices,
            histories=histories,
            optimizer=optimizer,
            store=store,
            progress=bar,
            after_chunk=after_chunk,
            limit=limit,
        )
    finally:
        bar.close()
    return finals, histories_out, store, bar


def sweep(
    grid: Mapping[str, Sequence[float]],
    *,
    seeds: int = 10,
    config: Config | None = None,
    key=None,
    progress: bool = True,
    engine: str | Engine = "auto",
    histories: bool = False,
    optimizer: optax.GradientTransformation | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    max_buckets: int = MAX_BUCKETS,
    regime_tolerance: float = REGIME_TOLERANCE,
    devices: Sequence[jax.Device] | None = None,
    checkpoint: str | os.PathLike | None = None,
    paired: bool = False,
    limit: bool = False,
    _after_chunk: Callable[[int], None] | None = None,
) -> SweepResult:
    """Train every grid point × seed and collect final metrics (and histories) in a ``SweepResult``.

    Args:
      grid: Config field name → 1-D sequence of values, e.g. ``{"d": [250, 500], "signal_norm": [5, 10]}``;
        any of ``config.SWEEPABLE`` (d, signal_norm, rho, sigma, noise_rate, lr). Axes keep the grid's order.
      seeds: runs per grid point.
      config: base configuration for every field the grid does not set (default ``Config()``).
      key: base key or int seed (default 0). Run keys: ``run_key(key, seed, coordinates)``.
      progress: a progress bar (``tqdm``) on stderr, with compile time apart from the rate and ETA.
      engine: ``"auto"``, ``"primal"``, ``"reduced"``, ``"kernel"`` or an ``Engine``, as in ``simulate``.
      histories: also keep every run's logged metrics (memory: runs × n_logs × ~40 floats).
      optimizer: optax transformation for every run (default gradient descent with ``config.lr``; with ``lr``
        in the grid only the default follows it).
      chunk_size: runs per compiled call; default from the backend (``jaxbo.plan.chunk_shape``): on a CPU
        cache-sized batches, several per call; on an accelerator as many runs as fit ``memory_budget``.
      memory_budget: bytes of run data one call may hold (default: ``plan.MEMORY_BUDGET`` on a CPU, half of
        each accelerator's memory otherwise).
      max_buckets: most distinct padded widths (compiles) of a primal sweep over d.
      regime_tolerance: ε of the benign/harmful split (benign: all labels fitted, test accuracy >= 1 − ε).
      devices: devices to shard each call's runs over (``shard_map`` over a 1-D mesh); default
        ``jaxbo.devices.sweep_devices()``: every local device and, on a CPU where JAX has not started yet, one
        CPU device per core (said once on stderr). Each run's randomness comes from its own key, so the device
        count and the chunk size change no run's data; they change the vmapped batch size, hence float32
        rounding: continuous metrics agree to about 1e-6 relative, accuracies and regimes agree unless a
        margin lies within rounding of 0 (tests/test_scale.py checks this).
      checkpoint: directory for finished chunks (``jaxbo.checkpoint``): a rerun with the same arguments
        loads them and computes only the rest, giving the same numbers as an uninterrupted sweep; a
        directory of another sweep (grid, config, seeds, key, engine, plan or jaxbo version) is refused.
      paired: share every random draw (token noise, label flips, the test draw) between the runs of one seed
        that differ only in ‖μ‖ (``signal_norm``, which must be a grid axis): common random numbers. Each cell's
        law is unchanged, while differences between ‖μ‖ values of one seed lose the seed-to-seed noise (what
        that does to ``analysis.boundaries``: docs/benchmarks.md). The reduced engine then trains a key's runs of
        every ‖μ‖ together, with one Gram matrix (``Engine.shared_step``; under half the compute); other engines and
        settings pair by keys alone (``metadata["plan"]["unshared"]`` says why). Default False: every run draws
        its own (``run_key(..., paired=True)`` gives a paired run's key). Recorded in ``metadata["paired"]``;
        ``merge`` refuses to mix the two.
      limit: also compute every run's t → ∞ limit (``jaxbo.limit``: the attention SVM of the tokens each
        training sample attends most at the horizon, certified), stored as ``final["limit_<field>"]``;
        ``majority_regime(limit=True)`` and ``analysis.boundaries(result, limit=True)`` read it. Refused
        before compiling where it is not covered (trained W, a trained head, several heads, a random start,
        the encoder, a custom optimizer). A paired sweep then steps its runs alone.

    Returns:
      ``SweepResult`` with arrays (*grid_shape, seeds, …) and the plan in ``metadata["plan"]``.
    """
    started = time.perf_counter()
    # First, while JAX may not have started: the default devices may ask for one CPU device per core.
    devices = devices_lib.sweep_devices(announce=progress) if devices is None else list(devices)
    config = Config() if config is None else config
    engine = checked_engine(config, optimizer, engine, limit=limit)
    axes = validate_grid(grid, config)
    _check_paired(paired, axes)
    _check_options(seeds, chunk_size, memory_budget, max_buckets, regime_tolerance)
    base_key = as_key(0 if key is None else key)
    if not devices or not all(isinstance(device, jax.Device) for device in devices):
        raise TypeError(f"devices must be a non-empty sequence of jax.Device, got {devices!r}")

    plan = make_plan(
        axes,
        config,
        seeds=seeds,
        engine=engine,
        histories=histories,
        backend=Backend.of(devices),
        chunk_size=chunk_size,
        memory_budget=memory_budget,
        max_buckets=max_buckets,
        paired=paired,
        unshared=_unshared(engine, config, optimizer, limit) if paired else (),
    )
    finals, histories_out, store, bar = _execute_under_bar(
        plan, config, base_key, devices, checkpoint, histories=histories, optimizer=optimizer, progress=progress,
        after_chunk=_after_chunk, limit=limit,
    )  # fmt: skip
    metadata = _metadata(
        plan,
        devices,
        key=key,
        optimizer=optimizer,
        histories=histories,
        store=store,
        elapsed=time.perf_counter() - started,
        progress=bar,
        limit=limit,
    )
    return assemble(
        plan,
        config,
        finals,
        histories_out,
        histories=histories,
        metadata=metadata,
        regime_tolerance=regime_tolerance,
    )
