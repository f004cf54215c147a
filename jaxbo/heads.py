"""The paper's open questions as one model: several heads, a trained head ν, a random start.

    f(X) = Σ_h ν_hᵀ Xᵀ softmax(X W_hᵀ p_h),   h = 1 … H   (``Config.heads``)

with ν_h = ν/H at the start (ν the paper's head), trained with the queries when ``Config.train_head``, and
p_h⁽⁰⁾ ~ N(0, s²I_d) when ``Config.query_init_std`` = s > 0 (else 0). H = 1 with neither switch is the paper's
model; ``jaxbo.model`` runs it, and these functions reduce to it (tested).

**Why ν/H.** From p_h = 0 every head receives the same gradient, so the heads stay identical, and the H-head
model *is* a one-head model: with p_h = p and ν_h = ν/H, f = νᵀXᵀsoftmax(Xp), and ∇_{p_h}L = ∇_pL/H, so
gradient descent with step size lr on the H heads equals the one-head model at step size **lr/H** (with a
fixed head). With a trained head, ∇_{ν_h}L = ∇_νL (not divided), so Σ_h ν_h moves at H·lr: the one-head model
with p at lr/H and ν at H·lr. Heads can only differ from a random start.

Parameters are stacked over heads: p (H, width), ν (H, width), W (H, width, width) or None (W = I).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxbo.config import Config
from jaxbo.data import RELEVANT, WEAK_OPPOSITE
from jaxbo.loss import accuracy_and_loss, logistic_derivative, logistic_loss
from jaxbo.metrics import masked_mean, mean_gaps, noise_share, role_attention, saturation_by_group
from jaxbo.model import NORMALISERS, PRECISION, head, normalise, random_weights

#: Streams of the per-head draws, folded into the run's weights key (far from W's row streams 0 … width − 1).
_QUERY_STREAM, _HEAD_WEIGHTS_STREAM = 0x7FFFFFFE, 0x7FFFFFFD


@dataclasses.dataclass(frozen=True)
class HeadParams:
    """Parameters of the H-head attention model.

    Attributes:
      p: the queries p_h, (H, width).
      nu: the heads ν_h, (H, width).
      W: W_h, (H, width, width), or None for W = I.
    """

    p: jax.Array
    nu: jax.Array
    W: jax.Array | None = None

    @property
    def heads(self) -> int:
        return self.p.shape[-2]


jax.tree_util.register_dataclass(HeadParams, data_fields=["p", "nu", "W"], meta_fields=[])


def random_start(key: jax.Array, config: Config, width: int) -> jax.Array:
    """p⁽⁰⁾: (H, width), each row N(0, s²) in the first d coordinates and 0 beyond (padding), s =
    ``config.query_init_std``; zeros when s = 0. Head h draws from ``fold_in(fold_in(key, stream), h)``."""
    if not config.query_init_std:
        return jnp.zeros((config.heads, width), jnp.float32)
    inside = jnp.arange(width) < config.d

    def one(h):
        draw = jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, _QUERY_STREAM), h), (width,))
        return jnp.where(inside, config.query_init_std * draw, 0.0)

    return jax.vmap(one)(jnp.arange(config.heads))


def init_params(key: jax.Array, config: Config, width: int) -> HeadParams:
    """p_h⁽⁰⁾ (``random_start``), ν_h = ν/H and, unless W = I, W_h: head 0 draws W exactly as the one-head
    model does (``model.random_weights(key, …)``), head h > 0 from its own stream."""
    nu = jnp.broadcast_to(head(config, width) / config.heads, (config.heads, width))
    W = None
    if config.attention != "identity":
        keys = [key] + [
            jax.random.fold_in(jax.random.fold_in(key, _HEAD_WEIGHTS_STREAM), h) for h in range(1, config.heads)
        ]
        W = jnp.stack([random_weights(k, config, width) for k in keys])
    return HeadParams(p=random_start(key, config, width), nu=nu, W=W)


def queries(params: HeadParams) -> jax.Array:
    """q_h = W_hᵀp_h, (H, width)."""
    if params.W is None:
        return params.p
    return jnp.einsum("hij,hi->hj", params.W, params.p, precision=PRECISION)


def head_outputs(params: HeadParams, tokens: jax.Array, query: jax.Array | None = None, normaliser: str = "softmax"):
    """Per head: attention s_h = φ(logits) (H, n, T), its logits (H, n, T) and token scores γ_h = Xν_h (H, n, T)."""
    query = queries(params) if query is None else query
    logits = jnp.einsum("ntd,hd->hnt", tokens, query, precision=PRECISION)
    gamma = jnp.einsum("ntd,hd->hnt", tokens, params.nu, precision=PRECISION)
    return normalise(logits, normaliser), logits, gamma


def forward(params: HeadParams, tokens: jax.Array, normaliser: str = "softmax") -> jax.Array:
    """f(X) = Σ_h Σ_t s_{h,t} γ_{h,t}, (n,), for tokens (n, T, width)."""
    attention, _, gamma = head_outputs(params, tokens, normaliser=normaliser)
    return jnp.sum(attention * gamma, axis=(0, 2))


def empirical_loss(params: HeadParams, tokens: jax.Array, labels: jax.Array, normaliser: str = "softmax") -> jax.Array:
    """L = (1/n) Σ_i ℓ(ỹ_i f(X_i)), scalar."""
    return jnp.mean(logistic_loss(labels * forward(params, tokens, normaliser)))


def weights_from(labels: jax.Array, attention: jax.Array, gamma: jax.Array, normaliser: str = "softmax"):
    """The per-token weights of the gradients, from attention s and scores γ, each (H, n, T):

    w_{h,i,t} = c_i ∂f_{h,i}/∂a_{h,i,t} (∇ of L in head h's logits; c_i s_{h,i,t}(γ_{h,i,t} − f_{h,i}) for the
    softmax, φ′ from ``model.NORMALISERS``) and v_{h,i,t} = c_i s_{h,i,t} (∇ of L in head h's scores), with
    c_i = ℓ′(ỹ_i f_i) ỹ_i / n and f = Σ_h f_h.
    """
    per_head = jnp.sum(attention * gamma, axis=-1)  # f_h, (H, n)
    coefficient = logistic_derivative(labels * jnp.sum(per_head, axis=0)) * labels / labels.shape[0]
    weight = coefficient[None, :, None]
    return NORMALISERS[normaliser].logit_weights(weight, attention, gamma, per_head), weight * attention


def grad_from_outputs(
    params: HeadParams,
    tokens,
    labels,
    attention,
    gamma,
    train_weights: bool,
    train_head: bool,
    normaliser: str = "softmax",
):
    """∇L in closed form from the heads' attention s and scores γ (H, n, T) at ``params``:
    ∇_{p_h} = W_h u_h (u_h = Σ_{i,t} w_{h,i,t} x_{i,t}), ∇_{W_h} = p_h u_hᵀ, ∇_{ν_h} = Σ_{i,t} v_{h,i,t} x_{i,t}
    (``weights_from``); keys as ``trainable``."""
    logit_weights, score_weights = weights_from(labels, attention, gamma, normaliser)
    u = jnp.einsum("hnt,ntd->hd", logit_weights, tokens, precision=PRECISION)
    grads = {"p": u if params.W is None else jnp.einsum("hij,hj->hi", params.W, u, precision=PRECISION)}
    if train_weights:
        grads["W"] = jnp.einsum("hi,hj->hij", params.p, u)
    if train_head:
        grads["nu"] = jnp.einsum("hnt,ntd->hd", score_weights, tokens, precision=PRECISION)
    return grads


def analytic_grad(
    params: HeadParams, tokens, labels, train_weights: bool, train_head: bool, normaliser: str = "softmax"
) -> dict:
    """``grad_from_outputs`` at ``params`` (tokens (n, T, width), labels ỹ (n,))."""
    attention, _, gamma = head_outputs(params, tokens, normaliser=normaliser)
    return grad_from_outputs(params, tokens, labels, attention, gamma, train_weights, train_head, normaliser)


def trainable(params: HeadParams, config: Config) -> dict:
    """What descent updates: p, W when ``attention="trained"``, ν when ``train_head``."""
    values = {"p": params.p}
    if config.attention == "trained":
        values["W"] = params.W
    if config.train_head:
        values["nu"] = params.nu
    return values


def autodiff_grad(params: HeadParams, tokens, labels, config: Config) -> dict:
    """∇L by ``jax.grad``, keys as ``trainable``."""

    def loss_of(values):
        return empirical_loss(dataclasses.replace(params, **values), tokens, labels, config.normaliser)

    return jax.grad(loss_of)(trainable(params, config))


def train_metrics(
    params: HeadParams, train, saturation_totals, query=None, normaliser: str = "softmax"
) -> dict[str, jax.Array]:
    """The training part of ``Metrics`` for H heads; each definition reduces to the one-head model's at H = 1.

    Attention per role, gaps and the largest attention are means over heads; ``p_norm`` is the root mean
    square of ‖p_h‖ over heads, cos(p, μ_c) the mean over heads of cos(p_h, μ_c). ``head_attention``
    (H, 2, 4): per head, the attention per role on clean and on noisy samples (the specialisation statistic).
    ``fit_by_attention`` and ``fit_by_head``: the fraction of noisy samples that are fitted with, on head
    average, the weakly-relevant opposite token (the attention's route) or the relevant token (the head's
    route: its noise terms flip the sign) as the token with the most attention. ``head_noise_share``: the
    median over fitted noisy samples of the share of ỹf that the heads' parts outside span(μ₁, μ₂) (every
    coordinate but the first two) supply.
    """
    attention, logits, gamma = head_outputs(params, train.tokens, query, normaliser)
    f = jnp.sum(attention * gamma, axis=(0, 2))
    accuracy, loss = accuracy_and_loss(f, train.labels)
    fitted = train.labels * f > 0
    roles = jax.vmap(role_attention, in_axes=(0, None))(attention, train.roles)  # (H, n, 4)
    mean_roles = jnp.mean(roles, axis=0)
    clean, noisy = ~train.noisy_mask, train.noisy_mask
    per_head = jnp.stack([jax.vmap(masked_mean, in_axes=(0, None))(roles, mask) for mask in (clean, noisy)], 1)
    leads = jax.vmap(mean_gaps, in_axes=(0, None))(logits, train.roles)
    top = train.roles[jnp.argmax(jnp.mean(attention, axis=0), axis=-1)]  # role of the most-attended token, (n,)
    norms = jnp.linalg.norm(params.p, axis=-1)
    safe = jnp.where(norms > 0, norms, 1.0)
    sums = saturation_by_group(saturation_totals, train.clean_labels, train.noisy_mask)
    outside = jnp.einsum("ntd,hd->hnt", train.tokens[..., 2:], params.nu[:, 2:], precision=PRECISION)
    margin_outside = train.labels * jnp.sum(attention * outside, axis=(0, 2))
    return dict(
        train_accuracy=accuracy,
        train_loss=loss,
        clean_accuracy=masked_mean(fitted, clean),
        noisy_fit=masked_mean(fitted, noisy),
        attention_clean=masked_mean(mean_roles, clean),
        attention_noisy=masked_mean(mean_roles, noisy),
        p_norm=jnp.sqrt(jnp.mean(norms * norms)),
        cos_mu1=jnp.mean(params.p[:, 0] / safe),
        cos_mu2=jnp.mean(params.p[:, 1] / safe),
        saturation_clean=sums[:, 0],
        saturation_noisy=sums[:, 1],
        gap_clean=masked_mean(jnp.mean(leads[0], axis=0), clean),
        gap_noisy=masked_mean(jnp.mean(leads[1], axis=0), noisy),
        max_attention=jnp.mean(jnp.max(attention, axis=-1)),
        head_attention=per_head,
        fit_by_attention=masked_mean(fitted & (top == WEAK_OPPOSITE), noisy),
        fit_by_head=masked_mean(fitted & (top == RELEVANT), noisy),
        head_noise_share=noise_share(margin_outside, train.labels * f, fitted & noisy),
    )


def test_metrics(params: HeadParams, test, query=None, normaliser: str = "softmax") -> dict[str, jax.Array]:
    """Test accuracy, loss and the head-mean attention per role."""
    attention, _, gamma = head_outputs(params, test.tokens, query, normaliser)
    accuracy, loss = accuracy_and_loss(jnp.sum(attention * gamma, axis=(0, 2)), test.labels)
    roles = jax.vmap(role_attention, in_axes=(0, None))(attention, test.roles)
    return dict(test_accuracy=accuracy, test_loss=loss, attention_test=jnp.mean(roles, axis=(0, 1)))
