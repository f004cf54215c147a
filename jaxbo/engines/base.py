"""What an engine is: an ``Engine`` (how runs are planned, sampled, costed and started) that starts a ``Trainer``
(one run's descent as pure functions). ``jaxbo.train`` runs every engine's ``Trainer`` in one loop.

The shape follows optax's ``GradientTransformation`` (a NamedTuple of pure functions) for the ``Trainer``, and
gymnax's one implementation per file plus a registry for engines (``jaxbo.engines``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from jaxbo.config import DATA_FIELDS, Config
from jaxbo.deprecation import moved_names

#: Copies of a run's d-wide token arrays alive at its peak (samples, their noise and its draw's temporaries,
#: the logits' operands): XLA's own figure (``compiled.memory_analysis()``) came to 4.0–4.2 copies for the
#: primal, kernel and reduced engines at d = 500…4000; one more for headroom. tests/test_memory.py holds the
#: estimate within 1–2× of XLA's figure.
TOKEN_COPIES = 5
#: Bytes of the per-log metrics of one run (about 40 float32 values per logged row).
HISTORY_BYTES_PER_LOG = 4 * 40


class RunKeys(NamedTuple):
    """The independent streams of one run key (``data.run_keys``): training data, test data, weights."""

    train: jax.Array
    test: jax.Array
    weights: jax.Array


class Trainer(NamedTuple):
    """One run's gradient descent, as pure functions over the values it updates.

    Attributes:
      values: what descent updates, at step 0: ``{"p"}``, ``{"p", "W"}``, α of p = p⁽⁰⁾ + Xᵀα, (β, A) of the
        kernel form, an ``EncoderParams``… (any pytree).
      opt_state: the optimizer's state for ``values`` (``()`` where the engine steps by its own formula).
      step: ``(values, opt_state) -> (values, opt_state, attention)``, one full-batch step; ``attention`` is
        the training attention s (n, T) the step started from (the loop accumulates 𝔖 from it), or None where
        the model has no such attention.
      evaluate: ``(values, saturation_totals) -> Metrics`` of one run, ``saturation_totals`` (n,) the per-sample
        Σ_τ 𝔖⁽ⁱ⁾(τ) so far; its test part uses the test set the engine sampled, or the engine's own exact
        test draw where it sampled none (final metrics of a sweep).
      params_of: ``values -> `` the parameters a user gets in ``Run.params``.
      limit: ``values -> limit.Limit``, the run's t → ∞ limit (``jaxbo.limit``) from the final values, or None
        where the engine does not compute one (``Engine.limit`` says so before anything is traced).
    """

    values: Any
    opt_state: Any
    step: Callable
    evaluate: Callable
    params_of: Callable
    limit: Callable | None = None


class SharedStep(NamedTuple):
    """How an engine trains the M runs of one key that differ only in ‖μ‖ (a paired sweep,
    ``sweep(..., paired=True)``) together, e.g. with one shared Gram matrix (``reduced_paired``).

    Attributes:
      start: ``(keys, config, width, norms, log_history) -> (training set, Trainer)`` for the runs at ‖μ‖ =
        ``norms`` (M,): the trainer's metrics are (M, …); its step returns no attention (None) and sums each
        run's 𝔖 in its own values, since ``train.descend`` keeps one total per training sample of one run.
      not_shared: ``(config, optimizer) -> list[str]``: why ``start`` does not apply here (each reason names the
        field and value); ``[]`` when it does.
      step_bytes: ``(config, width, M) -> int``, bytes one step of the M runs reads (the CPU plan keeps a
        batch's in cache).
    """

    start: Callable
    not_shared: Callable
    step_bytes: Callable[[Config, int, int], int]


@dataclasses.dataclass(frozen=True)
class Engine:
    """One way to train one model; registered in ``jaxbo.engines.REGISTRY`` (or passed as ``engine=``).

    Its fields fall in four groups (``ENGINE_GROUPS``): identity (``name``, ``model``, ``summary``,
    ``former_names``, ``title``, ``coordinates``: what it is called and how it presents a run), applicability
    (``not_exact``, ``settings``, ``limit``: the claims of exactness its training code earns), cost and planning
    (``width``, ``padding``, ``d_dtype``, ``bytes_per_run``, ``step_bytes``, ``size_words``, ``max_width``,
    ``cpu_batch``) and training (``sample``, ``start``, ``shared_step``). A new engine built on an existing one
    writes only what differs: ``derive``.

    Attributes:
      name: what users pass as ``engine=`` (``Run.engine``, ``metadata["engine"]``).
      model: the ``Config.model`` it trains.
      summary: one line for docs and error messages: what it computes and at which cost.
      not_exact: ``(config, optimizer) -> list[str]``: why it does not reproduce the model's gradient descent
        here (each reason names the field and value); ``[]`` when it does. ``engine="auto"`` takes the first
        registered engine of the model with no reason.
      width: ``config -> int``: the array width of a run (d, or 2 + n·T for the reduced engine).
      padding: how the plan groups runs of several d: ``"free"`` (the width does not depend on d: one group),
        ``"zeros"`` (runs may be zero-padded to a wider bucket: the same numbers) or ``"none"`` (one group per d).
      d_dtype: numpy dtype of d as a traced argument (int32 where arrays have d columns; float32 where d only
        counts coordinates).
      sample: ``(keys: RunKeys, config, width, log_history) -> (train set, test set or None)``; None: the
        final test metrics come from ``Trainer.evaluate``'s own draw.
      start: ``(keys, config, width, train set, test set or None, optimizer or None) -> Trainer``.
      bytes_per_run: ``(config, width, log_history) -> int``, peak bytes of one run (an upper bound of XLA's
        figure, held to 1–2× of it by tests/test_memory.py).
      step_bytes: ``(config, width) -> int``, bytes one step reads (the CPU plan keeps a batch's in cache).
      size_words: ``(config, width, name) -> (size, what, remedy)``, the words of a memory refusal by the engine
        called ``name`` (the one that refused, so engines can share the function).
      max_width: the largest width its indexing allows (None: no limit).
      title: ``config -> str``, the model in words for figure titles (``plot.model_name``); None: its name.
      shared_step: how it steps a paired sweep's runs of one key together (``SharedStep``); None: it pairs
        runs only by sharing their keys.
      limit: whether its trainers compute the t → ∞ limit (``Trainer.limit``) for the settings that
        ``jaxbo.limit.not_covered`` accepts; opt-in, False unless an engine declares it.
      settings: the model settings (``Config`` fields beyond ``config.DATA_FIELDS``) it was written for: it runs
        every value of each exactly or names it in ``not_exact``. A setting it does not declare, at a value other
        than its default, makes it inapplicable (``reasons``): a field added later is never silently run by an
        engine that does not know it. Opt-in: an engine that declares nothing runs only the defaults.
      cpu_batch: the fewest runs per device in a CPU batch, where an engine measured that batches the cache
        rule makes smaller (``step_bytes`` above ``plan.CACHE_BYTES``) are bound by per-operation overhead.
      former_names: names the engine had in earlier releases: ``engine=`` still accepts them (for one release,
        with a ``DeprecationWarning``) and checkpoints keep the first (``store_name``), so stores written before
        a rename resume.
      coordinates: ``params -> str``, which coordinates a run's parameters live in, in words, from their shapes
        alone (``Run.coordinates``); None: the engine's name and the parameters' type.
    """

    name: str
    model: str
    summary: str
    not_exact: Callable[[Config, optax.GradientTransformation | None], list[str]]
    width: Callable[[Config], int]
    padding: str
    d_dtype: type
    sample: Callable
    start: Callable
    bytes_per_run: Callable[[Config, int, bool], int]
    step_bytes: Callable[[Config, int], int]
    size_words: Callable[[Config, int, str], tuple[str, str, str]]
    max_width: int | None = None
    title: Callable[[Config], str] | None = None
    shared_step: SharedStep | None = None
    limit: bool = False
    settings: frozenset[str] = frozenset()
    cpu_batch: int = 1
    coordinates: Callable[[Any], str] | None = None
    former_names: tuple[str, ...] = ()

    def __post_init__(self):
        if self.padding not in ("free", "zeros", "none"):
            raise ValueError(f"Engine.padding = {self.padding!r} must be 'free', 'zeros' or 'none'")
        if isinstance(self.cpu_batch, bool) or not isinstance(self.cpu_batch, int) or self.cpu_batch < 1:
            raise ValueError(f"Engine.cpu_batch = {self.cpu_batch!r} must be an int >= 1")

    def reasons(self, config: Config, optimizer: optax.GradientTransformation | None) -> list[str]:
        """Why this engine does not run ``config`` (with ``optimizer``) exactly: every model setting at a
        non-default value that it does not declare (``settings``), then its own ``not_exact``; ``[]`` when it
        does."""
        undeclared = [
            f"Config.{field.name} = {getattr(config, field.name)!r} (the {self.name} engine does not declare this "
            "setting)"
            for field in dataclasses.fields(config)
            # Config.model is the engine's identity (``Engine.model``), matched by ``engines.resolve``.
            if field.name not in DATA_FIELDS
            and field.name != "model"
            and field.name not in self.settings
            and getattr(config, field.name) != field.default
        ]
        return undeclared + self.not_exact(config, optimizer)

    def unshared(self, config: Config, optimizer: optax.GradientTransformation | None) -> list[str]:
        """Why a paired sweep of ``config`` cannot step its runs of one key together (``shared_step``); ``[]``
        when it can. Such a sweep still pairs its runs, by sharing their keys."""
        if self.shared_step is None:
            return [f"the {self.name} engine has no shared step for paired runs"]
        return self.shared_step.not_shared(config, optimizer)

    def derive(self, **changes: Any) -> Engine:
        """A new engine that writes only what differs from this one (``changes``: field name → value).

        ``name``, ``summary``, ``start`` and ``not_exact`` must be among ``changes``: new training code is a new
        engine with claims of its own. The claims this engine earned with its own code (``settings``, ``limit``,
        ``shared_step``) and its ``former_names`` are not inherited: they start empty, and the new engine
        declares each again where its code earns it, so copying an engine cannot carry a claim to code that does
        not keep it. The rest (cost and planning, sampling, title, coordinates) carries over unless changed.
        """
        known = {field.name for field in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"Engine.derive: Engine has no field(s) {unknown}; its fields are {sorted(known)}")
        missing = [name for name in DERIVE_REQUIRES if name not in changes]
        if missing:
            raise TypeError(
                f"Engine.derive from {self.name!r} needs {missing}: a derived engine is new training code, "
                "so it names itself, says what it computes, and states when it is exact"
            )
        return dataclasses.replace(self, **{**DERIVE_RESETS, **changes})

    @property
    def store_name(self) -> str:
        """The name a checkpoint's fingerprint records: the first former name, else ``name``."""
        return self.former_names[0] if self.former_names else self.name

    def describe(self, params) -> str:
        """Which coordinates ``params`` (a run's final parameters) live in, in words, prefixed by the engine."""
        words = type(params).__name__ if self.coordinates is None else self.coordinates(params)
        return f"{self.name}: {words}"

    def traced_d(self, d) -> np.ndarray:
        """d as this engine's traced argument (0-d array of ``d_dtype``)."""
        return np.asarray(d, self.d_dtype)


#: ``Engine``'s fields by concern (a test holds that they partition the dataclass's fields).
ENGINE_GROUPS = {
    "identity": ("name", "model", "summary", "former_names", "title", "coordinates"),
    "applicability": ("not_exact", "settings", "limit"),
    "cost and planning": (
        "width",
        "padding",
        "d_dtype",
        "bytes_per_run",
        "step_bytes",
        "size_words",
        "max_width",
        "cpu_batch",
    ),
    "training": ("sample", "start", "shared_step"),
}
#: What ``Engine.derive`` needs given, and what it does not inherit (each at its empty value).
DERIVE_REQUIRES = ("name", "summary", "start", "not_exact")
DERIVE_RESETS = {"settings": frozenset(), "limit": False, "shared_step": None, "former_names": ()}


#: 0.4's names of the attention model's evaluation, which moved to ``jaxbo.evaluation`` (this file holds only the
#: engine interface), for one release.
__getattr__ = moved_names(
    __name__,
    {
        name: f"jaxbo.evaluation.{name}"
        for name in (
            "LIMIT_TEST_STREAM",
            "ATTENTION_SETTINGS",
            "attention_title",
            "attention_coordinates",
            "attention_evaluate",
            "attention_limit",
        )
    },
)
