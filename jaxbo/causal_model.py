"""The causal attention model: token selection after every prefix, with next-label targets (docs/model.md §8).

The paper names three limits of its analysis: a fixed linear head, one layer, and no autoregressive setting.
This is the third as a model. One shared query p (W = I), the paper's fixed head ν and a causal mask: after each
prefix τ = τ₀ … T (1-indexed; τ₀ = |R| + |W⁺| + |W⁻|, the first prefix holding every role) the model reads

    f_τ(X) = νᵀ Σ_{t≤τ} s_{τ,t} x_t,   s_{τ,·} = φ(x_tᵀp over t ≤ τ)   (φ the softmax, or a sigmoid),

and is trained from p = 0 by full-batch gradient descent on the mean over sequences and positions of the
logistic loss of the target ỹ_{i,τ}. Targets are the sequence's label; label noise flips a whole sequence
(``Config.target_noise = "sequence"``, the paper's noise, a control) or each target on its own (``"token"``,
where one token's noise is shared by several targets).

Attainability: as ‖p‖ → ∞ attention selects the prefix's largest logit, a running maximum, so the selected
token changes only where a new token is a record. A sequence's targets that some selection fits together are
counted exactly by a dynamic programme over the sign of the selected token's score (``attainable``); soft
attention can fit no more (the sign of Σ_{t≤τ} w_t γ_t, w_t > 0, changes only at a τ whose γ_τ has the new
sign, the same condition). Counts are per sequence with free logits: exact when the n·T training tokens are
linearly independent (d ≥ n·T), an upper bound below.

Shapes: P = T − τ₀ + 1 prediction positions; tokens (n, T, width); targets (n, P); attention (n, P, T).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxbo.config import Config
from jaxbo.data import Dataset
from jaxbo.limit import others
from jaxbo.loss import logistic_derivative, logistic_loss
from jaxbo.model import NORMALISERS, PRECISION, Params, normalise, scores_along

#: The stream, in a run's training key, of token-level target flips (far from the data's streams 0 … 5).
TARGET_STREAM = 0x7FFFFFF9


def prediction_start(layout: tuple[int, int, int]) -> int:
    """τ₀ = |R| + |W⁺| + |W⁻|: the first prefix (1-indexed) that holds a token of every role."""
    return int(sum(layout))


def positions(config: Config) -> int:
    """P = T − τ₀ + 1, the number of predictions per sequence."""
    return config.T - prediction_start(config.layout) + 1


def prefix_mask(config: Config) -> np.ndarray:
    """(P, T) bool: row k holds the tokens of prefix τ = τ₀ + k, t < τ (0-indexed t)."""
    return prefixes(config.T, prediction_start(config.layout))


def prefixes(T: int, start: int) -> np.ndarray:
    """``prefix_mask`` for T tokens and τ₀ = ``start``: (T − start + 1, T) bool."""
    return np.arange(T)[None, :] < (start + np.arange(T - start + 1))[:, None]


def causal_attention(logits: jax.Array, mask: np.ndarray, normaliser: str = "softmax") -> jax.Array:
    """s_{τ,t} = φ(a over t ≤ τ), (…, P, T) for logits a (…, T) and ``prefix_mask`` (P, T); 0 beyond τ.

    Masked logits are −∞, which both φ map to 0 (and whose derivative is 0)."""
    masked = jnp.where(mask, logits[..., None, :], -jnp.inf)
    return normalise(masked, normaliser)


def outputs(attention: jax.Array, gamma: jax.Array) -> jax.Array:
    """f_τ = Σ_t s_{τ,t} γ_t, (n, P), for attention (n, P, T) and scores γ = Xν (n, T)."""
    return jnp.sum(attention * gamma[..., None, :], axis=-1)


def forward(params: Params, tokens: jax.Array, mask: np.ndarray, normaliser: str = "softmax"):
    """(f (n, P), attention (n, P, T)) of the causal model at ``params`` (one head, W = I) for tokens (n, T,
    width)."""
    attention = causal_attention(scores_along(tokens, params.p), mask, normaliser)
    return outputs(attention, scores_along(tokens, params.nu)), attention


def empirical_loss(params: Params, tokens: jax.Array, targets: jax.Array, mask: np.ndarray, normaliser="softmax"):
    """L = (1/(nP)) Σ_{i,τ} ℓ(ỹ_{i,τ} f_τ(X_i)): scalar, for targets ỹ (n, P)."""
    f, _ = forward(params, tokens, mask, normaliser)
    return jnp.mean(logistic_loss(targets * f))


def autodiff_grad(params: Params, tokens, targets, mask, normaliser="softmax") -> dict[str, jax.Array]:
    """∇_p L by ``jax.grad``, ``{"p": (width,)}``."""

    def loss_of(p):
        return empirical_loss(dataclasses.replace(params, p=p), tokens, targets, mask, normaliser)

    return {"p": jax.grad(loss_of)(params.p)}


def token_weights(targets: jax.Array, attention: jax.Array, gamma: jax.Array, normaliser: str = "softmax"):
    """w_{i,t} = Σ_{τ≥t} c_{i,τ} ∂f_τ/∂a_{i,t}, (n, T), with c_{i,τ} = ℓ′(ỹ f_τ) ỹ / (nP): ∇_p L = Σ_{i,t} w_{i,t}
    x_{i,t} (for the softmax ∂f_τ/∂a_t = s_{τ,t}(γ_t − f_τ); φ′ enters through ``model.NORMALISERS``, as in the
    paper's model, prefix by prefix).

    Args:
      targets: ỹ, (n, P); attention: s, (n, P, T); gamma: γ = Xν, (n, T); normaliser: φ.
    """
    f = outputs(attention, gamma)
    weight = (logistic_derivative(targets * f) * targets / targets.size)[..., None]  # (n, P, 1)
    per_prefix = NORMALISERS[normaliser].logit_weights(weight, attention, gamma[..., None, :], f)
    return jnp.sum(per_prefix, axis=-2)


def analytic_grad(targets, attention, gamma, tokens, normaliser: str = "softmax") -> dict[str, jax.Array]:
    """∇_p L = Σ_{i,t} w_{i,t} x_{i,t} (``token_weights``), ``{"p": (width,)}``, given the attention of the
    current p."""
    weights = token_weights(targets, attention, gamma, normaliser)
    return {"p": jnp.einsum("nt,ntd->d", weights, tokens, precision=PRECISION)}


# --- targets --------------------------------------------------------------------------------------------------------


def token_flips(key: jax.Array, config: Config, clean_labels: jax.Array) -> jax.Array:
    """Which next-label targets are flipped under token-level noise, (n, P) bool.

    ``Config.flips = "balanced"``: ⌈η·n·P⌉ flips requested and ⌊⌈η·n·P⌉/2⌋ taken from each class's targets,
    chosen uniformly at random (the sequence-level rule, counted in targets); ``"random"``: Bernoulli(η) each.
    """
    n, count = clean_labels.shape[0], positions(config)
    if config.flips == "random":
        return jax.random.bernoulli(key, config.noise_rate, (n, count))
    requested = jnp.ceil(jnp.round(config.noise_rate * n * count, 4))
    per_class = jnp.floor(requested / 2)
    draw = jax.random.uniform(key, (n, count))
    positive = jnp.broadcast_to((clean_labels > 0)[:, None], (n, count))

    def rank_within(member):  # a uniformly random order of the class's targets: the others sort after them
        return jnp.argsort(jnp.argsort(jnp.where(member, draw, 2.0).reshape(-1))).reshape(n, count)

    return jnp.where(positive, rank_within(positive), rank_within(~positive)) < per_class


def with_targets(key: jax.Array, config: Config, dataset: Dataset) -> Dataset:
    """``dataset`` with next-label targets: ``labels`` ỹ (n, P) and ``noisy_mask`` (n, P) where ỹ_{i,τ} = −y_i.

    Sequence-level noise repeats each sequence's (possibly flipped) label; token-level noise flips targets of
    the clean labels (``token_flips``, stream ``TARGET_STREAM`` of ``key``). For training sets: a test set keeps
    its (n,) clean labels, which every position shares."""
    count, n = positions(config), dataset.labels.shape[0]
    if config.target_noise == "sequence":
        labels = jnp.broadcast_to(dataset.labels[:, None], (n, count))
        noisy = jnp.broadcast_to(dataset.noisy_mask[:, None], (n, count))
    else:
        noisy = token_flips(jax.random.fold_in(key, TARGET_STREAM), config, dataset.clean_labels)
        labels = jnp.where(noisy, -dataset.clean_labels[:, None], dataset.clean_labels[:, None])
    return dataclasses.replace(dataset, labels=labels, noisy_mask=noisy)


# --- attainability --------------------------------------------------------------------------------------------------


def attainable(targets: jax.Array, gamma: jax.Array, start: int) -> jax.Array:
    """M_i: the most targets of sequence i that one selection fits together, (n,) int32.

    Dynamic programme over k = 0 … P − 1 on the sign of the selected token's score (−, 0, +): at τ₀ any token
    t < τ₀ may be the prefix's maximum; each later token either is not a record (the state stays) or is one (the
    state becomes the sign of its γ); a target counts where the state's sign equals it.

    Args:
      targets: ỹ, (n, P) in {±1}; gamma: γ = Xν, (n, T); start: τ₀.
    """
    signs = jnp.sign(gamma).astype(jnp.int32) + 1  # state index 0, 1, 2 for −, 0, +
    states = jnp.arange(3)
    gain = (states[None, None, :] - 1) == targets[..., None].astype(jnp.int32)  # (n, P, 3)
    reachable = jnp.any(signs[:, :start, None] == states, axis=1)  # (n, 3)
    value = jnp.where(reachable, gain[:, 0].astype(jnp.int32), -(10**6))
    for k in range(1, targets.shape[-1]):
        record = states == signs[:, start + k - 1, None]  # (n, 3): the state a record of token τ₀+k−1 enters
        best = jnp.max(value, axis=-1, keepdims=True)
        value = jnp.where(record, jnp.maximum(value, best), value) + gain[:, k]
    return jnp.max(value, axis=-1).astype(jnp.int32)


def attainable_each(targets: jax.Array, gamma: jax.Array, start: int) -> jax.Array:
    """Whether each target alone can be fitted, (n, P) bool: some token of its prefix scores with its sign."""
    mask = prefixes(gamma.shape[-1], start)  # (P, T)
    agrees = targets[..., None] * gamma[..., None, :] > 0  # (n, P, T)
    return jnp.any(agrees & mask, axis=-1)


# --- the t → ∞ limit's constraints ------------------------------------------------------------------------------


def running_selection(logits: jax.Array, mask: np.ndarray) -> jax.Array:
    """α̂_{i,τ}: the token of largest logit in each prefix (hard selection), (n, P) int32, for logits (n, T)."""
    return jnp.argmax(jnp.where(mask, logits[..., None, :], -jnp.inf), axis=-1).astype(jnp.int32)


def limit_constraints(selection: jax.Array, start: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The causal attention SVM's constraints, one per token that is not the last prefix's selection:
    (winners, losers, binding positions), each (n, T − 1).

    Every prefix τ asks its selection to beat every other token of the prefix by a margin of 1. That set is the
    same as one constraint per loser t: the first selection after t's arrival that is not t itself must beat it
    (a later selection beats that one in turn, each change of selection being a constraint of its own). With
    one selection for every τ it is the paper model's constraint set, (α̂_i, t) for t ≠ α̂_i.

    Args:
      selection: α̂ (n, P) (``running_selection``); start: τ₀.
    """
    count = selection.shape[-1]
    T = start + count - 1
    losers = others(selection[:, -1], T)  # (n, T − 1), the tokens t ≠ α̂_{i,T}
    arrival = jnp.maximum(losers + 1 - start, 0)  # the first position whose prefix holds t
    k = jnp.arange(count)
    later = (k[None, None, :] >= arrival[..., None]) & (selection[:, None, :] != losers[..., None])  # (n, T−1, P)
    binding = jnp.argmax(later, axis=-1)  # exists: the last selection is not t
    winners = jnp.take_along_axis(selection, binding, axis=-1)
    return winners, losers, binding
