"""One run: sample, start the engine's ``Trainer``, descend in nested ``lax.scan``, record metrics.

Every engine (``jaxbo.engines``) runs through the one loop here (``descend``): steps in a ``lax.scan`` of
``config.log_every`` steps nested in a scan over ``config.n_logs`` blocks, so metrics are scan outputs and nothing
syncs with the host inside the loop.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbo import data as data_lib
from jaxbo import engines
from jaxbo import limit as limit_lib
from jaxbo.config import SWEEPABLE, Config, with_traced
from jaxbo.engines import Engine, RunKeys, Trainer
from jaxbo.memory import check_fits
from jaxbo.metrics import Metrics, saturation
from jaxbo.model import Params

__all__ = [
    "Metrics",
    "Run",
    "as_key",
    "checked_engine",
    "descend",
    "jit_config",
    "make_run",
    "run",
    "run_paired",
    "simulate",
    "train_from",
]


@dataclasses.dataclass(frozen=True)
class Run:
    """Result of ``simulate``.

    Attributes:
      params: final parameters, in the engine's coordinates (``coordinates`` says which). With the reduced
        engine ``params.p`` has 2 + n_train·T entries: p on e₁, e₂ (so on μ₁, μ₂), then on an orthonormal basis
        of the training noise's span. Every metric, ‖p‖ and cos(p, μ_c) are the same as in R^d;
        ``jaxbo.reduced_form.lift(run.params.p, key, d)`` gives a d-vector with the same joint law as p.
      history: ``Metrics`` recorded after steps log_every, 2·log_every, …, steps; fields (n_logs, …).
      final: ``Metrics`` after the last step (equals the last row of ``history``).
      log_steps: (n_logs,) int32, the step count at each history row.
      engine: the engine's name: ``"primal"`` (d-dimensional tokens), ``"reduced"`` (exact 2 + nT
        representation), ``"kernel"`` (W and p in kernel form, ``jaxbo.kernel_form``), or another registered one.
      data: (training set, test set) in the engine's coordinates when asked for (``simulate(...,
        keep_data=True)``, e.g. for ``plot.selected_tokens``), else None.
      limit: the run's t → ∞ limit (``jaxbo.limit.Limit``: max-margin token selection, certified) when asked
        for (``simulate(..., limit=True)``), else None.
      coordinates: which coordinates ``params`` live in, in words (``Engine.describe``).
    """

    params: Params
    history: Metrics
    final: Metrics
    log_steps: jax.Array
    engine: str = "primal"
    data: tuple[data_lib.Dataset, data_lib.Dataset] | None = None
    limit: limit_lib.Limit | None = None
    coordinates: str = ""

    def __repr__(self) -> str:
        final = self.final
        batch = tuple(np.shape(final.train_accuracy))
        if batch:
            summary = f"batch of {batch} runs"
        else:
            summary = (
                f"train acc {float(final.train_accuracy):.3f}, test acc {float(final.test_accuracy):.3f}, "
                f"noisy fit {float(final.noisy_fit):.3f}, train loss {float(final.train_loss):.4f}"
            )
        steps = int(np.asarray(self.log_steps).reshape(-1)[-1]) if np.size(self.log_steps) else 0
        return (
            f"Run(engine={self.engine!r}, {steps} steps, {np.shape(self.log_steps)[-1]} logged rows, {summary}; "
            f"params in {self.coordinates})"
        )


jax.tree_util.register_dataclass(
    Run, data_fields=["params", "history", "final", "log_steps", "data", "limit"], meta_fields=["engine", "coordinates"]
)


def descend(
    config: Config, trainer: Trainer, train_set: data_lib.Dataset, *, log_history: bool = True
) -> tuple[object, Metrics | None, Metrics]:
    """Run ``trainer`` for ``config.steps`` steps; pure and jit-able (config's shape fields static).

    The carry holds the trainer's values, its optimizer state and Σ_τ 𝔖⁽ⁱ⁾(τ) per training sample (n,), one
    add per step from the attention each step started from, grouped only when metrics are logged.

    Returns:
      (final values, history (``Metrics`` with a leading (n_logs,) axis) or None, final ``Metrics``).
    """

    def step(carry, _):
        values, opt_state, saturation_totals = carry
        values, opt_state, attention = trainer.step(values, opt_state)
        if attention is not None:
            saturation_totals = saturation_totals + saturation(attention, train_set.roles)
        return (values, opt_state, saturation_totals), None

    def block(carry, _):
        carry, _ = jax.lax.scan(step, carry, length=config.log_every)
        values, _, saturation_totals = carry
        return carry, trainer.evaluate(values, saturation_totals) if log_history else None

    zeros = jnp.zeros(train_set.tokens.shape[0], train_set.tokens.dtype)
    carry = (trainer.values, trainer.opt_state, zeros)
    (values, _, saturation_totals), history = jax.lax.scan(block, carry, length=config.n_logs)
    return values, history, trainer.evaluate(values, saturation_totals)


def train_from(
    config: Config, trainer: Trainer, train_set: data_lib.Dataset, *, log_history: bool = True
) -> tuple[object, Metrics | None, Metrics]:
    """(final parameters, history or None, final ``Metrics``): ``descend`` for a trainer built by hand, e.g. an
    engine's ``descent_trainer``, ``gram_trainer`` or ``kernel_trainer`` from given parameters and data."""
    values, history, final = descend(config, trainer, train_set, log_history=log_history)
    return trainer.params_of(values), history, final


def run(
    key: jax.Array,
    config: Config,
    *,
    width: int,
    engine: Engine,
    optimizer: optax.GradientTransformation | None = None,
    log_history: bool = True,
    keep_data: bool = False,
    limit: bool = False,
) -> Run:
    """Sample data, start ``engine``'s trainer and descend: one run, pure and jit-able (``width``, ``engine``,
    ``optimizer``, ``log_history``, ``keep_data`` and ``limit`` static).

    ``width`` is the run's array width (``engine.width(config)``, or a wider bucket where the engine pads).
    Without ``log_history`` an engine may sample no test set: its final test metrics then come from its own
    exact draw (the attention model's 4-coordinate ``data.sample_test_projected``: another test sample than
    with ``log_history``, from the same distribution), which is what makes sweeps cheap. ``keep_data`` returns
    the training and test sets in ``Run.data`` (needs ``log_history``). ``limit`` adds the run's t → ∞ limit
    (``Run.limit``), computed once from the final values (``Trainer.limit``).
    """
    keys = RunKeys(*data_lib.run_keys(key))
    train_set, test_set = engine.sample(keys, config, width, log_history)
    trainer = engine.start(keys, config, width, train_set, test_set, optimizer)
    values, history, final = descend(config, trainer, train_set, log_history=log_history)
    log_steps = jnp.arange(1, config.n_logs + 1, dtype=jnp.int32) * config.log_every
    data = (train_set, test_set) if keep_data and log_history else None
    params = trainer.params_of(values)
    limit_metrics = trainer.limit(values) if limit else None
    return Run(
        params=params,
        history=history,
        final=final,
        log_steps=log_steps,
        engine=engine.name,
        data=data,
        limit=limit_metrics,
        coordinates=engine.describe(params),
    )


_run_jit = jax.jit(run, static_argnames=("width", "optimizer", "log_history", "engine", "keep_data", "limit"))


def as_key(key) -> jax.Array:
    """A typed PRNG key from a key or an int seed; ``TypeError`` for anything else."""
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        return jax.random.key(int(key))
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"key must be a single PRNG key, got a key array of shape {key.shape}")
        return key
    if isinstance(key, jax.Array | np.ndarray) and key.dtype == np.uint32 and key.shape == (2,):
        return jax.random.wrap_key_data(jnp.asarray(key))
    raise TypeError(f"key must be a jax.random.key(...) or an int seed, got {type(key).__name__}")


def checked_engine(
    config: Config,
    optimizer: optax.GradientTransformation | None,
    engine: str | Engine,
    log_history: bool = False,
    limit: bool = False,
) -> Engine:
    """Validate the arguments every entry point shares, before any tracing, and resolve ``engine``
    (``jaxbo.engines.resolve``).

    Also refuses, before compiling, a run beyond the engine's indexing or (with its history's test set when
    ``log_history``) beyond this machine's available memory, naming the size; ``sweep`` checks each group
    against its devices' memory too (on a CPU, every device's run at once).
    """
    if not isinstance(config, Config):
        raise TypeError(f"config must be a jaxbo.Config, got {type(config).__name__}")
    config.validate()
    if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}")
    if not isinstance(limit, bool):
        raise TypeError(f"limit = {limit!r} must be True or False")
    engine = engines.resolve(config, optimizer, engine)
    if limit:
        limit_lib.check_covered(config, optimizer, engine)
    check_fits(config, engine, engine.width(config), log_history=log_history)
    return engine


def jit_config(config: Config, engine: Engine) -> Config:
    """``config`` with its sweepable fields as 0-d numpy arrays, ready to be a ``jit`` argument.

    d takes the engine's ``d_dtype``: float32 for the reduced engine, where it only counts orthogonal
    coordinates (so any d up to 2⁵³ is accepted; beyond 2²⁴ float32 rounds it to 7 significant digits, a
    relative change of the χ² degrees of freedom below 6e-8), int32 where arrays have d columns.
    """
    leaves = {name: np.asarray(getattr(config, name), np.float32) for name in SWEEPABLE if name != "d"}
    return with_traced(config, d=engine.traced_d(config.d), **leaves)


def make_run(
    config: Config,
    optimizer: optax.GradientTransformation | None = None,
    *,
    log_history: bool = True,
    engine: str | Engine = "auto",
    limit: bool = False,
):
    """``run(key) -> Run`` for a validated ``config``: pure, so ``jax.jit(jax.vmap(run))(keys)`` trains many
    seeds at once (``keys = jax.random.split(jax.random.key(0), seeds)``). ``engine`` and ``limit`` as in
    ``simulate``.
    """
    engine = checked_engine(config, optimizer, engine, log_history, limit)
    traced = jit_config(config, engine)
    width = engine.width(config)

    def run_one(key: jax.Array) -> Run:
        return run(key, traced, width=width, optimizer=optimizer, log_history=log_history, engine=engine, limit=limit)

    return run_one


def simulate(
    key,
    config: Config | None = None,
    optimizer: optax.GradientTransformation | None = None,
    *,
    engine: str | Engine = "auto",
    keep_data: bool = False,
    limit: bool = False,
) -> Run:
    """Train the paper's model once: sample data, run gradient descent from p = 0, record metrics.

    With ``Config(model="encoder")`` the model is the appendix's one-layer Transformer encoder
    (``jaxbo.encoder_model``): every parameter trained from PyTorch's default initialisation, ``Run.params`` an
    ``EncoderParams``, the metrics that belong to p NaN (``Metrics``).

    Args:
      key: ``jax.random.key`` (or an int seed); the same key gives a bit-identical ``Run``.
      config: run configuration (default ``Config()``, the authors' settings); validated before tracing.
      optimizer: any ``optax.GradientTransformation``; default ``optax.sgd(config.lr)``. Pass the same object
        again to reuse the compiled program.
      engine: ``"primal"`` (d-dimensional tokens), ``"reduced"`` (the exact 2 + n_train·T representation,
        equal in distribution; see ``jaxbo.reduced_form``), ``"kernel"`` (W and p trained in kernel form: the same
        iterates as primal, O((nT)²) per step; ``jaxbo.kernel_form``), ``"auto"`` (the cheapest exact one, see
        ``jaxbo.engines.resolve``) or an ``Engine`` object. ``Run.engine`` records the choice.
      keep_data: also return the training and test sets (``Run.data``), e.g. for ``plot.selected_tokens``.
      limit: also compute the run's t → ∞ limit (``Run.limit``, ``jaxbo.limit``): the attention SVM of the
        tokens each training sample attends most at the horizon, its certificate (settled or not) and the
        hard-selection metrics it gives. For the one-head model with ν and W fixed and no optimizer passed;
        anything else is refused before compiling, naming the field.

    Returns:
      A ``Run`` with final parameters, metric histories (n_logs rows) and final metrics. With the reduced
      engine, ``params`` live in the 2 + n_train·T coordinates (``Run.coordinates``; p[0], p[1] on e₁, e₂;
      ‖p‖ preserved); ``jaxbo.reduced_form.lift`` maps them to R^d.
    """
    config = Config() if config is None else config
    engine = checked_engine(config, optimizer, engine, log_history=True, limit=limit)
    width = engine.width(config)
    return _run_jit(
        as_key(key),
        jit_config(config, engine),
        width=width,
        optimizer=optimizer,
        engine=engine,
        keep_data=keep_data,
        limit=limit,
    )


def run_paired(
    key: jax.Array, config: Config, norms: jax.Array, *, width: int, engine: Engine, log_history: bool = False
) -> tuple[Metrics, Metrics | None]:
    """The M runs of ``key`` at ‖μ‖ = ``norms`` (M,), stepped together by ``engine.shared_step`` (a paired
    sweep's shared step); pure and jit-able (``width``, ``engine``, ``log_history`` static).

    Each run is ``run(key, config.replace(signal_norm=norms[m]))`` in law and in every random draw; the numbers
    agree to float32 rounding, as the shared Gram matrix is summed in another order (tests/test_paired.py).

    Returns:
      (final ``Metrics`` with a leading (M,) axis, history with leading (M, n_logs) axes or None).
    """
    keys = RunKeys(*data_lib.run_keys(key))
    train_set, trainer = engine.shared_step.start(keys, config, width, norms, log_history)
    _, history, final = descend(config, trainer, train_set, log_history=log_history)
    if history is not None:
        history = jax.tree.map(lambda values: jnp.moveaxis(values, 0, 1), history)  # (n_logs, M, …) → (M, n_logs, …)
    return final, history
