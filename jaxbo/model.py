"""The one-layer attention model f(X) = Σ_h ν_hᵀ Xᵀ φ(X W_hᵀ p_h), φ the softmax (the paper) or a sigmoid
(docs/model.md §2).

Heads are an axis of the one model: every parameter may carry a leading head axis (H, …), and every function
here, in ``jaxbo.loss`` and in ``jaxbo.metrics`` maps it through (attention (H, n, T); f summed over heads).
Without that axis it is the paper's model, H = 1, computed by the very operations it always was (the recorded
numbers stay bit for bit); the variants (``Config.variant``: several heads, a trained head, a random start)
carry it even at H = 1 (``init_params``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxbo.config import Config

#: Contractions run in full float32: TPUs and GPUs otherwise default to bf16/TF32 passes.
PRECISION = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class Params:
    """Parameters of the attention model, one head or H stacked on a leading axis.

    Attributes:
      p: query p, (width,), or p_h stacked, (H, width); trained; starts at 0 (``Config.query_init_std``: at a
        random start).
      nu: linear head ν, (width,), or ν_h, (H, width); fixed unless ``Config.train_head``.
      W: key-query matrix W, (width, width), or W_h, (H, width, width); ``None`` for W = I (the paper's analysis
        setting).
    """

    p: jax.Array
    nu: jax.Array
    W: jax.Array | None = None

    @property
    def heads(self) -> int:
        """H: the length of the head axis, 1 without one."""
        return 1 if self.p.ndim == 1 else self.p.shape[-2]


jax.tree_util.register_dataclass(Params, data_fields=["p", "nu", "W"], meta_fields=[])


def head(config: Config, width: int) -> jax.Array:
    """ν = (μ₁ − μ₂)/‖μ₁ − μ₂‖ · 1/‖μ‖, (width,): νᵀμ₁ = 1/√2 and νᵀμ₂ = −1/√2 (the authors' scale)."""
    scale = 1.0 / (jnp.sqrt(2.0) * config.signal_norm)
    return jnp.zeros(width, jnp.float32).at[0].set(scale).at[1].set(-scale)


def random_weights(key: jax.Array, config: Config, width: int) -> jax.Array:
    """W₀ of ``config.weight_init``, (width, width): entries uniform in ±1/√d (PyTorch's kaiming_uniform(a=√5),
    as the authors), or N(0, 1/(3d)), the same variance.

    Row i comes from the stream ``fold_in(key, i)``, drawn as one vector of ``width`` numbers; entries outside
    the leading d × d block are 0. Threefry's counter-based bits (``jax_threefry_partitionable``, JAX's default
    since 0.5) make entry j of a row the same for every ``width``, so W does not depend on the padded width
    (tested), at one fold_in per row rather than per entry (2.2× faster at d = 2000).
    """
    bound = 1.0 / jnp.sqrt(jnp.asarray(config.d, jnp.float32))
    index = jnp.arange(width)
    inside = (index[:, None] < config.d) & (index[None, :] < config.d)
    if config.weight_init == "gaussian":
        normal = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (width,), jnp.float32))(index)
        return jnp.where(inside, (bound / jnp.sqrt(3.0)) * normal, 0.0)
    uniform = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i), (width,), jnp.float32))(index)
    return jnp.where(inside, bound * (2.0 * uniform - 1.0), 0.0)


#: Streams of the variants' per-head draws, folded into the run's weights key (far from W's row streams
#: 0 … width − 1).
_QUERY_STREAM, _HEAD_WEIGHTS_STREAM = 0x7FFFFFFE, 0x7FFFFFFD


def random_start(key: jax.Array, config: Config, width: int) -> jax.Array:
    """p⁽⁰⁾ of the variants: (H, width), each row N(0, s²) in the first d coordinates and 0 beyond (padding), s =
    ``config.query_init_std``; zeros when s = 0. Head h draws from ``fold_in(fold_in(key, stream), h)``."""
    if not config.query_init_std:
        return jnp.zeros((config.heads, width), jnp.float32)
    inside = jnp.arange(width) < config.d

    def one(h):
        draw = jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, _QUERY_STREAM), h), (width,))
        return jnp.where(inside, config.query_init_std * draw, 0.0)

    return jax.vmap(one)(jnp.arange(config.heads))


def init_params(key: jax.Array, config: Config, width: int | None = None) -> Params:
    """The parameters at step 0.

    The paper's model (no ``Config.variant``): p⁽⁰⁾ = 0, the fixed head ν and, unless ``config.attention ==
    "identity"``, a random W; no head axis. A variant: the head axis, p_h⁽⁰⁾ (``random_start``), ν_h = ν/H (so
    the H heads from p = 0 are the one-head model at step size lr/H: docs/model.md) and W_h, head 0 drawing
    W exactly as the one-head model does, head h > 0 from its own stream.
    """
    width = int(config.d) if width is None else width
    if not config.variant:
        W = None if config.attention == "identity" else random_weights(key, config, width)
        return Params(p=jnp.zeros(width, jnp.float32), nu=head(config, width), W=W)
    nu = jnp.broadcast_to(head(config, width) / config.heads, (config.heads, width))
    W = None
    if config.attention != "identity":
        keys = [key] + [
            jax.random.fold_in(jax.random.fold_in(key, _HEAD_WEIGHTS_STREAM), h) for h in range(1, config.heads)
        ]
        W = jnp.stack([random_weights(k, config, width) for k in keys])
    return Params(p=random_start(key, config, width), nu=nu, W=W)


def effective_query(params: Params) -> jax.Array:
    """Wᵀp, (width,), or W_hᵀp_h, (H, width): formed once so the scores cost one matrix-vector product, never
    X @ W."""
    if params.W is None:
        return params.p
    if params.p.ndim == 1:
        return jnp.matmul(params.W.T, params.p, precision=PRECISION)
    return jnp.einsum("hij,hi->hj", params.W, params.p, precision=PRECISION)


def scores_along(X: jax.Array, vectors: jax.Array) -> jax.Array:
    """x_tᵀv for every token and vector: (n, T) for v (width,), (H, n, T) for (H, width); X: (n, T, width)."""
    return jnp.einsum("ntd,...d->...nt", X, vectors, precision=PRECISION)


def token_scores(params: Params, X: jax.Array) -> jax.Array:
    """γ_t = νᵀx_t, (n, T), or γ_{h,t} = ν_hᵀx_t, (H, n, T), for X: (n, T, width)."""
    return scores_along(X, params.nu)


def attention_logits(params: Params, X: jax.Array) -> jax.Array:
    """a_t = x_tᵀ Wᵀ p, (n, T) (per head: (H, n, T)) for X: (n, T, width)."""
    return scores_along(X, effective_query(params))


class Normaliser(NamedTuple):
    """φ, the one piece of maths an attention variant changes: how logits become attention, and its derivative
    as every gradient needs it (docs/architecture.md, "A variant of the attention model").

    Attributes:
      attend: logits a (…, T) -> attention s = φ(a) (…, T).
      logit_weights: (c, s, γ, f) -> c·∂f/∂a_t (…, T) for f = Σ_t s_t γ_t, with c (…, 1) the loss's weight of
        each output (``loss.token_weights``), s and γ (…, T) and f (…): the only place φ′ enters.
    """

    attend: Callable[[jax.Array], jax.Array]
    logit_weights: Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


#: Every φ by its ``Config.normaliser`` name (``config.NORMALISERS`` lists the same names).
NORMALISERS: dict[str, Normaliser] = {
    # ∂f/∂a_t = s_t(γ_t − f): the softmax's rows sum to 1.
    "softmax": Normaliser(
        attend=lambda logits: jax.nn.softmax(logits, axis=-1),
        logit_weights=lambda c, s, gamma, f: c * s * (gamma - f[..., None]),
    ),
    # s_t = σ(a_t) token by token, unnormalised; ∂f/∂a_t = s_t(1 − s_t)γ_t.
    "sigmoid": Normaliser(
        attend=jax.nn.sigmoid,
        logit_weights=lambda c, s, gamma, f: c * s * ((1.0 - s) * gamma),
    ),
}


def normalise(logits: jax.Array, normaliser: str = "softmax") -> jax.Array:
    """φ(a), the attention of logits a (…, T), for the ``Config.normaliser`` name ``normaliser``
    (``NORMALISERS``): the softmax over the last axis (the paper), or σ(a_t) token by token."""
    return NORMALISERS[normaliser].attend(logits)


def head_sum(per_head: jax.Array) -> jax.Array:
    """Σ_h over the head axis of per-head values (H, n) → (n,); values without one pass unchanged."""
    return per_head if per_head.ndim == 1 else jnp.sum(per_head, axis=0)


def head_mean(values: jax.Array, heads: bool) -> jax.Array:
    """The mean over the leading head axis where ``heads`` (H, …) → (…); else ``values`` unchanged."""
    return jnp.mean(values, axis=0) if heads else values


def forward(params: Params, X: jax.Array, normaliser: str = "softmax") -> tuple[jax.Array, jax.Array]:
    """Model output and attention.

    Args:
      params: model parameters (one head, or H on a leading axis).
      X: tokens, (n, T, width).
      normaliser: φ (``normalise``).

    Returns:
      f: f(X) = Σ_h Σ_t s_{h,t} γ_{h,t}, (n,).
      attention: s = φ(X Wᵀ p), (n, T), or per head (H, n, T); with the softmax, rows sum to 1.
    """
    attention = normalise(attention_logits(params, X), normaliser)
    summed = (-1,) if attention.ndim == 2 else (0, 2)
    return jnp.sum(attention * token_scores(params, X), axis=summed), attention
