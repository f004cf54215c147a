"""The primal engine: the attention model in R^d, tokens (n, T, d) zero-padded to the run's width.

Runs every setting of the attention model (identity, fixed or trained W; analytic or autodiff gradient; any
optax optimizer), at a cost that grows with d. The reference the other engines are exact against.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
import optax

from jaxbo import data as data_lib
from jaxbo import heads
from jaxbo.config import Config
from jaxbo.data import Dataset
from jaxbo.engines.base import (
    ATTENTION_SETTINGS,
    HISTORY_BYTES_PER_LOG,
    TOKEN_COPIES,
    Engine,
    RunKeys,
    Trainer,
    attention_evaluate,
    attention_limit,
    attention_title,
)
from jaxbo.loss import autodiff_grad, grad_from_attention, trainable, with_trainable
from jaxbo.memory import MAX_PRIMAL_WIDTH
from jaxbo.metrics import Metrics, assemble
from jaxbo.model import Params, attention_logits, init_params, normalise, token_scores


def default_optimizer(config: Config) -> optax.GradientTransformation:
    """Plain gradient descent with step size ``config.lr`` (the paper's algorithm)."""
    return optax.sgd(config.lr)


def descent_trainer(
    config: Config,
    keys: RunKeys,
    params: Params,
    train_set: Dataset,
    test_set: Dataset | None,
    optimizer: optax.GradientTransformation | None,
) -> Trainer:
    """Gradient descent with ``optimizer`` (default ``optax.sgd(config.lr)``) on p (and W when
    ``config.attention == "trained"``) from ``params``, on tokens of any width (the reduced engine's too)."""
    optimizer = default_optimizer(config) if optimizer is None else optimizer
    train_weights = config.attention == "trained"
    tokens, labels = train_set.tokens, train_set.labels
    # ν is fixed, so γ = Xν is computed once per data set instead of once per step.
    train_gamma = token_scores(params, tokens)

    def step(values, opt_state):
        current = with_trainable(params, values)
        attention = normalise(attention_logits(current, tokens), config.normaliser)
        if config.gradient == "analytic":
            grads = grad_from_attention(
                current, tokens, labels, attention, train_gamma, train_weights, config.normaliser
            )
        else:
            grads = autodiff_grad(current, tokens, labels, train_weights, config.normaliser)
        updates, opt_state = optimizer.update(grads, opt_state, values)
        return optax.apply_updates(values, updates), opt_state, attention

    def params_of(values) -> Params:
        return with_trainable(params, values)

    values = trainable(params, train_weights)

    def view(values):
        return params_of(values), None

    return Trainer(
        values=values,
        opt_state=optimizer.init(values),
        step=step,
        evaluate=attention_evaluate(config, keys, train_set, test_set, params, view),
        params_of=params_of,
        limit=attention_limit(config, keys, train_set, test_set, params, view),
    )


def heads_evaluate(config: Config, keys: RunKeys, train_set: Dataset, test_set: Dataset | None, view) -> Callable:
    """``Trainer.evaluate`` of the H-head model (``jaxbo.heads``); ``view``: values -> ``HeadParams``. Without
    a test set, the final test metrics use the exact draw in span{e₁, e₂, every q_h and ν_h}."""

    def evaluate(values, saturation_totals) -> Metrics:
        params = view(values)
        phi = config.normaliser
        training = heads.train_metrics(params, train_set, saturation_totals, normaliser=phi)
        if test_set is not None:
            return assemble(training, heads.test_metrics(params, test_set, normaliser=phi))
        vectors = jnp.concatenate([heads.queries(params), params.nu])
        projected, coordinates = data_lib.sample_test_projected_span(keys.test, config, vectors)
        count = config.heads
        test_params = heads.HeadParams(p=coordinates[:count], nu=coordinates[count:])
        return assemble(training, heads.test_metrics(test_params, projected, normaliser=phi))

    return evaluate


def heads_trainer(
    config: Config, keys: RunKeys, params: heads.HeadParams, train_set: Dataset, test_set, optimizer
) -> Trainer:
    """Descent with ``optimizer`` (default ``optax.sgd(config.lr)``) on the H-head model's p_h (and W_h when
    ``attention="trained"``, ν_h when ``train_head``) from ``params``; tokens of any width. The attention the
    loop accumulates 𝔖 from is the heads' mean."""
    optimizer = default_optimizer(config) if optimizer is None else optimizer
    tokens, labels = train_set.tokens, train_set.labels

    def step(values, opt_state):
        current = dataclasses.replace(params, **values)
        attention, _, gamma = heads.head_outputs(current, tokens, normaliser=config.normaliser)
        if config.gradient == "analytic":
            train_weights = config.attention == "trained"
            grads = heads.grad_from_outputs(
                current, tokens, labels, attention, gamma, train_weights, config.train_head, config.normaliser
            )
        else:
            grads = heads.autodiff_grad(current, tokens, labels, config)
        updates, opt_state = optimizer.update(grads, opt_state, values)
        return optax.apply_updates(values, updates), opt_state, jnp.mean(attention, axis=0)

    def params_of(values) -> heads.HeadParams:
        return dataclasses.replace(params, **values)

    values = heads.trainable(params, config)
    return Trainer(
        values=values,
        opt_state=optimizer.init(values),
        step=step,
        evaluate=heads_evaluate(config, keys, train_set, test_set, params_of),
        params_of=params_of,
    )


def sample(keys: RunKeys, config: Config, width: int, log_history: bool):
    """d-dimensional tokens zero-padded to ``width``; no test set without ``log_history`` (the final test
    metrics then use the exact 4-coordinate draw)."""
    train_set = data_lib.sample(keys.train, config, config.n_train, flip=True, width=width)
    test_set = data_lib.sample(keys.test, config, config.n_test, flip=False, width=width) if log_history else None
    return train_set, test_set


def start(keys: RunKeys, config: Config, width: int, train_set, test_set, optimizer) -> Trainer:
    """The paper's model (``descent_trainer``), or, for ``Config.variant``, the H-head model (``heads_trainer``)."""
    if config.variant:
        params = heads.init_params(keys.weights, config, width)
        return heads_trainer(config, keys, params, train_set, test_set, optimizer)
    return descent_trainer(config, keys, init_params(keys.weights, config, width), train_set, test_set, optimizer)


def bytes_per_run(config: Config, width: int, log_history: bool) -> int:
    """Its token arrays (``TOKEN_COPIES``; final-only runs draw their test set in 4 coordinates), W in 4 copies
    (W₀, W, its gradient and update) when W is not the identity, and the history."""
    samples = config.n_train + (config.n_test if log_history else 0)
    data = 4 * config.T * width * samples * TOKEN_COPIES + 4 * config.T * config.n_test * 12
    if config.attention != "identity":  # W₀, W, its gradient and update, per head
        data += 4 * width * width * 4 * config.heads
    return data + (HISTORY_BYTES_PER_LOG * config.n_logs if log_history else 0)


def step_bytes(config: Config, width: int) -> int:
    """Its training tokens (n, T, width), read every step."""
    return 4 * config.n_train * config.T * width


def size_words(config: Config, width: int, engine: str = "primal") -> tuple[str, str, str]:
    """The words of a memory refusal for a run with d-wide arrays (this engine's, or ``engine``'s)."""
    what = f"one {engine} run"
    if config.attention != "identity":
        # The reduced engine would change the model (W = I): only d can give.
        return f"Config.d = {width}", what + f" (its {width} × {width} W in 4 copies)", "Use a smaller d."
    return (
        f"Config.d = {width}",
        what,
        "The reduced engine (engine='auto' or 'reduced') runs this model exactly at any d, at the cost of d ≈ n·T.",
    )


ENGINE = Engine(
    name="primal",
    model="attention",
    summary="d-dimensional tokens; every setting and optimizer; cost grows with d",
    not_exact=lambda config, optimizer: [],
    width=lambda config: int(config.d),
    padding="zeros",
    d_dtype=np.int32,
    sample=sample,
    start=start,
    bytes_per_run=bytes_per_run,
    step_bytes=step_bytes,
    size_words=size_words,
    max_width=MAX_PRIMAL_WIDTH,
    title=attention_title,
    limit=True,
    settings=ATTENTION_SETTINGS,
)
