"""Logistic loss and its closed-form gradient (docs/model.md §3-4).

The trainable parameters are a dict: ``{"p": p}``, or ``{"p": p, "W": W}`` when W is trained. The head ν is
never trainable, so optimizers with weight decay cannot touch it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxbo.model import PRECISION, Params, attention_logits, forward, token_scores


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


def empirical_loss(params: Params, tokens: jax.Array, labels: jax.Array) -> jax.Array:
    """L = (1/n) Σ_i ℓ(ỹ_i f(X_i)): scalar, for tokens (n, T, width) and labels ỹ (n,)."""
    f, _ = forward(params, tokens)
    return jnp.mean(logistic_loss(labels * f))


def autodiff_grad(params: Params, tokens: jax.Array, labels: jax.Array, train_weights: bool):
    """∇L by ``jax.grad``, same structure as ``trainable(params, train_weights)``."""

    def loss_of(values):
        return empirical_loss(with_trainable(params, values), tokens, labels)

    return jax.grad(loss_of)(trainable(params, train_weights))


def analytic_grad(
    params: Params,
    tokens: jax.Array,
    labels: jax.Array,
    train_weights: bool,
    gamma: jax.Array | None = None,
):
    """The closed-form gradient of docs/model.md §4.

    With s the attention (n, T), γ_t = νᵀx_t, f = Σ_t s_t γ_t and c_i = ℓ′(ỹ_i f_i) ỹ_i / n,
      g = Σ_i c_i Σ_t s_{i,t}(γ_{i,t} − f_i) x_{i,t}    (the gradient with respect to Wᵀp), (width,)
      ∇_p L = W g                                       (= g when W = I),
      ∇_W L = p gᵀ.

    Args:
      params: model parameters.
      tokens: X, (n, T, width).
      labels: observed labels ỹ, (n,).
      train_weights: also return ∇_W L.
      gamma: γ = Xν, (n, T), if already known (it is constant during training, ν being fixed).

    Returns:
      ``{"p": (width,)}`` or ``{"p": (width,), "W": (width, width)}``.
    """
    gamma = token_scores(params, tokens) if gamma is None else gamma
    attention = jax.nn.softmax(attention_logits(params, tokens), axis=-1)
    return grad_from_attention(params, tokens, labels, attention, gamma, train_weights)


def token_weights(labels: jax.Array, attention: jax.Array, gamma: jax.Array) -> jax.Array:
    """w_{i,t} = ℓ′(ỹ_i f_i) ỹ_i s_{i,t}(γ_{i,t} − f_i) / n, (n, T): ∇_{Wᵀp} L = Σ_{i,t} w_{i,t} x_{i,t}.

    Args:
      labels: ỹ, (n,); attention: s, (n, T); gamma: γ = Xν, (n, T).
    """
    f = jnp.sum(attention * gamma, axis=-1)
    coefficient = logistic_derivative(labels * f) * labels / labels.shape[0]  # (n,)
    return coefficient[:, None] * attention * (gamma - f[:, None])


def grad_from_attention(
    params: Params,
    tokens: jax.Array,
    labels: jax.Array,
    attention: jax.Array,
    gamma: jax.Array,
    train_weights: bool,
):
    """``analytic_grad`` given the attention s (n, T) and token scores γ (n, T) of the current ``params``.

    Training computes s anyway for its metrics; this lets one forward pass serve both.
    """
    weights = token_weights(labels, attention, gamma)
    g = jnp.einsum("nt,ntd->d", weights, tokens, precision=PRECISION)
    if params.W is None:
        return {"p": g}
    grad_p = jnp.matmul(params.W, g, precision=PRECISION)
    if not train_weights:
        return {"p": grad_p}
    return {"p": grad_p, "W": jnp.outer(params.p, g)}
