"""Logistic loss and its closed-form gradient (docs/model.md §3-4).

The trainable parameters are a dict: ``{"p": p}``, with ``"W"`` when W is trained and ``"nu"`` when the head is
(``Config.train_head``); a fixed head is never in it, so optimizers with weight decay cannot touch it. Every
function takes one head or H on a leading axis (``jaxbo.model``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxbo.model import NORMALISERS, PRECISION, Params, attention_logits, forward, head_sum, normalise, token_scores


def logistic_loss(margins: jax.Array) -> jax.Array:
    """ℓ(z) = log(1 + e^{−z}) as softplus(−z): finite at any margin (the naive form overflows for z ≪ 0)."""
    return jax.nn.softplus(-margins)


def logistic_derivative(margins: jax.Array) -> jax.Array:
    """ℓ′(z) = −1/(1 + e^{z}) = −sigmoid(−z), stable at any margin."""
    return -jax.nn.sigmoid(-margins)


def accuracy_and_loss(f: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(accuracy, mean logistic loss) of outputs f (n,) against labels (n,); f = 0 counts as wrong."""
    margins = labels * f
    return jnp.mean(margins > 0), jnp.mean(logistic_loss(margins))


def trainable(params: Params, train_weights: bool, train_head: bool = False) -> dict[str, jax.Array]:
    """The parameters gradient descent updates: p, W when ``train_weights``, ν when ``train_head``."""
    values = {"p": params.p}
    if train_weights:
        values["W"] = params.W
    if train_head:
        values["nu"] = params.nu
    return values


def with_trainable(params: Params, values: dict[str, jax.Array]) -> Params:
    """``params`` with its trainable entries replaced by ``values``."""
    return dataclasses.replace(params, **values)


def empirical_loss(params: Params, tokens: jax.Array, labels: jax.Array, normaliser: str = "softmax") -> jax.Array:
    """L = (1/n) Σ_i ℓ(ỹ_i f(X_i)): scalar, for tokens (n, T, width) and labels ỹ (n,); φ = ``normaliser``."""
    f, _ = forward(params, tokens, normaliser)
    return jnp.mean(logistic_loss(labels * f))


def autodiff_grad(
    params: Params,
    tokens: jax.Array,
    labels: jax.Array,
    train_weights: bool,
    normaliser: str = "softmax",
    train_head: bool = False,
):
    """∇L by ``jax.grad``, same structure as ``trainable(params, train_weights, train_head)``."""

    def loss_of(values):
        return empirical_loss(with_trainable(params, values), tokens, labels, normaliser)

    return jax.grad(loss_of)(trainable(params, train_weights, train_head))


def analytic_grad(
    params: Params,
    tokens: jax.Array,
    labels: jax.Array,
    train_weights: bool,
    gamma: jax.Array | None = None,
    normaliser: str = "softmax",
    train_head: bool = False,
):
    """The closed-form gradient of docs/model.md §4.

    With s = φ(a) the attention (n, T), γ_t = νᵀx_t, f = Σ_t s_t γ_t and c_i = ℓ′(ỹ_i f_i) ỹ_i / n,
      g = Σ_i c_i Σ_t ∂f_i/∂a_{i,t} x_{i,t}            (the gradient with respect to Wᵀp), (width,)
        (∂f/∂a_t = s_t(γ_t − f) for the softmax, s_t(1 − s_t)γ_t for the sigmoid: ``model.NORMALISERS``)
      ∇_p L = W g                                       (= g when W = I),
      ∇_W L = p gᵀ,
      ∇_ν L = Σ_i c_i Σ_t s_{i,t} x_{i,t}.
    With heads on a leading axis each head has its own g_h, and c_i holds f = Σ_h f_h.

    Args:
      params: model parameters (one head, or H on a leading axis).
      tokens: X, (n, T, width).
      labels: observed labels ỹ, (n,).
      train_weights: also return ∇_W L.
      gamma: γ = Xν, (n, T) (per head (H, n, T)), if already known (it is constant while ν is fixed).
      normaliser: φ (``model.normalise``).
      train_head: also return ∇_ν L.

    Returns:
      ``{"p": (width,)}``, with ``"W": (width, width)`` and ``"nu": (width,)`` as asked (per head: a leading
      (H,) axis on each).
    """
    gamma = token_scores(params, tokens) if gamma is None else gamma
    attention = normalise(attention_logits(params, tokens), normaliser)
    return grad_from_attention(params, tokens, labels, attention, gamma, train_weights, normaliser, train_head)


def output_weights(labels: jax.Array, attention: jax.Array, gamma: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The loss's weight of each output, c_i = ℓ′(ỹ_i f_i) ỹ_i / n as (n, 1), and the per-head outputs
    f_h = Σ_t s_{h,t} γ_{h,t}, (n,) or (H, n), for attention s and scores γ, (n, T) or (H, n, T)."""
    per_head = jnp.sum(attention * gamma, axis=-1)
    coefficient = logistic_derivative(labels * head_sum(per_head)) * labels / labels.shape[0]  # (n,)
    return coefficient[:, None], per_head


def token_weights(labels: jax.Array, attention: jax.Array, gamma: jax.Array, normaliser: str = "softmax") -> jax.Array:
    """w_{i,t} = ℓ′(ỹ_i f_i) ỹ_i ∂f_i/∂a_{i,t} / n, (n, T) (per head (H, n, T)): ∇_{Wᵀp} L = Σ_{i,t} w_{i,t} x_{i,t}
    (for the softmax, ∂f_i/∂a_{i,t} = s_{i,t}(γ_{i,t} − f_i); φ′ enters through ``model.NORMALISERS``).

    Args:
      labels: ỹ, (n,); attention: s, (n, T) or (H, n, T); gamma: γ = Xν, the same shape; normaliser: φ.
    """
    weight, per_head = output_weights(labels, attention, gamma)
    return NORMALISERS[normaliser].logit_weights(weight, attention, gamma, per_head)


def score_weights(labels: jax.Array, attention: jax.Array, gamma: jax.Array) -> jax.Array:
    """v_{i,t} = ℓ′(ỹ_i f_i) ỹ_i s_{i,t} / n, the shape of ``attention``: ∇_ν L = Σ_{i,t} v_{i,t} x_{i,t}."""
    weight, _ = output_weights(labels, attention, gamma)
    return weight * attention


def grad_from_attention(
    params: Params,
    tokens: jax.Array,
    labels: jax.Array,
    attention: jax.Array,
    gamma: jax.Array,
    train_weights: bool,
    normaliser: str = "softmax",
    train_head: bool = False,
):
    """``analytic_grad`` given the attention s and token scores γ ((n, T), per head (H, n, T)) of the current
    ``params``.

    Training computes s anyway for its metrics; this lets one forward pass serve both.
    """
    weights = token_weights(labels, attention, gamma, normaliser)
    g = jnp.einsum("...nt,ntd->...d", weights, tokens, precision=PRECISION)
    grads = {"p": g}
    if params.W is not None:
        if g.ndim == 1:
            grads["p"] = jnp.matmul(params.W, g, precision=PRECISION)
        else:
            grads["p"] = jnp.einsum("hij,hj->hi", params.W, g, precision=PRECISION)
        if train_weights:
            grads["W"] = params.p[..., :, None] * g[..., None, :]  # p gᵀ
    if train_head:
        head_weights = score_weights(labels, attention, gamma)
        grads["nu"] = jnp.einsum("...nt,ntd->...d", head_weights, tokens, precision=PRECISION)
    return grads
