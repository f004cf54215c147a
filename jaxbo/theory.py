"""Quantities the paper reasons with (spec §5), computed from attention scores and data.

Every function is pure and shape-polymorphic over leading batch axes unless its docstring says otherwise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxbo.data import RELEVANT, ROLE_NAMES


def role_attention(attention: jax.Array, roles: jax.Array) -> jax.Array:
    """Attention mass on each token role, (n, 4) for attention s (n, T) and roles (T,).

    Columns follow ``data.ROLE_NAMES``: relevant, weakly-relevant aligned, weakly-relevant opposite,
    irrelevant. Rows sum to 1.
    """
    one_hot = (roles[:, None] == jnp.arange(len(ROLE_NAMES))).astype(attention.dtype)  # (T, 4)
    return attention @ one_hot


def relevant_attention(attention: jax.Array, roles: jax.Array) -> jax.Array:
    """Σ_{t∈R} s_t: attention on the relevant tokens, (n,) for attention (n, T) and roles (T,)."""
    return jnp.sum(jnp.where(roles == RELEVANT, attention, 0.0), axis=-1)


def saturation(attention: jax.Array, roles: jax.Array) -> jax.Array:
    """𝔖⁽ⁱ⁾ = (Σ_{t∈R} s_t)(1 − Σ_{t∈R} s_t), (n,): the softmax's vanishing update factor on relevant tokens."""
    relevant = relevant_attention(attention, roles)
    return relevant * (1.0 - relevant)


def saturation_by_group(values: jax.Array, clean_labels: jax.Array, noisy_mask: jax.Array) -> jax.Array:
    """Sums of a per-sample quantity by (class, group), (2, 2).

    Rows: clean class y = +1, y = −1; columns: clean samples (𝒞), noisy samples (𝒩).

    Args:
      values: per-sample values, e.g. 𝔖⁽ⁱ⁾, (n,).
      clean_labels: y, (n,).
      noisy_mask: (n,) bool.
    """
    in_class = jnp.stack([clean_labels > 0, clean_labels < 0])  # (2, n)
    in_group = jnp.stack([~noisy_mask, noisy_mask])  # (2, n)
    members = in_class[:, None, :] & in_group[None, :, :]  # (2, 2, n)
    return jnp.sum(jnp.where(members, values, 0.0), axis=-1)


BENIGN, HARMFUL, NOT_OVERFITTING = 0, 1, 2
REGIME_NAMES = ("benign", "harmful", "not overfitting")


def regime(train_accuracy: jax.Array, test_accuracy: jax.Array, tolerance: float = 0.005) -> jax.Array:
    """The paper's three regimes as int codes (``REGIME_NAMES`` order), elementwise.

    benign: every training label fitted (noisy ones included) and test accuracy >= 1 − ``tolerance``;
    harmful: every training label fitted and test accuracy < 1 − ``tolerance``;
    not overfitting: some training label (in practice a noisy one) not fitted.
    """
    fitted = train_accuracy >= 1.0
    return jnp.where(fitted, jnp.where(test_accuracy >= 1.0 - tolerance, BENIGN, HARMFUL), NOT_OVERFITTING)
