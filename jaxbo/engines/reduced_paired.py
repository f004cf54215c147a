"""The reduced engine's shared step for paired runs: the M runs of one key at M values of ‖μ‖, trained together.

A paired sweep (``sweep(..., paired=True)``) gives the runs of one seed that differ only in ‖μ‖ one key, so they
share every draw: token noise, label flips, the test draw. In the reduced coordinates their tokens then differ
only by ‖μ‖ times the signal coefficients, and their Gram matrices by a rank-4 term, so one (N × N)·(N × M)
product a step serves all M runs where M separate runs take M (N × N)·N products, each reading its own Gram
matrix (docs/exact_reduction.md, "Paired runs"). Each run is ``run(key, config.replace(signal_norm=‖μ‖))`` in
every draw; the numbers agree to float32 rounding.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxbo.config import Config, with_traced
from jaxbo.data import (
    Dataset,
    balanced_labels,
    projected_basis,
    projected_test_noise,
    signal_coefficients,
    token_roles,
)
from jaxbo.engines.base import RunKeys, Trainer
from jaxbo.loss import logistic_derivative, logistic_loss
from jaxbo.metrics import Metrics, assemble, attention_test_metrics, role_attention, train_metrics_of_logits
from jaxbo.model import PRECISION, Params, head, token_scores


def not_shared(config: Config, optimizer) -> list[str]:
    """The shared step is plain gradient descent with the analytic gradient on the analysed model."""
    reasons = []
    if optimizer is not None:
        reasons.append("a custom optimizer (the shared step is plain gradient descent)")
    if config.gradient != "analytic":
        reasons.append(f"Config.gradient = {config.gradient!r} (the shared step uses the analytic gradient)")
    if config.variant:
        reasons.append(
            f"a variant (Config.heads = {config.heads}, train_head = {config.train_head}, query_init_std = "
            f"{config.query_init_std}): the shared step trains the analysed model"
        )
    if config.normaliser != "softmax":
        reasons.append(f"Config.normaliser = {config.normaliser!r} (the shared step's attention is the softmax)")
    return reasons


def with_signal(dataset: Dataset, norm, rho) -> Dataset:
    """``dataset`` sampled at ‖μ‖ = 0, at ‖μ‖ = ``norm``: its tokens plus ‖μ‖ times the signal coefficients on
    e₁, e₂ (``data.signal_coefficients``), which is all the sampler does with ‖μ‖ (``reduced._signal_part``)."""
    signal = signal_coefficients(dataset.roles, dataset.clean_labels, rho)
    return dataclasses.replace(dataset, tokens=dataset.tokens.at[..., :2].add(norm * signal))


def test_metrics(key: jax.Array, config: Config, norms: jax.Array, queries: jax.Array, heads_nu: jax.Array):
    """Final test metrics of M runs of one test key, each ``data.sample_test_projected`` at its own ‖μ‖, query
    and head, from the one noise draw they share: (M,) accuracy and loss, (M, 4) attention per role.

    Run m's projected tokens are ‖μ_m‖·c_tᵀB_m[:2] + σε_t with B_m its basis, so its logits are
    ‖μ_m‖·c_tᵀq_m[:2] + σε_tᵀ(B_mᵀq_m) (B_mB_mᵀq_m = q_m) and likewise its scores: two (n_test·T × 4)·(4 × M)
    products for all M runs instead of M token arrays.

    Args:
      key: the runs' test key; config: their configuration (any ‖μ‖); norms: (M,); queries, heads_nu: (M, width).
    """
    n, T = config.n_test, config.T
    roles = jnp.asarray(token_roles(config.layout, T))
    clean = jnp.asarray(balanced_labels(n))
    coefficients = signal_coefficients(roles, clean, config.rho)  # (n, T, 2) per unit ‖μ‖
    noise = config.sigma * projected_test_noise(key, config)  # (n, T, 4), shared by the M runs
    basis = jax.vmap(projected_basis)(queries, heads_nu)  # (M, width, 4)

    def scores(vectors):  # (M, width) → (n, T, M)
        projected = jnp.einsum("mwk,mw->mk", basis, vectors, precision=PRECISION)
        means = norms * jnp.einsum("ntk,mk->ntm", coefficients, vectors[:, :2], precision=PRECISION)
        return means + jnp.einsum("ntk,mk->ntm", noise, projected, precision=PRECISION)

    attention = jax.nn.softmax(scores(queries), axis=1)
    margins = clean[:, None] * jnp.sum(attention * scores(heads_nu), axis=1)  # (n, M)
    per_role = jax.vmap(role_attention, in_axes=(2, None), out_axes=2)(attention, roles)  # (n, 4, M)
    return dict(
        test_accuracy=jnp.mean(margins > 0, axis=0),
        test_loss=jnp.mean(logistic_loss(margins), axis=0),
        attention_test=jnp.mean(per_role, axis=0).T,
    )


def runs_metrics(config: Config, keys: RunKeys, norms, train_set, test_set, params: Params, scores, saturation):
    """``Metrics`` of M runs of one key, (M, …): ``params`` (p and ν, (M, width)), ``scores`` the training
    logits and γ, (T, n, M) each (token-major), ``saturation`` their Σ_τ 𝔖⁽ⁱ⁾(τ), (n, M); the test part from the
    logged test set (sampled at ‖μ‖ = 0) or, without one, the shared projected draw (``test_metrics``)."""
    logits, gammas = (jnp.swapaxes(array, 0, 1) for array in scores)  # (n, T, M) each
    by_run = jax.vmap(train_metrics_of_logits, in_axes=(2, 0, None, 2, 1))
    training = by_run(logits, params.p, train_set, gammas, saturation)
    if test_set is None:
        return assemble(training, test_metrics(keys.test, config, norms, params.p, params.nu))

    def logged_test_metrics(norm, p, nu):
        test = with_signal(test_set, norm, config.rho)
        return attention_test_metrics(Params(p=p, nu=nu), test, token_scores(Params(p=p, nu=nu), test.tokens))

    return assemble(training, jax.vmap(logged_test_metrics)(norms, params.p, params.nu))


def trainer(config: Config, keys: RunKeys, norms: jax.Array, train_set: Dataset, test_set: Dataset | None) -> Trainer:
    """The M runs of one key at ‖μ‖ = ``norms`` (M,), in kernel form with one shared Gram matrix.

    ``train_set`` (and ``test_set``) are sampled at ‖μ‖ = 0: tokens F₀ (N × width, N = n·T), whose first two
    columns E are the noise on e₁, e₂. At ‖μ‖ the tokens are F₀ + ‖μ‖[C, 0], C (N × 2) the signal coefficients,
    so G(‖μ‖) = G₀ + ‖μ‖(E Cᵀ + C Eᵀ) + ‖μ‖² C Cᵀ with G₀ = F₀F₀ᵀ, and with α (N × M) the runs' coefficients

        logits = [G₀ | C | E] · [α; ‖μ‖∘Eᵀα + ‖μ‖²∘Cᵀα; ‖μ‖∘Cᵀα],

    one product with K = N + 4 after a (4 × N)·(N × M) one. ``values`` holds that stacked array (N + 4, M),
    rows in token-major order, and each run's Σ_τ 𝔖⁽ⁱ⁾(τ), (n, M), summed by the step itself, which so returns
    no attention; the metrics are (M, …).
    """
    tokens = train_set.tokens
    n, T, width = tokens.shape
    size = n * T
    # Rows in token-major order (t, i) and runs last: the softmax over t then runs over n·M contiguous values.
    flat = jnp.swapaxes(tokens, 0, 1).reshape(size, width)
    signal = signal_coefficients(train_set.roles, train_set.clean_labels, config.rho)
    signal = jnp.swapaxes(signal, 0, 1).reshape(size, 2)
    low_rank = jnp.concatenate([signal, flat[:, :2]], axis=1)  # [C | E]: (N, 4)
    gram = jnp.matmul(flat, flat.T, precision=PRECISION)
    extended = jnp.concatenate([gram, low_rank], axis=1)  # [G₀ | C | E]: (N, N + 4)
    heads_nu = jax.vmap(lambda norm: head(with_traced(config, signal_norm=norm), width))(norms)  # ν ∝ 1/‖μ‖
    labels = train_set.labels[:, None]  # ỹ: (n, 1)

    def at_norms(vectors):
        """F(‖μ‖_m)·v_m for (M, width) vectors v: (T, n, M)."""
        moved = jnp.matmul(flat, vectors.T, precision=PRECISION)
        return (moved + norms * jnp.matmul(signal, vectors[:, :2].T, precision=PRECISION)).reshape(T, n, -1)

    gammas = at_norms(heads_nu)  # γ = Xν of every run
    relevant = config.layout[0]  # ``data.token_roles``: the relevant tokens come first (a static slice is free)

    def step(values, opt_state):
        stacked = values["stacked"]  # [α; the low-rank rows], updated in place
        projections = jnp.matmul(low_rank.T, stacked[:size], precision=PRECISION)  # Cᵀα, Eᵀα: (4, M)
        along_signal, along_noise = projections[:2], projections[2:]
        stacked = stacked.at[size:].set(
            jnp.concatenate([norms * along_noise + norms**2 * along_signal, norms * along_signal])
        )
        attention = jax.nn.softmax(jnp.matmul(extended, stacked, precision=PRECISION).reshape(T, n, -1), axis=0)
        # ``loss.token_weights`` with the token axis first.
        f = jnp.sum(attention * gammas, axis=0)  # (n, M)
        coefficient = logistic_derivative(labels * f) * labels / n
        weights = coefficient * attention * (gammas - f)
        # 𝔖 is summed here (``descend`` keeps one run's totals), in the runs-last layout: a static slice.
        mass = jnp.sum(attention[:relevant], axis=0)  # Σ_{t∈R} s_t: (n, M)
        updated = {
            "stacked": stacked.at[:size].add(-config.lr * weights.reshape(size, -1)),
            "saturation": values["saturation"] + mass * (1.0 - mass),
        }
        return updated, opt_state, None

    def params_of(values) -> Params:
        """p_m = F(‖μ‖_m)ᵀα_m = F₀ᵀα_m + ‖μ‖_m[Cᵀα_m, 0]: (M, width)."""
        alpha = values["stacked"][:size]
        p = jnp.matmul(alpha.T, flat, precision=PRECISION)
        along_signal = jnp.matmul(alpha.T, signal, precision=PRECISION)  # (M, 2)
        return Params(p=p.at[:, :2].add(norms[:, None] * along_signal), nu=heads_nu)

    def evaluate(values, saturation_totals) -> Metrics:
        """``Trainer.evaluate`` of the M runs; ``saturation_totals`` is unused: 𝔖 is summed in ``values``."""
        params = params_of(values)
        scores = (at_norms(params.p), gammas)
        return runs_metrics(config, keys, norms, train_set, test_set, params, scores, values["saturation"])

    count = norms.shape[0]
    return Trainer(
        values={
            "stacked": jnp.zeros((size + 4, count), jnp.float32),
            "saturation": jnp.zeros((n, count), jnp.float32),
        },
        opt_state=(),
        step=step,
        evaluate=evaluate,
        params_of=params_of,
    )


def step_bytes(config: Config, width: int, count: int) -> int:
    """What one step of M runs reads twice: [G₀ | C | E] (N × (N + 4)) and the runs' coefficients α and their
    stacked copy (2 · N · M); the logits, attention and weights stream through once. 3 keys' worth fill
    ``plan.CACHE_BYTES`` at the paper's n·T = 160 and M = 39, the fastest batch measured (2: 10 % slower)."""
    tokens = config.n_train * config.T
    return 4 * (tokens * (tokens + 4) + 2 * tokens * count)


def start(keys: RunKeys, config: Config, width: int, norms: jax.Array, log_history: bool, *, sample):
    """The training set at ‖μ‖ = 0 and the ``trainer`` of the runs at ‖μ‖ = ``norms`` (M,), from the engine's
    ``sample`` at ‖μ‖ = 0: the same draws as each run's own (only the signal means scale with ‖μ‖)."""
    at_zero = with_traced(config, signal_norm=jnp.zeros((), jnp.float32))
    train_set, test_set = sample(keys, at_zero, width, log_history)
    return train_set, trainer(config, keys, norms, train_set, test_set)
