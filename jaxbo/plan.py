"""The plan of a sweep: grid + config → run table and chunk plan. Pure Python and numpy, nothing compiles.

The Cartesian product of the grid × seeds is one flat table of runs. Runs are grouped by array width: one
group, one compile, unless a sweep over d changes the width; then, where the engine pads (``Engine.padding``),
a few *buckets* of nearby d, each padded to its widest member, else one group per d. Each group is cut into
equal chunks, one compiled call each. How big a chunk is depends on the backend: on a CPU a chunk's training data
should stay in the cache (measured: 3× faster than big chunks); on an accelerator a chunk is as large as the
device memory budget allows, so a phase diagram is one compiled call. ``sweep`` executes a plan; this module
only decides it, so it is testable without a device. What a run costs is the engine's to say (``Engine``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxbo import engines as engines_lib
from jaxbo import memory
from jaxbo.config import SWEEPABLE, Config
from jaxbo.engines import Engine
from jaxbo.memory import Backend, physical_memory

__all__ = [
    "ACCELERATOR_MEMORY_FRACTION",
    "CACHE_BYTES",
    "MAX_BUCKETS",
    "MEMORY_BUDGET",
    "PAIRED_AXIS",
    "SUB_CHUNKS",
    "Backend",
    "Engine",
    "Group",
    "Plan",
    "bytes_per_run",
    "check_fits",
    "chunk_shape",
    "coordinate_hash",
    "make_plan",
    "paired_order",
    "physical_memory",
    "plan_buckets",
    "run_table",
    "step_bytes",
    "validate_grid",
]

#: Default memory budget of one chunk's data on a CPU, bytes; the chunk size follows from it.
MEMORY_BUDGET = 1 << 30
#: On a CPU, the arrays every step reads (the Gram matrices of the reduced engine's kernel form, the tokens of
#: the primal engine) of one device's vmapped batch are kept near this size, so they stay in the core's L2
#: cache: measured on 2 Zen-4 EPYC cores (1 MiB L2 each), 4–8 reduced runs per batch beat 20 and 40 (table
#: "CPU chunk shape" in docs/benchmarks.md, written by scripts/bench_sweep.py). Not applied on accelerators.
CACHE_BYTES = 512 << 10
#: On a CPU, cache-sized batches per compiled call (run one after another by ``lax.map``): fewer calls,
#: same speed per run, and still a progress update every fraction of a second.
SUB_CHUNKS = 16
#: On an accelerator, the fraction of a device's memory a chunk may fill (the rest: XLA's temporaries).
ACCELERATOR_MEMORY_FRACTION = 0.5
#: Default upper bound on the number of d buckets (compiles) of a primal sweep.
MAX_BUCKETS = 4


def engine_of(config: Config, engine: str | Engine) -> Engine:
    """``engine`` as an ``Engine``: a registered name (for ``config.model``) is looked up."""
    return engine if isinstance(engine, Engine) else engines_lib.lookup(config.model, engine)


def bytes_per_run(config: Config, engine: str | Engine, width: int, log_history: bool) -> int:
    """Peak bytes of one run of ``engine`` (a name or an ``Engine``) at ``width``: ``Engine.bytes_per_run``."""
    return engine_of(config, engine).bytes_per_run(config, width, log_history)


def step_bytes(config: Config, engine: str | Engine, width: int) -> int:
    """Bytes one step of one run reads: ``Engine.step_bytes``."""
    return engine_of(config, engine).step_bytes(config, width)


def check_fits(config: Config, engine: str | Engine, width: int, log_history: bool, backend=None) -> None:
    """``memory.check_fits`` for ``engine`` given by name or as an ``Engine``."""
    memory.check_fits(config, engine_of(config, engine), width, log_history, backend)


#: The axis a paired sweep shares its random draws across (common random numbers): ‖μ‖ only scales the signal.
PAIRED_AXIS = "signal_norm"


def coordinate_hash(coordinates: Mapping[str, float], paired: bool = False) -> int:
    """A stable 31-bit id of grid coordinates, e.g. {"d": 2000, "signal_norm": 20.0}: CRC-32 of their text.

    ``paired`` leaves ``signal_norm`` out, so runs that differ only in ‖μ‖ get one id, hence one key.
    """
    names = sorted(name for name in coordinates if not (paired and name == PAIRED_AXIS))
    text = ";".join(f"{name}={_canonical(name, coordinates[name])}" for name in names)
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


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
        if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray | range):
            raise TypeError(f"grid[{name!r}] = {values!r} must be a 1-D sequence of numbers")
        array = np.asarray(values)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"grid[{name!r}] must be a non-empty 1-D sequence, got shape {array.shape}")
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
            raise TypeError(f"grid[{name!r}] = {values!r} must hold real numbers, got dtype {array.dtype}")
        if name == "d":
            if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
                raise ValueError(f"grid['d'] = {values!r} must hold whole numbers >= 2")
            array = np.array([int(value) for value in values], dtype=np.int64)
        for value in array:
            value = int(value) if name == "d" else float(value)
            try:
                config.replace(**{name: value})
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
    # best[(used, end)]: least padded work of values[:end] in ``used`` buckets, and the bucket ends.
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


@dataclasses.dataclass(frozen=True)
class Group:
    """Runs of one array width, executed in equal chunks of one compiled program.

    Attributes:
      width: array width of every run (d of the bucket, or 2 + n·T for the reduced engine).
      members: (runs,) int64 indices into the run table.
      chunk_size: runs per compiled call, a multiple of the device count.
      sub_chunks: vmapped batches per compiled call, run one after another (``lax.map``) so each stays in
        the CPU cache; 1 on accelerators. ``chunk_size`` is a multiple of it.
      bytes_per_run: the estimate the chunk size was derived from.
      pair_size: runs stepped together (a paired sweep's shared step, ``Engine.shared_step``): M, the number of
        ‖μ‖ values, with ``members`` ordered so each M consecutive rows are one key's runs in the grid's ‖μ‖
        order and every chunk and batch holds whole such sets; 1 where each run steps alone.
    """

    width: int
    members: np.ndarray
    chunk_size: int
    sub_chunks: int
    bytes_per_run: int
    pair_size: int = 1

    @property
    def chunks(self) -> int:
        return math.ceil(len(self.members) / self.chunk_size)

    def chunk_rows(self, index: int) -> np.ndarray:
        """Run-table rows of chunk ``index`` (the last chunk may be short)."""
        return self.members[index * self.chunk_size : (index + 1) * self.chunk_size]

    def describe(self) -> dict[str, int]:
        return {
            "width": int(self.width),
            "runs": len(self.members),
            "chunk_size": int(self.chunk_size),
            "sub_chunks": int(self.sub_chunks),
            "chunks": self.chunks,
            "bytes_per_run": int(self.bytes_per_run),
            **({"pair_size": int(self.pair_size)} if self.pair_size > 1 else {}),
        }


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything ``sweep`` executes: the run table and the chunked groups.

    Attributes:
      axes: grid axis name → (values,) array, in the grid's order.
      seeds: runs per grid point.
      engine: the resolved ``Engine``.
      values: axis name → (runs,) value of every run; runs are grid points in C order, seeds innermost.
      seed_index: (runs,) int32 seed index of every run.
      coordinate_ids: (runs,) int32 ``coordinate_hash`` of every run's coordinates.
      groups: the groups, each with its chunk size.
      backend: the backend the chunk sizes were planned for.
      paired: whether runs of one seed that differ only in ‖μ‖ share their random draws (``coordinate_hash``).
      unshared: with ``paired``, why its runs of one key are not stepped together (``Engine.unshared``; [] when
        they are: the groups' ``pair_size``).
    """

    axes: dict[str, np.ndarray]
    seeds: int
    engine: Engine
    values: dict[str, np.ndarray]
    seed_index: np.ndarray
    coordinate_ids: np.ndarray
    groups: tuple[Group, ...]
    backend: Backend
    paired: bool = False
    unshared: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return list(self.axes)

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(len(values) for values in self.axes.values())

    @property
    def total_runs(self) -> int:
        return len(self.seed_index)

    @property
    def total_chunks(self) -> int:
        return sum(group.chunks for group in self.groups)

    def describe(self) -> dict[str, Any]:
        """The plan as JSON-able facts (in the result's metadata and the checkpoint manifest)."""
        return {
            "groups": [group.describe() for group in self.groups],
            "total_runs": self.total_runs,
            "compiles": len(self.groups),
            "backend": dataclasses.asdict(self.backend),
            "paired": self.paired,
            **({"shared_step": not self.unshared, "unshared": list(self.unshared)} if self.paired else {}),
        }


def run_table(axes: Mapping[str, np.ndarray], seeds: int, paired: bool = False):
    """(values, seed_index, coordinate_ids) of the grid × seeds, grid points in C order, seeds innermost;
    ``paired``: ids (so keys) shared by runs that differ only in ``signal_norm``."""
    names = list(axes)
    cells = list(itertools.product(*(range(len(axes[name])) for name in names)))
    values = {
        name: np.repeat(np.asarray(axes[name])[[cell[i] for cell in cells]], seeds) for i, name in enumerate(names)
    }
    seed_index = np.tile(np.arange(seeds, dtype=np.int32), len(cells))
    ids = [coordinate_hash({name: axes[name][cell[i]] for i, name in enumerate(names)}, paired) for cell in cells]
    return values, seed_index, np.repeat(np.asarray(ids, dtype=np.int32), seeds)


def paired_order(rows: np.ndarray, axes: Mapping[str, np.ndarray], seeds: int) -> np.ndarray:
    """``rows`` of the run table (``run_table``) reordered so that each run of one key is followed by the
    others of that key, in the grid's ‖μ‖ order: (keys · M,) for M ‖μ‖ values. ``rows`` must hold whole such
    sets (every group does: runs of one key share d)."""
    names = list(axes)
    shape = tuple(len(axes[name]) for name in names)
    position = names.index(PAIRED_AXIS)
    stride = math.prod(shape[position + 1 :]) * seeds  # run-table rows between neighbouring ‖μ‖ values
    norm_index = (rows // stride) % shape[position]
    first_of_key = rows - norm_index * stride  # the row of the key's first ‖μ‖: one id per key
    return rows[np.lexsort((norm_index, first_of_key))]


def chunk_shape(
    config: Config,
    engine: str | Engine,
    width: int,
    runs: int,
    *,
    histories: bool,
    backend: Backend,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    pair_size: int = 1,
) -> tuple[int, int]:
    """(chunk_size, sub_chunks) of a group of ``runs`` runs of one width on ``backend``.

    CPU: each device's vmapped batch reads about ``CACHE_BYTES`` per step (``step_bytes``); up to
    ``SUB_CHUNKS`` such batches form one compiled call, so calls stay few while every step's reads stay in
    the cache. The call is bounded by ``memory_budget`` (default ``MEMORY_BUDGET``). Accelerators: one
    batch, as large as ``memory_budget`` (default ``ACCELERATOR_MEMORY_FRACTION`` of each device's memory,
    times the device count) allows. An explicit ``chunk_size`` is used as given (rounded up to the device
    count), in one batch.

    With ``pair_size`` M > 1 the unit is one key's M runs, stepped together (``Engine.shared_step``): its step
    reads ``SharedStep.step_bytes``, it holds at most M runs' data, a CPU batch holds at least 2 units where
    the group has them (a vmapped batch of 1 made XLA's CPU products 3× slower, measured), and sizes count
    whole units, returned in runs.
    """
    engine = engine_of(config, engine)
    devices = backend.device_count
    if memory_budget is None:
        if backend.accelerator and backend.memory_bytes:
            memory_budget = int(ACCELERATOR_MEMORY_FRACTION * backend.memory_bytes) * devices
        else:
            memory_budget = MEMORY_BUDGET
    per_run = bytes_per_run(config, engine, width, histories)
    if pair_size == 1:
        step = step_bytes(config, engine, width)
        return _units_per_chunk(
            runs, per_run, step, devices, backend.accelerator, chunk_size, memory_budget, engine.cpu_batch
        )
    step = engine.shared_step.step_bytes(config, width, pair_size)
    wanted = None if chunk_size is None else math.ceil(chunk_size / pair_size)
    size, sub_chunks = _units_per_chunk(
        runs // pair_size, per_run * pair_size, step, devices, backend.accelerator, wanted, memory_budget, 2
    )
    return size * pair_size, sub_chunks


def _units_per_chunk(
    units: int, unit_bytes: int, step: int, devices: int, accelerator: bool, wanted, budget: int, least: int
) -> tuple[int, int]:
    """``chunk_shape`` in units (a run, or one key's runs), ``least`` units per CPU batch and device where
    there are that many."""
    if wanted is not None:
        size = min(wanted, units)
        return math.ceil(size / devices) * devices, 1
    by_memory = max(devices, budget // unit_bytes)
    if accelerator:
        size = min(by_memory, units)
        return math.ceil(size / devices) * devices, 1
    per_device = max(least, CACHE_BYTES // step)
    batch = per_device * devices  # units per batch, all devices
    batch = min(batch, math.ceil(units / devices) * devices, by_memory // devices * devices)
    sub_chunks = max(1, min(SUB_CHUNKS, by_memory // batch, math.ceil(units / batch)))
    return batch * sub_chunks, sub_chunks


def _width_groups(axes, values, config: Config, engine: Engine, max_buckets: int) -> list[tuple[int, np.ndarray]]:
    """(width, run-table rows) of each group: one group unless d is swept and the width follows d; then d
    buckets where the engine pads with zeros (``plan_buckets``), else one group per d."""
    runs = len(next(iter(values.values())))
    if engine.padding == "free" or "d" not in axes:
        return [(engine.width(config), np.arange(runs))]
    if engine.padding == "zeros":
        bucket_widths = plan_buckets(axes["d"], max_buckets)
    else:
        bucket_widths = sorted(int(d) for d in np.unique(axes["d"]))
    run_width = np.array([min(w for w in bucket_widths if w >= d) for d in values["d"]])
    return [(width, np.flatnonzero(run_width == width)) for width in bucket_widths]


def make_plan(
    axes: Mapping[str, np.ndarray],
    config: Config,
    *,
    seeds: int,
    engine: str | Engine,
    histories: bool,
    backend: Backend,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    max_buckets: int = MAX_BUCKETS,
    paired: bool = False,
    unshared: Sequence[str] | None = None,
) -> Plan:
    """The plan of a sweep over validated ``axes`` (``validate_grid``) × ``seeds`` with a resolved ``engine``
    (an ``Engine``, or a registered name); ``paired`` as in ``run_table``. A paired plan steps each key's runs
    together (groups of ``pair_size`` M = the number of ‖μ‖ values) unless ``unshared`` gives reasons not to
    (default: ``engine.unshared(config, None)``, the default optimizer's)."""
    engine = engine_of(config, engine)
    values, seed_index, coordinate_ids = run_table(axes, seeds, paired)
    if unshared is None:
        unshared = engine.unshared(config, None)
    unshared = tuple(unshared) if paired else ()
    if paired and not unshared and len(axes[PAIRED_AXIS]) == 1:
        unshared = (f"one value of {PAIRED_AXIS}: each key has one run",)
    pair_size = len(axes[PAIRED_AXIS]) if paired and not unshared else 1
    groups = []
    for width, rows in _width_groups(axes, values, config, engine, max_buckets):
        check_fits(config, engine, int(width), histories, backend)
        if pair_size > 1:
            rows = paired_order(rows, axes, seeds)
        size, sub_chunks = chunk_shape(
            config,
            engine,
            int(width),
            len(rows),
            histories=histories,
            backend=backend,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
            pair_size=pair_size,
        )
        per_run = bytes_per_run(config, engine, int(width), histories)
        groups.append(Group(int(width), rows, size, sub_chunks, per_run, pair_size))
    return Plan(
        axes=dict(axes),
        seeds=seeds,
        engine=engine,
        values=values,
        seed_index=seed_index,
        coordinate_ids=coordinate_ids,
        groups=tuple(groups),
        backend=backend,
        paired=paired,
        unshared=unshared,
    )
