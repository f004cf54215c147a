"""The primal engine: the attention model in R^d, tokens (n, T, d) zero-padded to the run's width.

Runs every setting of the attention model (identity, fixed or trained W; analytic or autodiff gradient; any
optax optimizer), at a cost that grows with d. The reference the other engines are exact against.
"""

from __future__ import annotations

import numpy as np
import optax

from jaxbo import data as data_lib
from jaxbo.config import Config
from jaxbo.data import Dataset
from jaxbo.engines.base import HISTORY_BYTES_PER_LOG, TOKEN_COPIES, Engine, RunKeys, Trainer
from jaxbo.evaluation import (
    ATTENTION_SETTINGS,
    attention_coordinates,
    attention_evaluate,
    attention_limit,
    attention_title,
)
from jaxbo.loss import autodiff_grad, grad_from_attention, trainable, with_trainable
from jaxbo.memory import MAX_PRIMAL_WIDTH
from jaxbo.model import Params, attention_logits, head_mean, init_params, normalise, token_scores


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
    """Gradient descent with ``optimizer`` (default ``optax.sgd(config.lr)``) on p (W when ``config.attention ==
    "trained"``, ν when ``config.train_head``) from ``params``, one head or H on a leading axis, on tokens of any
    width (the reduced engine's too). The attention the loop accumulates 𝔖 from is the heads' mean."""
    optimizer = default_optimizer(config) if optimizer is None else optimizer
    train_weights, train_head = config.attention == "trained", config.train_head
    tokens, labels = train_set.tokens, train_set.labels
    heads = params.p.ndim > 1
    # While ν is fixed, γ = Xν is computed once per data set instead of once per step.
    fixed_gamma = None if train_head else token_scores(params, tokens)

    def step(values, opt_state):
        current = with_trainable(params, values)
        attention = normalise(attention_logits(current, tokens), config.normaliser)
        if config.gradient == "analytic":
            gamma = token_scores(current, tokens) if train_head else fixed_gamma
            grads = grad_from_attention(
                current, tokens, labels, attention, gamma, train_weights, config.normaliser, train_head
            )
        else:
            grads = autodiff_grad(current, tokens, labels, train_weights, config.normaliser, train_head)
        updates, opt_state = optimizer.update(grads, opt_state, values)
        return optax.apply_updates(values, updates), opt_state, head_mean(attention, heads)

    def params_of(values) -> Params:
        return with_trainable(params, values)

    values = trainable(params, train_weights, train_head)

    def view(values):
        return params_of(values), None

    return Trainer(
        values=values,
        opt_state=optimizer.init(values),
        step=step,
        evaluate=attention_evaluate(config, keys, train_set, test_set, params, view),
        params_of=params_of,
        # The t → ∞ limit is the one-head model's (``limit.not_covered`` refuses the variants first).
        limit=None if heads else attention_limit(config, keys, train_set, test_set, params, view),
    )


def sample(keys: RunKeys, config: Config, width: int, log_history: bool):
    """d-dimensional tokens zero-padded to ``width``; no test set without ``log_history`` (the final test
    metrics then use the exact 4-coordinate draw)."""
    train_set = data_lib.sample(keys.train, config, config.n_train, flip=True, width=width)
    test_set = data_lib.sample(keys.test, config, config.n_test, flip=False, width=width) if log_history else None
    return train_set, test_set


def start(keys: RunKeys, config: Config, width: int, train_set, test_set, optimizer) -> Trainer:
    """``descent_trainer`` from ``model.init_params`` (a head axis for the variants)."""
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


def size_words(config: Config, width: int, engine: str) -> tuple[str, str, str]:
    """The words of a memory refusal for a run of the engine called ``engine`` with d-wide arrays."""
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
    coordinates=lambda params: attention_coordinates(params, "R^{width}"),
)
