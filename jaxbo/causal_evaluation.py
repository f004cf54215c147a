"""The causal model's evaluation, shared by its engines: final train/test metrics (``causal_evaluate``,
``Trainer.evaluate`` returning ``metrics.CausalMetrics``), its title and the settings its engines declare.

What it measures beyond the shared ``Metrics`` fields (docs/model.md §8): test accuracy at every prefix, the
fit of the targets some selection can fit (``causal_model.attainable``) and how many no selection can.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxbo import causal_model
from jaxbo import limit as limit_lib
from jaxbo.config import Config
from jaxbo.data import Dataset, sample_test_projected
from jaxbo.evaluation import limit_test_draw
from jaxbo.loss import logistic_loss
from jaxbo.metrics import (
    CausalMetrics,
    assemble,
    attention_test_metrics,
    masked_mean,
    train_metrics_of_logits,
)
from jaxbo.model import PRECISION, Params, scores_along, token_scores

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


def hard_selection(logits, gamma, mask) -> jax.Array:
    """f_τ under hard selection: γ of each prefix's largest logit, (n, P), for logits and scores (n, T)."""
    return jnp.take_along_axis(gamma, causal_model.running_selection(logits, mask), axis=-1)


def causal_limit(
    config: Config, keys, train_set: Dataset, test_set: Dataset | None, head_params: Params, view: Callable
) -> Callable:
    """``Trainer.limit`` of the causal model for any engine of it: ``values -> limit.CausalLimit``.

    The attention SVM of the run's running selection α̂_{i,τ} (``causal_model.limit_constraints``: one constraint
    per token, n(T − 1) in all, as the paper model's), its dual solved in Gram coordinates (``limit.solve_dual``),
    and Tarzanagh et al.'s certificate read per constraint with the target of the prefix where it binds: a
    support token must score below its winner in ỹ_{i,τ}νᵀx. Test metrics: hard selection by p_mm at every
    prefix, on the run's test draw extended along p_mm (``evaluation.limit_test_draw``, as the paper model's).
    """
    tokens, targets = train_set.tokens, train_set.labels
    n, T = tokens.shape[:2]
    flat = tokens.reshape(n * T, -1)
    start, mask = causal_model.prediction_start(config.layout), causal_model.prefix_mask(config)
    gamma = token_scores(head_params, tokens)
    best = causal_model.attainable(targets, gamma, start)

    def test_logits(q_mm, query):
        if test_set is not None:
            return test_set, jnp.einsum("ntd,d->nt", test_set.tokens, q_mm, precision=PRECISION), head_params.nu
        projected, head, logits_of = limit_test_draw(keys, config, query, head_params.nu)
        return projected, logits_of(q_mm), head

    def limit(values) -> limit_lib.CausalLimit:
        p = view(values).p
        selection = causal_model.running_selection(scores_along(tokens, p), mask)
        winners, losers, binding = causal_model.limit_constraints(selection, start)
        rows = jnp.arange(n)[:, None] * T
        winners_flat, losers_flat = (rows + winners).reshape(-1), (rows + losers).reshape(-1)
        gram = jnp.matmul(flat, flat.T, precision=PRECISION)
        solution = limit_lib.solve_dual(limit_lib.pair_gram(gram, winners_flat, losers_flat))
        coefficients = limit_lib.pair_coefficients(solution.multipliers, winners_flat, losers_flat, n * T)
        p_mm = jnp.matmul(coefficients, flat, precision=PRECISION)
        signed = jnp.take_along_axis(targets, binding, axis=-1)  # ỹ of the prefix where each constraint binds
        mine = signed * jnp.take_along_axis(gamma, winners, axis=-1)
        theirs = signed * jnp.take_along_axis(gamma, losers, axis=-1)
        support = solution.margins.reshape(n, T - 1) <= 1.0 + limit_lib.ACTIVE
        violations = jnp.sum(support & (theirs >= mine))
        status = limit_lib.limit_status(solution, violations)
        fitted = targets * jnp.take_along_axis(gamma, selection, axis=-1) > 0
        test, logits, head = test_logits(p_mm, p)
        test_gamma = scores_along(test.tokens, head)
        margins = test.labels[:, None] * hard_selection(logits, test_gamma, mask)
        by_position = jnp.mean(margins > 0, axis=0)
        norm = jnp.linalg.norm(p_mm)
        defined = status != limit_lib.INFEASIBLE
        value = lambda x: jnp.where(defined, x, jnp.nan)  # noqa: E731 - one rule for every metric of the limit
        return limit_lib.CausalLimit(
            status=status.astype(jnp.int32),
            train_accuracy=value(jnp.mean(fitted)),
            clean_accuracy=value(masked_mean(fitted.reshape(-1), ~train_set.noisy_mask.reshape(-1))),
            noisy_fit=value(masked_mean(fitted.reshape(-1), train_set.noisy_mask.reshape(-1))),
            test_accuracy=value(jnp.min(by_position)),
            test_loss=value(jnp.mean(logistic_loss(margins))),
            correlation=value(jnp.vdot(p, p_mm) / jnp.maximum(jnp.linalg.norm(p) * norm, 1e-30)),
            violations=violations.astype(jnp.int32),
            support=jnp.sum(support).astype(jnp.int32),
            margin=value(1.0 / jnp.maximum(norm, 1e-30)),
            residual=solution.residual,
            iterations=solution.iterations.astype(jnp.int32),
            selection=selection[:, -1],
            attainable_fit=value(jnp.sum(fitted) / jnp.sum(best)),
            position_accuracy=value(by_position),
        )

    return limit
