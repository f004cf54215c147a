"""The one-layer attention model f(X) = νᵀ Xᵀ φ(X Wᵀ p), φ the softmax (the paper) or a sigmoid
(docs/model.md §2)."""

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
    """Parameters of the attention model.

    Attributes:
      p: query p, (width,); trained, starts at 0.
      nu: linear head ν, (width,); fixed.
      W: key-query matrix W, (width, width), or ``None`` for W = I (the paper's analysis setting).
    """

    p: jax.Array
    nu: jax.Array
    W: jax.Array | None = None


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


def init_params(key: jax.Array, config: Config, width: int | None = None) -> Params:
    """p⁽⁰⁾ = 0, the fixed head ν and, unless ``config.attention == "identity"``, a random W."""
    width = int(config.d) if width is None else width
    W = None if config.attention == "identity" else random_weights(key, config, width)
    return Params(p=jnp.zeros(width, jnp.float32), nu=head(config, width), W=W)


def effective_query(params: Params) -> jax.Array:
    """Wᵀp, (width,): formed once so the scores cost one matrix-vector product, never X @ W."""
    if params.W is None:
        return params.p
    return jnp.matmul(params.W.T, params.p, precision=PRECISION)


def token_scores(params: Params, X: jax.Array) -> jax.Array:
    """γ_t = νᵀx_t, (n, T) for X: (n, T, width)."""
    return jnp.einsum("ntd,d->nt", X, params.nu, precision=PRECISION)


def attention_logits(params: Params, X: jax.Array) -> jax.Array:
    """a_t = x_tᵀ Wᵀ p, (n, T) for X: (n, T, width)."""
    return jnp.einsum("ntd,d->nt", X, effective_query(params), precision=PRECISION)


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


def forward(params: Params, X: jax.Array, normaliser: str = "softmax") -> tuple[jax.Array, jax.Array]:
    """Model output and attention.

    Args:
      params: model parameters.
      X: tokens, (n, T, width).
      normaliser: φ (``normalise``).

    Returns:
      f: f(X) = Σ_t s_t γ_t, (n,).
      attention: s = φ(X Wᵀ p), (n, T); with the softmax, rows sum to 1.
    """
    attention = normalise(attention_logits(params, X), normaliser)
    return jnp.sum(attention * token_scores(params, X), axis=-1), attention
