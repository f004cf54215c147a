"""Run configuration: one frozen, typed pytree, validated in Python before any tracing.

Fields that fix array shapes (sizes, step counts, modes) are static pytree metadata; the fields a sweep varies
(``d``, ``signal_norm``, ``rho``, ``sigma``, ``noise_rate``, ``lr``) are pytree leaves, so one compiled
program serves every value of them and ``vmap`` can batch them.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import jax

LAYOUTS = {(1, 1, 1): "current code", (2, 2, 2): "earlier variant"}
FLIPS = ("balanced", "random")
ATTENTION = ("identity", "fixed", "trained")
WEIGHT_INITS = ("uniform", "gaussian")
NORMALISERS = ("softmax", "sigmoid")
GRADIENTS = ("analytic", "autodiff")
MODELS = ("attention", "encoder", "causal")
TARGET_NOISES = ("sequence", "token")

#: Config fields that are traced leaves (sweepable); every other field fixes a shape or a code path.
SWEEPABLE = ("d", "signal_norm", "rho", "sigma", "noise_rate", "lr")
#: Config fields every engine runs at any value: the data's law and sizes, the step size and the schedule. Every
#: other field is a model setting, which an engine runs only where it declares it (``Engine.settings``).
DATA_FIELDS = ("n_train", "T", "d", "signal_norm", "rho", "sigma", "noise_rate", "n_test", "lr", "steps", "log_every")
DATA_FIELDS += ("layout", "flips")
#: Largest d: every integer up to 2⁵³ is exact in float64. The reduced engine takes any such d (it enters
#: only as a count of orthogonal coordinates); the primal engine refuses, before compiling, a d whose arrays
#: do not fit in memory.
MAX_D = 2**53
#: Most attention heads: every head is a vmapped copy of the model's arrays.
MAX_HEADS = 1024
#: Most encoder blocks.
MAX_LAYERS = 64


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of one run, defaults as in the authors' code (paper §5, docs/model.md §3).

    Attributes:
      n_train: number of training samples n; the first ``n_train // 2`` have clean label +1.
      T: tokens per sample.
      d: embedding dimension (traced: a sweep may vary it).
      signal_norm: ‖μ‖, the norm of both signal vectors μ₁ = ‖μ‖e₁ and μ₂ = ‖μ‖e₂.
      rho: ρ ∈ (0, 1), strength of the weakly-relevant tokens.
      sigma: σ > 0, standard deviation of the per-coordinate token noise.
      noise_rate: η ∈ [0, ½), fraction of training labels flipped.
      n_test: number of clean test samples.
      lr: gradient-descent step size η_lr.
      steps: number of full-batch gradient steps.
      log_every: metrics are recorded after every ``log_every`` steps; must divide ``steps``.
      layout: (|R|, |W⁺|, |W⁻|): relevant, weakly-relevant aligned and weakly-relevant opposite tokens, placed
        first in that order; the remaining tokens are irrelevant.
      flips: ``"balanced"``: ⌈ηn⌉ flips requested, ⌊⌈ηn⌉/2⌋ taken from each class (the authors' rule), or
        ``"random"``: each training label flipped independently with probability η.
      attention: ``"identity"`` (W = I, only p trained: the paper's analysis), ``"fixed"`` (a seeded random W,
        uniform in ±1/√d, kept fixed) or ``"trained"`` (W and p trained, as the authors' final code).
      weight_init: the law of a random W₀ (``attention="fixed"`` or ``"trained"``): ``"uniform"`` (entries
        uniform in ±1/√d, PyTorch's kaiming_uniform, as the authors) or ``"gaussian"`` (entries N(0, 1/(3d)), the
        same variance). A Gaussian W₀ is orthogonally invariant, which the reduced kernel engine needs to run the
        model in 2 + nT coordinates at any d (docs/exact_reduction.md, "Trained W at any d").
      normaliser: φ, how the attention model turns logits a = XWᵀp into attention: ``"softmax"`` (the
        paper's, s = softmax(a) over the T tokens) or ``"sigmoid"`` (s_t = σ(a_t) token by token, unnormalised;
        sigmoid attention). Every engine of the attention model runs either exactly; the t → ∞ limit is the
        softmax's.
      gradient: ``"analytic"`` (the closed form of docs/model.md §4, the paper's object) or ``"autodiff"`` (jax.grad).
      model: ``"attention"`` (f(X) = νᵀXᵀsoftmax(XWᵀp), the paper's model), ``"encoder"`` (the appendix's
        one-layer Transformer encoder, ``jaxbo.encoder_model``: every parameter trained by ``jax.grad``, so
        ``attention`` and ``gradient`` do not apply to it) or ``"causal"`` (the paper's third limit: one query
        under a causal mask, predicting after every prefix that holds each role, ``jaxbo.causal_model``; W = I).
      mlp_width: width of the encoder's GELU MLP (2000 in the paper; 0: no MLP branch). Unused by the
        attention model.
      heads: H, attention heads of the attention model, f(X) = Σ_h ν_hᵀXᵀsoftmax(XW_hᵀp_h), each ν_h = ν/H
        (a leading head axis of ``model.Params``); 1 is the paper's model.
      train_head: also train the head ν (each ν_h), from the paper's ν/H, with p (and W when
        ``attention="trained"``); False (the paper) keeps ν fixed.
      query_init_std: s, the scale of a random start p_h⁽⁰⁾ ~ N(0, s²I_d) (each head its own draw); 0 (the
        paper) starts from p = 0.
      layers: L, pre-LayerNorm blocks of the encoder (``model="encoder"``); 1 is the appendix's encoder.
      target_noise: the causal model's label noise (``model="causal"``): ``"sequence"`` (every target of a
        noisy sequence is its flipped label, as the paper's noise) or ``"token"`` (each next-label target
        flipped on its own, η of all targets, by ``flips``).
    """

    n_train: int = 20
    T: int = 8
    d: int = 2000
    signal_norm: float = 20.0
    rho: float = 0.1
    sigma: float = 1.0
    noise_rate: float = 0.2
    n_test: int = 1000
    lr: float = 5e-3
    steps: int = 1000
    log_every: int = 10
    layout: tuple[int, int, int] = (1, 1, 1)
    flips: str = "balanced"
    attention: str = "identity"
    weight_init: str = "uniform"
    normaliser: str = "softmax"
    gradient: str = "analytic"
    model: str = "attention"
    mlp_width: int = 2000
    heads: int = 1
    train_head: bool = False
    query_init_std: float = 0.0
    layers: int = 1
    target_noise: str = "sequence"

    def __new__(cls, *args: Any, **kwargs: Any) -> Config:
        # Runs before the generated __init__, so a misspelled field is named with the valid ones listed.
        unknown = sorted(set(kwargs) - set(field_names()))
        if unknown:
            raise TypeError(f"Config has no field(s) {unknown}; fields are {field_names()}")
        return super().__new__(cls)

    def __post_init__(self) -> None:
        # Validated where it is made, so the error points at the line with the mistake.
        self.validate()

    @property
    def variant(self) -> bool:
        """Whether the attention model is one of the paper's open questions (``heads``, ``train_head``,
        ``query_init_std``) rather than the analysed model itself."""
        return self.heads != 1 or self.train_head or self.query_init_std != 0

    @property
    def n_logs(self) -> int:
        """Number of recorded metric rows, ``steps // log_every``."""
        return self.steps // self.log_every

    def replace(self, **changes: Any) -> Config:
        """A validated copy with ``changes`` applied (unknown names raise ``TypeError``)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"Config has no field(s) {unknown}; fields are {field_names()}")
        return dataclasses.replace(self, **changes)

    def validate(self) -> Config:
        """Check every field; raise ``TypeError``/``ValueError`` naming field, value and allowed range.

        Runs on construction; returns ``self`` so calls chain. Only concrete (Python) values are checked:
        traced copies are made with ``with_traced``, which does not validate. One check per group of fields:
        the data (``_check_data``), the descent (``_check_descent``), the model (``_check_model``, then
        ``_check_modes`` for the string-valued settings).
        """
        _check_data(self)
        _check_descent(self)
        _check_model(self)
        return self


def _check_data(config: Config) -> None:
    """The paper's data: sizes, the law's parameters and the token layout."""
    _check_int("n_train", config.n_train, minimum=2, why="both classes need a sample")
    _check_int("T", config.T, minimum=3, why="a sample needs a relevant and two weakly-relevant tokens")
    _check_int("d", config.d, minimum=2, maximum=MAX_D, why="μ₁ ⟂ μ₂ need two coordinates; d is carried as a float")
    _check_int("n_test", config.n_test, minimum=1)
    _check_real("signal_norm", config.signal_norm, low=0.0, low_open=True)
    _check_real("rho", config.rho, low=0.0, high=1.0, low_open=True, high_open=True)
    _check_real("sigma", config.sigma, low=0.0, low_open=True)
    _check_real("noise_rate", config.noise_rate, low=0.0, high=0.5, high_open=True)
    layout = config.layout
    if (
        not isinstance(layout, tuple)
        or len(layout) != 3
        or not all(isinstance(c, int) and not isinstance(c, bool) for c in layout)
    ):
        raise TypeError(
            f"Config.layout = {layout!r} must be a tuple of three ints (relevant, weak aligned, weak opposite)"
        )
    if layout[0] < 1 or min(layout) < 0:
        raise ValueError(
            f"Config.layout = {layout} is out of range: needs >= 1 relevant token and >= 0 weakly-relevant "
            f"tokens of each kind (the authors use {sorted(LAYOUTS)})"
        )
    if sum(layout) > config.T:
        raise ValueError(f"Config.T = {config.T} is smaller than the layout {layout} needs: T must be >= {sum(layout)}")


def _check_descent(config: Config) -> None:
    """The training loop: step size, horizon and logging cadence."""
    for name in ("steps", "log_every"):
        _check_int(name, getattr(config, name), minimum=1)
    _check_real("lr", config.lr, low=0.0, low_open=True)
    if config.steps % config.log_every:
        raise ValueError(
            f"Config.steps = {config.steps} is not a multiple of Config.log_every = {config.log_every}: "
            "steps must be k * log_every for an integer k >= 1"
        )


def _check_model(config: Config) -> None:
    """The model's numeric settings, its string-valued ones (``_check_modes``), and which model each needs."""
    _check_int("mlp_width", config.mlp_width, minimum=0, why="0 switches the encoder's MLP branch off")
    _check_int("heads", config.heads, minimum=1, maximum=MAX_HEADS, why="f sums over the heads")
    if not isinstance(config.train_head, bool):
        raise TypeError(f"Config.train_head = {config.train_head!r} must be True or False")
    _check_real("query_init_std", config.query_init_std, low=0.0)
    _check_int("layers", config.layers, minimum=1, maximum=MAX_LAYERS, why="blocks of the encoder")
    _check_modes(config)
    if config.model != "encoder" and config.layers != 1:
        raise ValueError(
            f"Config.layers = {config.layers} stacks encoder blocks: it needs model='encoder' (the attention "
            f"model has one layer; got model={config.model!r})"
        )
    if config.model != "attention" and config.variant:
        raise ValueError(
            f"Config.model = {config.model!r} with heads = {config.heads}, train_head = {config.train_head}, "
            f"query_init_std = {config.query_init_std}: these are variants of the attention model "
            "(model='attention'); leave them at 1, False, 0"
        )


def _check_modes(config: Config) -> None:
    """The string-valued fields: each one of its allowed values, and a W₀ law only where there is a random W₀."""
    for name, allowed in (
        ("flips", FLIPS),
        ("attention", ATTENTION),
        ("weight_init", WEIGHT_INITS),
        ("normaliser", NORMALISERS),
        ("gradient", GRADIENTS),
        ("model", MODELS),
        ("target_noise", TARGET_NOISES),
    ):
        value = getattr(config, name)
        if not isinstance(value, str) or value not in allowed:
            raise ValueError(f"Config.{name} = {value!r} is unknown: allowed values are {allowed}")
    if config.weight_init != "uniform" and (config.attention == "identity" or config.model != "attention"):
        raise ValueError(
            f"Config.weight_init = {config.weight_init!r} sets the law of a random W₀: it needs model='attention' "
            f"with attention='fixed' or 'trained' (got model={config.model!r}, attention={config.attention!r}); "
            "leave it at 'uniform' otherwise"
        )
    if config.normaliser != "softmax" and config.model == "encoder":
        raise ValueError(
            f"Config.normaliser = {config.normaliser!r} is the attention model's φ: it needs model='attention' or "
            f"'causal' (got model={config.model!r}, whose attention is the encoder's own softmax); leave it at "
            "'softmax'"
        )
    if config.target_noise != "sequence" and config.model != "causal":
        raise ValueError(
            f"Config.target_noise = {config.target_noise!r} is the causal model's label noise: it needs "
            f"model='causal' (got model={config.model!r}); leave it at 'sequence'"
        )
    if config.model == "causal" and config.attention != "identity":
        raise ValueError(
            f"Config.attention = {config.attention!r} with model='causal': the causal model has W = I "
            "(attention='identity')"
        )


#: Fields added after checkpoint format /2 (jaxbo 0.4.0): a checkpoint fingerprint names them only at a
#: non-default value, so stores written before they existed still match a sweep that leaves them at default.
LATER_FIELDS = ("weight_init", "normaliser", "target_noise")


def field_names() -> tuple[str, ...]:
    """Names of all ``Config`` fields, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(Config))


def _check_int(name: str, value: Any, *, minimum: int, maximum: int | None = None, why: str = "") -> None:
    allowed = f"an int >= {minimum}" if maximum is None else f"an int in [{minimum}, {maximum}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Config.{name} = {value!r} must be {allowed}, got {type(value).__name__}")
    if value < minimum or (maximum is not None and value > maximum):
        reason = f" ({why})" if why else ""
        raise ValueError(f"Config.{name} = {value} is out of range: must be {allowed}{reason}")


def _check_real(
    name: str,
    value: Any,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Config.{name} = {value!r} must be a real number, got {type(value).__name__}")
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open or math.isinf(high) else ']'}"
    inside = (
        math.isfinite(value)
        and (value > low if low_open else value >= low)
        and (value < high if high_open else value <= high)
    )
    if not inside:
        raise ValueError(f"Config.{name} = {value!r} is out of range: must be a finite number in {interval}")


def with_traced(config: Config, **leaves: Any) -> Config:
    """A copy of ``config`` whose sweepable fields ``leaves`` hold arrays or tracers: not validated.

    For traced code and for handing a config to ``jit`` (validate the concrete config first). Unknown or
    static field names raise ``TypeError``.
    """
    unknown = sorted(set(leaves) - set(SWEEPABLE))
    if unknown:
        raise TypeError(f"with_traced takes only sweepable fields {SWEEPABLE}, got {unknown}")
    copy = object.__new__(Config)
    for name in field_names():
        object.__setattr__(copy, name, leaves.get(name, getattr(config, name)))
    return copy


def _flatten(config: Config):
    children = [(jax.tree_util.GetAttrKey(name), getattr(config, name)) for name in SWEEPABLE]
    return children, tuple(getattr(config, name) for name in _STATIC)


def _unflatten(static: tuple, leaves) -> Config:
    # JAX rebuilds configs with tracers, axis specs or sentinels as leaves: never validate those.
    copy = object.__new__(Config)
    for name, value in (*zip(_STATIC, static, strict=True), *zip(SWEEPABLE, leaves, strict=True)):
        object.__setattr__(copy, name, value)
    return copy


_STATIC = tuple(name for name in field_names() if name not in SWEEPABLE)
# A custom node rather than register_dataclass: unflattening must not run __init__'s validation.
jax.tree_util.register_pytree_with_keys(Config, _flatten, _unflatten)
