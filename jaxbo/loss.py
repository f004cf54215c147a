"""Logistic loss and its closed-form gradient (docs/model.md §3-4).

The trainable parameters are a dict: ``{"p": p}``, or ``{"p": p, "W": W}`` when W is trained. The head ν is
never trainable, so optimizers with weight decay cannot touch it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxbo.model import NORMALISERS, PRECISION, Params, attention_logits, forward, normalise, token_scores


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


def trainable(params: Params, train_weights: bool) -> dict[str, jax.Array]:
    """The parameters gradient descent updates: p, and W when ``train_weights``."""
    return {"p": params.p, "W": params.W} if train_weights else {"p": params.p}


def with_trainable(params: Params, values: dict[str, jax.Array]) -> Params:
    """``params`` with its trainable entries replaced by ``values``."""
    return dataclasses.replace(params, **values)


def empirical_loss(params: Params, tokens: jax.Array, labels: jax.Array, normaliser: str = "softmax") -> jax.Array:
    """L = (1/n) Σ_i ℓ(ỹ_i f(X_i)): scalar, for tokens (n, T, width) and labels ỹ (n,); φ = ``normaliser``."""
    f, _ = forward(params, tokens, normaliser)
    return jnp.mean(logistic_loss(labels * f))


def autodiff_grad(
    params: Params, tokens: jax.Array, labels: jax.Array, train_weights: bool, normaliser: str = "softmax"
):
    """∇L by ``jax.grad``, same structure as ``trainable(params, train_weights)``."""

    def loss_of(values):
        return empirical_loss(with_trainable(params, values), tokens, labels, normaliser)

    return jax.grad(loss_of)(trainable(params, train_weights))


def analytic_grad(
    params: Params,
    tokens: jax.Array,
    labels: jax.Array,
    train_weights: bool,
    gamma: jax.Array | None = None,
    normaliser: str = "softmax",
):
    """The closed-form gradient of docs/model.md §4.

    With s = φ(a) the attention (n, T), γ_t = νᵀx_t, f = Σ_t s_t γ_t and c_i = ℓ′(ỹ_i f_i) ỹ_i / n,
      g = Σ_i c_i Σ_t ∂f_i/∂a_{i,t} x_{i,t}            (the gradient with respect to Wᵀp), (width,)
        (∂f/∂a_t = s_t(γ_t − f) for the softmax, s_t(1 − s_t)γ_t for the sigmoid: ``model.NORMALISERS``)
      ∇_p L = W g                                       (= g when W = I),
      ∇_W L = p gᵀ.

    Args:
      params: model parameters.
      tokens: X, (n, T, width).
      labels: observed labels ỹ, (n,).
      train_weights: also return ∇_W L.
      gamma: γ = Xν, (n, T), if already known (it is constant during training, ν being fixed).
      normaliser: φ (``model.normalise``).

    Returns:
      ``{"p": (width,)}`` or ``{"p": (width,), "W": (width, width)}``.
    """
    gamma = token_scores(params, tokens) if gamma is None else gamma
    attention = normalise(attention_logits(params, tokens), normaliser)
    return grad_from_attention(params, tokens, labels, attention, gamma, train_weights, normaliser)


def token_weights(labels: jax.Array, attention: jax.Array, gamma: jax.Array, normaliser: str = "softmax") -> jax.Array:
    """w_{i,t} = ℓ′(ỹ_i f_i) ỹ_i ∂f_i/∂a_{i,t} / n, (n, T): ∇_{Wᵀp} L = Σ_{i,t} w_{i,t} x_{i,t} (for the softmax,
    ∂f_i/∂a_{i,t} = s_{i,t}(γ_{i,t} − f_i); φ′ enters through ``model.NORMALISERS``).

    Args:
      labels: ỹ, (n,); attention: s, (n, T); gamma: γ = Xν, (n, T); normaliser: φ.
    """
    f = jnp.sum(attention * gamma, axis=-1)
    coefficient = logistic_derivative(labels * f) * labels / labels.shape[0]  # (n,)
    return NORMALISERS[normaliser].logit_weights(coefficient[:, None], attention, gamma, f)


def grad_from_attention(
    params: Params,
    tokens: jax.Array,
    labels: jax.Array,
    attention: jax.Array,
    gamma: jax.Array,
    train_weights: bool,
    normaliser: str = "softmax",
):
    """``analytic_grad`` given the attention s (n, T) and token scores γ (n, T) of the current ``params``.

    Training computes s anyway for its metrics; this lets one forward pass serve both.
    """
    weights = token_weights(labels, attention, gamma, normaliser)
    g = jnp.einsum("nt,ntd->d", weights, tokens, precision=PRECISION)
    if params.W is None:
        return {"p": g}
    grad_p = jnp.matmul(params.W, g, precision=PRECISION)
    if not train_weights:
        return {"p": grad_p}
    return {"p": grad_p, "W": jnp.outer(params.p, g)}
