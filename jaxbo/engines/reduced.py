"""The reduced engine: W = I in the exact 2 + n·T representation (``jaxbo.reduced_form``), any d at the cost of d ≈ nT.

Gradient descent (and any rotation-equivariant optimizer) keeps p in span(μ₁, μ₂, training tokens), so the
run is exact in distribution in those coordinates (docs/exact_reduction.md); d is only a traced float. With
plain gradient descent and the analytic gradient it trains in kernel form: p = p⁽⁰⁾ + Xᵀα and logits Gα, one
(nT)² product a step.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbo import reduced_form
from jaxbo.config import Config
from jaxbo.deprecation import moved_names
from jaxbo.engines import primal, reduced_paired
from jaxbo.engines.base import HISTORY_BYTES_PER_LOG, TOKEN_COPIES, Engine, RunKeys, SharedStep, Trainer
from jaxbo.evaluation import (
    ATTENTION_SETTINGS,
    attention_coordinates,
    attention_evaluate,
    attention_limit,
    attention_title,
)
from jaxbo.loss import score_weights, token_weights, with_trainable
from jaxbo.model import PRECISION, Params, head_mean, init_params, normalise, token_scores


def is_rotation_equivariant(optimizer: optax.GradientTransformation, dim: int = 6, steps: int = 4) -> bool:
    """Whether ``optimizer`` commutes with rotations: update(Rg) = R·update(g) along a gradient sequence.

    Rotation equivariance is what keeps p in the span of the training tokens and makes the reduced engine
    exact: true of gradient descent and (Nesterov) momentum, false of Adam-like per-coordinate methods.
    Probed numerically in float32 on a random orthogonal R.
    """
    key_rotation, key_grads = jax.random.split(jax.random.key(0))
    rotation, _ = jnp.linalg.qr(jax.random.normal(key_rotation, (dim, dim)))
    grads = jax.random.normal(key_grads, (steps, dim))
    plain = {"p": jnp.zeros(dim)}
    rotated = {"p": jnp.zeros(dim)}
    plain_state, rotated_state = optimizer.init(plain), optimizer.init(rotated)
    for g in grads:
        update, plain_state = optimizer.update({"p": g}, plain_state, plain)
        rotated_update, rotated_state = optimizer.update({"p": rotation @ g}, rotated_state, rotated)
        plain = optax.apply_updates(plain, update)
        rotated = optax.apply_updates(rotated, rotated_update)
        if not jnp.allclose(rotation @ update["p"], rotated_update["p"], rtol=1e-4, atol=1e-6):
            return False
    return True


def not_exact(config: Config, optimizer) -> list[str]:
    """The reduction needs W = I and a rotation-equivariant optimizer (probed only when W = I)."""
    if config.attention != "identity":
        return [f"Config.attention = {config.attention!r} (the reduction needs W = I, attention='identity')"]
    if optimizer is not None and not is_rotation_equivariant(optimizer):
        return ["the optimizer is not rotation-equivariant (e.g. Adam), so p leaves the span of the tokens"]
    return []


def width(config: Config) -> int:
    """2 + n·T, and H more with a random start (``reduced.start_width``)."""
    return reduced_form.start_width(config)


def sample(keys: RunKeys, config: Config, width: int, log_history: bool):
    """Training (and, with ``log_history``, test) sets in the 2 + n·T coordinates; with a random start, H more
    coordinates, along which training tokens are 0 and test tokens σ·N(0, 1) (``reduced.random_start``)."""
    train_set = reduced_form.sample_train(keys.train, config)
    test_set = reduced_form.sample_test(keys.test, config) if log_history else None
    if not config.query_init_std:
        return train_set, test_set
    zeros = jnp.zeros((*train_set.tokens.shape[:2], config.heads), train_set.tokens.dtype)
    train_set = dataclasses.replace(train_set, tokens=jnp.concatenate([train_set.tokens, zeros], axis=-1))
    if test_set is not None:
        along = reduced_form.start_test_coordinates(keys.test, config, config.n_test)
        test_set = dataclasses.replace(test_set, tokens=jnp.concatenate([test_set.tokens, along], axis=-1))
    return train_set, test_set


def gram_trainer(config: Config, keys: RunKeys, params: Params, train_set, test_set) -> Trainer:
    """Gradient descent in kernel form, one head or H on a leading axis: p_h = p_h⁽⁰⁾ + Xᵀα_h (and, with a
    trained head, ν_h = ν_h⁽⁰⁾ + Xᵀβ_h), so the logits are Xp_h⁽⁰⁾ + Gα_h and the scores Xν_h⁽⁰⁾ + Gβ_h with the
    Gram matrix G = XXᵀ, and a step is α ← α − lr·w, β ← β − lr·v with the weights of ``loss.token_weights``
    and ``loss.score_weights``: one (nT)² product a step (G read once for every query and head) instead of two
    nT × width ones."""
    tokens = train_set.tokens
    n, T = tokens.shape[0], tokens.shape[1]
    flat = tokens.reshape(n * T, -1)
    gram = jnp.matmul(flat, flat.T, precision=PRECISION)
    heads, count, train_head = params.p.ndim > 1, params.heads, config.train_head
    shape = (count, n, T) if heads else (n, T)
    if heads:
        initial = jnp.matmul(jnp.concatenate([params.p, params.nu]), flat.T, precision=PRECISION)  # (2H, N)
        initial_logits, initial_gamma = initial[:count], initial[count:]
    else:
        initial_logits, initial_gamma = jnp.matmul(flat, params.p, precision=PRECISION), token_scores(params, tokens)

    def outputs(values):
        if heads:
            coefficients = jnp.concatenate([values["p"], values["nu"]]) if train_head else values["p"]
            moved = jnp.matmul(coefficients, gram, precision=PRECISION)  # G is symmetric: (αG)ᵀ = Gαᵀ
            moved_logits = moved[:count]
        else:
            moved_logits = jnp.matmul(gram, values["p"], precision=PRECISION)
        gamma = initial_gamma + moved[count:] if train_head else initial_gamma
        return normalise((initial_logits + moved_logits).reshape(shape), config.normaliser), gamma.reshape(shape)

    def step(values, opt_state):
        attention, gamma = outputs(values)
        weights = token_weights(train_set.labels, attention, gamma, config.normaliser)
        updated = {"p": values["p"] - config.lr * weights.reshape(values["p"].shape)}
        if train_head:
            head_weights = score_weights(train_set.labels, attention, gamma)
            updated["nu"] = values["nu"] - config.lr * head_weights.reshape(count, -1)
        return updated, opt_state, head_mean(attention, heads)

    def lift(coefficients):  # Xᵀα, (width,) or (H, width)
        if coefficients.ndim == 1:
            return jnp.matmul(flat.T, coefficients, precision=PRECISION)
        return jnp.matmul(coefficients, flat, precision=PRECISION)

    def params_of(values) -> Params:
        return with_trainable(params, {name: getattr(params, name) + lift(values[name]) for name in values})

    def view(values):
        return params_of(values), None

    values = {"p": jnp.zeros(initial_logits.shape, jnp.float32)}
    if train_head:
        values["nu"] = jnp.zeros(initial_logits.shape, jnp.float32)
    return Trainer(
        values=values,
        opt_state=(),
        step=step,
        evaluate=attention_evaluate(config, keys, train_set, test_set, params, view),
        params_of=params_of,
        # The t → ∞ limit is the one-head model's (``limit.not_covered`` refuses the variants first).
        limit=None if heads else attention_limit(config, keys, train_set, test_set, params, view),
    )


def start(keys: RunKeys, config: Config, width: int, train_set, test_set, optimizer) -> Trainer:
    """The kernel form with plain gradient descent and the analytic gradient; else descent on p itself in
    the reduced coordinates (another optimizer, the autodiff gradient). The variants (``Config.variant``: heads,
    a trained head, a random start) carry a head axis: every update is a combination of training tokens, so
    p_h − p_h⁽⁰⁾ and ν_h − ν_h⁽⁰⁾ stay in their span (docs/exact_reduction.md, "Variants")."""
    params = init_params(keys.weights, config, width)
    if config.variant:  # p⁽⁰⁾ in the reduced coordinates, not a d-dimensional draw
        params = Params(p=reduced_form.random_start(keys.weights, config), nu=params.nu)
    if optimizer is None and config.gradient == "analytic":
        return gram_trainer(config, keys, params, train_set, test_set)
    return primal.descent_trainer(config, keys, params, train_set, test_set, optimizer)


def bytes_per_run(config: Config, width: int, log_history: bool) -> int:
    """Tokens of 2 + n·T coordinates (``TOKEN_COPIES``; a 3-coordinate test set without ``log_history``),
    the Gram matrix in 2 copies, and the history; independent of d."""
    T = config.T
    N = config.n_train * T
    test_width = (2 + N) if log_history else 3
    data = 4 * T * (config.n_train * (2 + N) + config.n_test * test_width) * TOKEN_COPIES + 4 * N * N * 2
    return data + (HISTORY_BYTES_PER_LOG * config.n_logs if log_history else 0)


def step_bytes(config: Config, width: int) -> int:
    """Its (nT)² Gram matrix, read every step."""
    tokens = config.n_train * config.T
    return 4 * tokens * tokens


def size_words(config: Config, width: int, engine: str) -> tuple[str, str, str]:
    """The words of a memory refusal for a run of the engine called ``engine``, whose size is set by n·T."""
    N = config.n_train * config.T
    return f"Config.n_train · Config.T = {N}", f"one {engine} run", "Use a smaller n_train, T or n_test."


ENGINE = Engine(
    name="reduced",
    model="attention",
    summary="W = I in the exact 2 + n·T representation: any d at the cost of d ≈ n·T",
    not_exact=not_exact,
    width=width,
    padding="free",
    d_dtype=np.float32,
    sample=sample,
    start=start,
    bytes_per_run=bytes_per_run,
    step_bytes=step_bytes,
    size_words=size_words,
    title=attention_title,
    limit=True,
    settings=ATTENTION_SETTINGS,
    coordinates=lambda params: attention_coordinates(
        params,
        "{width} coordinates (e₁, e₂, then an orthonormal basis of the training noise's span); use "
        "jaxbo.reduced_form.lift for a d-vector",
    ),
    shared_step=SharedStep(
        start=functools.partial(reduced_paired.start, sample=sample),
        not_shared=reduced_paired.not_shared,
        step_bytes=reduced_paired.step_bytes,
    ),
)

#: 0.4's name (``kernel_trainer``, which another engine's function also had), for one release.
__getattr__ = moved_names(__name__, {"kernel_trainer": f"{__name__}.gram_trainer"})
