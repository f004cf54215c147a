"""Deprecated (removed in 0.6): the H-head model is the one attention model with a head axis.

Heads are an axis of ``jaxbo.model.Params`` (p (H, width), ν (H, width), W (H, width, width)), and
``jaxbo.model``, ``jaxbo.loss`` and ``jaxbo.metrics`` compute the one-head and the H-head model with the same
functions (docs/changelog.md, 0.5.0). These names keep 0.4's calls working for one release; each delegates.

**Why ν/H** (docs/model.md, "Variants"): from p_h = 0 every head receives the same gradient, so the H heads with
ν_h = ν/H are the one-head model at step size lr/H; heads can only differ from a random start.
"""

from __future__ import annotations

import jax

from jaxbo import loss as loss_lib
from jaxbo import metrics as metrics_lib
from jaxbo import model as model_lib
from jaxbo.config import Config

#: 0.4's name of ``model.Params`` with a head axis.
HeadParams = model_lib.Params
random_start = model_lib.random_start
init_params = model_lib.init_params
queries = model_lib.effective_query


def head_outputs(params, tokens, query=None, normaliser: str = "softmax"):
    """(attention (H, n, T), logits (H, n, T), scores γ (H, n, T)): ``model.attention_logits`` and
    ``model.token_scores``."""
    logits = model_lib.scores_along(tokens, queries(params) if query is None else query)
    return model_lib.normalise(logits, normaliser), logits, model_lib.token_scores(params, tokens)


def forward(params, tokens, normaliser: str = "softmax") -> jax.Array:
    """f(X), (n,): ``model.forward(...)[0]``."""
    return model_lib.forward(params, tokens, normaliser)[0]


empirical_loss = loss_lib.empirical_loss


def weights_from(labels, attention, gamma, normaliser: str = "softmax"):
    """(``loss.token_weights``, ``loss.score_weights``)."""
    logit_weights = loss_lib.token_weights(labels, attention, gamma, normaliser)
    return logit_weights, loss_lib.score_weights(labels, attention, gamma)


def grad_from_outputs(params, tokens, labels, attention, gamma, train_weights, train_head, normaliser="softmax"):
    """``loss.grad_from_attention``."""
    return loss_lib.grad_from_attention(params, tokens, labels, attention, gamma, train_weights, normaliser, train_head)


def analytic_grad(params, tokens, labels, train_weights: bool, train_head: bool, normaliser: str = "softmax"):
    """``loss.analytic_grad``."""
    return loss_lib.analytic_grad(params, tokens, labels, train_weights, None, normaliser, train_head)


def trainable(params, config: Config) -> dict:
    """``loss.trainable`` for ``config``'s trained parts."""
    return loss_lib.trainable(params, config.attention == "trained", config.train_head)


def autodiff_grad(params, tokens, labels, config: Config) -> dict:
    """``loss.autodiff_grad`` for ``config``'s trained parts."""
    train_weights = config.attention == "trained"
    return loss_lib.autodiff_grad(params, tokens, labels, train_weights, config.normaliser, config.train_head)


def train_metrics(params, train, saturation_totals, query=None, normaliser: str = "softmax") -> dict:
    """``metrics.attention_train_metrics`` with the scores γ from ``params``."""
    gamma = model_lib.token_scores(params, train.tokens)
    return metrics_lib.attention_train_metrics(params, train, gamma, saturation_totals, query, normaliser)


def test_metrics(params, test, query=None, normaliser: str = "softmax") -> dict:
    """``metrics.attention_test_metrics`` with the scores γ from ``params``."""
    gamma = model_lib.token_scores(params, test.tokens)
    return metrics_lib.attention_test_metrics(params, test, gamma, query, normaliser)
