"""The reduced engine: W = I in the exact 2 + n·T representation (``jaxbo.reduced``), any d at the cost of d ≈ nT.

Gradient descent (and any rotation-equivariant optimizer) keeps p in span(μ₁, μ₂, training tokens), so the
run is exact in distribution in those coordinates (docs/exact_reduction.md); d is only a traced float. With
plain gradient descent and the analytic gradient it trains in kernel form: p = p⁽⁰⁾ + Xᵀα and logits Gα, one
(nT)² product a step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbo import reduced as reduced_form
from jaxbo.config import Config
from jaxbo.engines import primal
from jaxbo.engines.base import (
    HISTORY_BYTES_PER_LOG,
    TOKEN_COPIES,
    Engine,
    RunKeys,
    Trainer,
    attention_evaluate,
    attention_title,
)
from jaxbo.loss import token_weights, with_trainable
from jaxbo.model import PRECISION, Params, init_params, token_scores


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
    return reduced_form.width(config)


def sample(keys: RunKeys, config: Config, width: int, log_history: bool):
    """Training (and, with ``log_history``, test) sets in the 2 + n·T coordinates; ``width`` is theirs."""
    train_set = reduced_form.sample_train(keys.train, config)
    test_set = reduced_form.sample_test(keys.test, config) if log_history else None
    return train_set, test_set


def kernel_trainer(config: Config, keys: RunKeys, params: Params, train_set, test_set) -> Trainer:
    """Gradient descent on α of p = p⁽⁰⁾ + Xᵀα: α ← α − lr·w with w the ``loss.token_weights``, logits
    p⁽⁰⁾ᵀx + Gα with the Gram matrix G = XXᵀ: one (nT)² product a step instead of two nT × width ones."""
    tokens = train_set.tokens
    n, T = tokens.shape[0], tokens.shape[1]
    flat = tokens.reshape(n * T, -1)
    gram = jnp.matmul(flat, flat.T, precision=PRECISION)
    initial_logits = jnp.matmul(flat, params.p, precision=PRECISION)
    train_gamma = token_scores(params, tokens)

    def step(alpha, opt_state):
        logits = (initial_logits + jnp.matmul(gram, alpha["p"], precision=PRECISION)).reshape(n, T)
        attention = jax.nn.softmax(logits, axis=-1)
        weights = token_weights(train_set.labels, attention, train_gamma)
        return {"p": alpha["p"] - config.lr * weights.reshape(-1)}, opt_state, attention

    def params_of(alpha) -> Params:
        return with_trainable(params, {"p": params.p + jnp.matmul(flat.T, alpha["p"], precision=PRECISION)})

    return Trainer(
        values={"p": jnp.zeros(n * T, jnp.float32)},
        opt_state=(),
        step=step,
        evaluate=attention_evaluate(config, keys, train_set, test_set, params, lambda a: (params_of(a), None)),
        params_of=params_of,
    )


def start(keys: RunKeys, config: Config, width: int, train_set, test_set, optimizer) -> Trainer:
    """The kernel form with plain gradient descent and the analytic gradient; else descent on p itself in
    the reduced coordinates (another optimizer, the autodiff gradient)."""
    params = init_params(keys.weights, config, width)
    if optimizer is None and config.gradient == "analytic":
        return kernel_trainer(config, keys, params, train_set, test_set)
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


def size_words(config: Config, width: int) -> tuple[str, str, str]:
    N = config.n_train * config.T
    return f"Config.n_train · Config.T = {N}", "one reduced run", "Use a smaller n_train, T or n_test."


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
)
