"""The causal model's evaluation, shared by its engines: final train/test metrics (``causal_evaluate``,
``Trainer.evaluate`` returning ``metrics.CausalMetrics``), its title and the settings its engines declare.

What it measures beyond the shared ``Metrics`` fields (docs/model.md §9): test accuracy at every prefix, the
fit of the targets some selection can fit (``causal_model.attainable``) and how many no selection can.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxbo import causal_model
from jaxbo.config import Config
from jaxbo.data import Dataset, sample_test_projected
from jaxbo.loss import logistic_loss
from jaxbo.metrics import (
    CausalMetrics,
    assemble,
    attention_test_metrics,
    masked_mean,
    train_metrics_of_logits,
)
from jaxbo.model import Params, scores_along, token_scores

#: The model settings (``Config`` fields beyond ``config.DATA_FIELDS``) the causal model's engines run: φ,
#: the gradient's form and the kind of label noise (``mlp_width`` is the encoder's and does not change it).
CAUSAL_SETTINGS = frozenset({"model", "normaliser", "gradient", "target_noise", "mlp_width"})


def causal_title(config: Config) -> str:
    """The causal model in words: "causal attention model (W = I, p trained, token-level label noise)"."""
    name = "causal attention model" if config.normaliser == "softmax" else f"causal {config.normaliser} attention model"
    return f"{name} (W = I, p trained, {config.target_noise}-level label noise)"


def causal_coordinates(params: Params, space: str) -> str:
    """``Engine.coordinates`` of a causal engine whose p lives in ``space`` (words with ``{width}``)."""
    return space.format(width=params.p.shape[-1])


def last_position(train_set: Dataset) -> Dataset:
    """The training set as the paper's model sees it at τ = T: the last position's targets and noise, (n,)."""
    return dataclasses.replace(train_set, labels=train_set.labels[:, -1], noisy_mask=train_set.noisy_mask[:, -1])


def causal_train_metrics(logits, gamma, train_set: Dataset, config: Config, best: jax.Array) -> dict:
    """The causal model's own training fields: accuracy, loss and fit over every target (i, τ), the attainable
    fit and what no selection can fit.

    Args:
      logits: a = Xp, (n, T); gamma: γ = Xν, (n, T); train_set: targets ỹ (n, P), noisy mask (n, P);
      config: the run's configuration; best: M_i, (n,) (``causal_model.attainable``).
    """
    mask = causal_model.prefix_mask(config)
    f = causal_model.outputs(causal_model.causal_attention(logits, mask, config.normaliser), gamma)  # (n, P)
    targets, noisy = train_set.labels, train_set.noisy_mask
    fitted = targets * f > 0
    alone = causal_model.attainable_each(targets, gamma, causal_model.prediction_start(config.layout))
    count = targets.shape[-1]
    return dict(
        train_accuracy=jnp.mean(fitted),
        train_loss=jnp.mean(logistic_loss(targets * f)),
        clean_accuracy=masked_mean(fitted.reshape(-1), ~noisy.reshape(-1)),
        noisy_fit=masked_mean(fitted.reshape(-1), noisy.reshape(-1)),
        position_fit=jnp.sum(fitted & alone, axis=0) / jnp.sum(alone, axis=0),
        attainable_fit=jnp.sum(fitted) / jnp.sum(best),
        unattainable=jnp.sum(count - best) / targets.size,
        noisy_unattainable=masked_mean((~alone).reshape(-1), noisy.reshape(-1)),
    )


def causal_test_metrics(logits, gamma, labels, config: Config) -> dict:
    """Test accuracy at every prefix (``position_accuracy``, (P,)), its minimum (``test_accuracy``) and the
    loss's mean over positions, for test logits and scores (n_test, T) and clean labels (n_test,)."""
    mask = causal_model.prefix_mask(config)
    f = causal_model.outputs(causal_model.causal_attention(logits, mask, config.normaliser), gamma)
    margins = labels[:, None] * f
    by_position = jnp.mean(margins > 0, axis=0)
    return dict(
        position_accuracy=by_position,
        test_accuracy=jnp.min(by_position),
        test_loss=jnp.mean(logistic_loss(margins)),
    )


def causal_evaluate(
    config: Config, keys, train_set: Dataset, test_set: Dataset | None, head_params: Params, view: Callable
) -> Callable:
    """``Trainer.evaluate`` of the causal model for any engine of it: ``(values, saturation_totals) ->
    CausalMetrics``.

    The test part uses ``test_set`` where the engine sampled one, else the exact 4-coordinate draw
    (``data.sample_test_projected``): the model sees a test token only through x_tᵀp and x_tᵀν, as the paper's.

    Args:
      config, keys: the run's configuration and keys; train_set: targets (n, P) (``causal_model.with_targets``);
      test_set: tokens (n_test, T, width), labels (n_test,), or None; head_params: ``Params`` with the fixed ν;
      view: ``values -> Params``.
    """
    gamma = token_scores(head_params, train_set.tokens)
    best = causal_model.attainable(train_set.labels, gamma, causal_model.prediction_start(config.layout))
    last = last_position(train_set)
    test_gamma = None if test_set is None else token_scores(head_params, test_set.tokens)

    def evaluate(values, saturation_totals) -> CausalMetrics:
        params = view(values)
        logits = scores_along(train_set.tokens, params.p)
        shared = train_metrics_of_logits(logits, params.p, last, gamma, saturation_totals, config.normaliser)
        training = {**shared, **causal_train_metrics(logits, gamma, train_set, config, best)}
        if test_set is not None:
            test, test_params, scores = test_set, params, test_gamma
        else:
            test, query, head = sample_test_projected(keys.test, config, params.p, params.nu)
            test_params = Params(p=query, nu=head)
            scores = token_scores(test_params, test.tokens)
        shared_test = attention_test_metrics(test_params, test, scores, None, config.normaliser)
        own = causal_test_metrics(scores_along(test.tokens, test_params.p), scores, test.labels, config)
        return assemble(training, {**shared_test, **own}, kind=CausalMetrics)

    return evaluate
