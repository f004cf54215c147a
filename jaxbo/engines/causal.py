"""The causal engine: the causal attention model (``jaxbo.causal_model``) in R^d, tokens (n, T, d) zero-padded
to the run's width; the reference its reduced engine (``causal_reduced``) is exact against.

Gradient descent on p (W = I, ν fixed) with any optax optimizer, the analytic gradient (the paper's, prefix by
prefix) or ``jax.grad``.
"""

from __future__ import annotations

import dataclasses

import optax

from jaxbo import causal_model
from jaxbo.causal_evaluation import CAUSAL_SETTINGS, causal_coordinates, causal_evaluate, causal_limit, causal_title
from jaxbo.config import Config
from jaxbo.data import Dataset
from jaxbo.engines import primal
from jaxbo.engines.base import RunKeys, Trainer
from jaxbo.model import Params, init_params, scores_along, token_scores


def causal_trainer(
    config: Config,
    keys: RunKeys,
    params: Params,
    train_set: Dataset,
    test_set: Dataset | None,
    optimizer: optax.GradientTransformation | None,
) -> Trainer:
    """Gradient descent with ``optimizer`` (default ``optax.sgd(config.lr)``) on p from ``params`` (one head, W =
    I) for the causal model, on tokens of any width (the reduced engine's too). The attention the loop
    accumulates 𝔖 from is the last prefix's (τ = T: every token)."""
    optimizer = primal.default_optimizer(config) if optimizer is None else optimizer
    tokens, targets = train_set.tokens, train_set.labels
    mask = causal_model.prefix_mask(config)
    gamma = token_scores(params, tokens)  # ν is fixed: γ = Xν once per data set

    def with_p(values) -> Params:
        return dataclasses.replace(params, p=values["p"])

    def step(values, opt_state):
        current = with_p(values)
        attention = causal_model.causal_attention(scores_along(tokens, current.p), mask, config.normaliser)
        if config.gradient == "analytic":
            grads = causal_model.analytic_grad(targets, attention, gamma, tokens, config.normaliser)
        else:
            grads = causal_model.autodiff_grad(current, tokens, targets, mask, config.normaliser)
        updates, opt_state = optimizer.update(grads, opt_state, values)
        return optax.apply_updates(values, updates), opt_state, attention[..., -1, :]

    values = {"p": params.p}
    return Trainer(
        values=values,
        opt_state=optimizer.init(values),
        step=step,
        evaluate=causal_evaluate(config, keys, train_set, test_set, params, with_p),
        params_of=with_p,
        limit=causal_limit(config, keys, train_set, test_set, params, with_p),
    )


def sample(keys: RunKeys, config: Config, width: int, log_history: bool):
    """d-dimensional tokens zero-padded to ``width``, training targets per position; no test set without
    ``log_history`` (the final test metrics then use the exact 4-coordinate draw)."""
    train_set, test_set = primal.sample(keys, config, width, log_history)
    return causal_model.with_targets(keys.train, config, train_set), test_set


def start(keys: RunKeys, config: Config, width: int, train_set, test_set, optimizer) -> Trainer:
    """``causal_trainer`` from p = 0 and the paper's ν."""
    return causal_trainer(config, keys, init_params(keys.weights, config, width), train_set, test_set, optimizer)


def size_words(config: Config, width: int, engine: str) -> tuple[str, str, str]:
    """The words of a memory refusal for a run of the engine called ``engine`` with d-wide arrays."""
    return (
        f"Config.d = {width}",
        f"one {engine} run",
        "The causal_reduced engine (engine='auto' or 'causal_reduced') runs this model exactly at any d, at the "
        "cost of d ≈ n·T.",
    )


ENGINE = primal.ENGINE.derive(
    name="causal",
    model="causal",
    summary="the causal model with d-dimensional tokens; any optimizer; cost grows with d",
    not_exact=lambda config, optimizer: [],
    start=start,
    sample=sample,
    size_words=size_words,
    title=causal_title,
    settings=CAUSAL_SETTINGS,
    limit=True,
    coordinates=lambda params: causal_coordinates(params, "R^{width}"),
)
