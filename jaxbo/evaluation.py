"""The attention model's evaluation, shared by every engine of it: a run's final train and test metrics
(``attention_evaluate``, ``Trainer.evaluate``), its t → ∞ limit (``attention_limit``, ``Trainer.limit``), the
model in words for figure titles (``attention_title``) and a run's coordinates in words
(``attention_coordinates``), and the model settings its engines declare (``ATTENTION_SETTINGS``).

Moved out of ``jaxbo.engines.base`` in 0.5 so that file holds only the engine interface; the old names still
import from there, warning, for one release.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxbo import limit as limit_lib
from jaxbo.config import Config
from jaxbo.data import Dataset, projected_basis, sample_test_projected, sample_test_projected_span
from jaxbo.metrics import Metrics, assemble, attention_test_metrics, attention_train_metrics
from jaxbo.model import PRECISION, Params, effective_query, token_scores

#: The stream (in a run's test key) of the one coordinate its projected test draw gains along the limit's query.
LIMIT_TEST_STREAM = 0x7FFFFFFB

#: The model settings (``Config`` fields beyond ``config.DATA_FIELDS``) of the attention model; ``mlp_width``
#: is the encoder's and does not change it.
ATTENTION_SETTINGS = frozenset(
    {
        "model",
        "attention",
        "weight_init",
        "normaliser",
        "gradient",
        "heads",
        "train_head",
        "query_init_std",
        "mlp_width",
    }
)


def attention_title(config: Config) -> str:
    """The attention model in words, with its W and variants: "attention model (W = I, p trained)",
    "attention model, 4 heads (W = I, p and ν trained, p⁽⁰⁾ ~ N(0, 0.02²I))"."""
    weights = {"identity": "W = I", "fixed": "W fixed random", "trained": "W trained"}[config.attention]
    if config.weight_init == "gaussian":
        weights += ", W₀ Gaussian"
    trained = "p and ν trained" if config.train_head else "p trained"
    parts = [weights, trained]
    if config.query_init_std:
        parts.append(f"p⁽⁰⁾ ~ N(0, {config.query_init_std:g}²I)")
    name = f"attention model, {config.heads} heads" if config.heads > 1 else "attention model"
    if config.normaliser != "softmax":
        name = f"{config.normaliser} {name}"
    return f"{name} ({', '.join(parts)})"


def attention_coordinates(params: Params, space: str) -> str:
    """``Engine.coordinates`` of an attention engine whose p lives in ``space`` (words with ``{width}``), with the
    head axis named where the variants carry one."""
    width = params.p.shape[-1]
    if params.p.ndim > 1:
        return f"{params.p.shape[-2]} head(s) × {space.format(width=width)} (p and ν stacked over heads)"
    return space.format(width=width)


def attention_evaluate(
    config: Config,
    keys,
    train_set: Dataset,
    test_set: Dataset | None,
    head_params: Params,
    view: Callable,
) -> Callable:
    """``Trainer.evaluate`` of the attention model f(X) = Σ_h ν_hᵀXᵀφ(XW_hᵀp_h) for any engine of it.

    Args:
      config, keys: the run's configuration and keys (``keys.test`` draws the final test set when
        ``test_set`` is None: exact in the span of e₁, e₂ and every query and head, ``data.sample_test_projected``
        for one head, ``data.sample_test_projected_span`` for H).
      train_set, test_set: the engine's data (tokens (n, T, width)).
      head_params: ``Params`` whose ν scores the tokens while the head is fixed (γ = Xν is then computed once).
      view: ``values -> (params, query)``: the ``Params`` whose p gives ‖p‖ and cos(p, μ_c) (and ν, where it is
        trained), and the query Wᵀp (None: from those params).
    """
    trained_head = config.train_head
    train_gamma = None if trained_head else token_scores(head_params, train_set.tokens)
    test_gamma = None if test_set is None or trained_head else token_scores(head_params, test_set.tokens)

    def evaluate(values, saturation_totals) -> Metrics:
        params, query = view(values)
        query = effective_query(params) if query is None else query
        phi = config.normaliser
        gamma = token_scores(params, train_set.tokens) if trained_head else train_gamma
        training = attention_train_metrics(params, train_set, gamma, saturation_totals, query, phi)
        if test_set is not None:
            gamma = token_scores(params, test_set.tokens) if trained_head else test_gamma
            return assemble(training, attention_test_metrics(params, test_set, gamma, query, phi))
        if params.p.ndim == 1:
            projected, test_query, head = sample_test_projected(keys.test, config, query, params.nu)
        else:
            vectors = jnp.concatenate([query, params.nu])
            projected, coordinates = sample_test_projected_span(keys.test, config, vectors)
            test_query, head = coordinates[: config.heads], coordinates[config.heads :]
        test_params = Params(p=test_query, nu=head)
        testing = attention_test_metrics(test_params, projected, token_scores(test_params, projected.tokens), None, phi)
        return assemble(training, testing)

    return evaluate


def limit_test_draw(keys, config: Config, query: jax.Array, head: jax.Array) -> tuple[Dataset, jax.Array, Callable]:
    """The limit's test samples where a run drew no full test set: the engine's exact projected draw at the
    horizon's query (``data.sample_test_projected``, the numbers its finite-horizon test metrics see), with one
    more coordinate along the part of q_mm outside that draw's span, whose noise is an independent N(0, σ²).

    Returns:
      (test set, tokens (n_test, T, 4); the head in those coordinates, (4,); ``q_mm -> (n_test, T)`` test logits
      x_tᵀq_mm for a q_mm (width,) of the run's coordinates).
    """
    projected, _, projected_head = sample_test_projected(keys.test, config, query, head)
    basis = projected_basis(query, head)
    along_key = jax.random.fold_in(keys.test, LIMIT_TEST_STREAM)
    along = jax.random.normal(along_key, (*projected.labels.shape, config.T))

    def logits_of(q_mm):
        inside = jnp.matmul(q_mm, basis, precision=PRECISION)  # Bᵀq_mm, (4,)
        outside = jnp.linalg.norm(q_mm - jnp.matmul(basis, inside, precision=PRECISION))
        drawn = jnp.einsum("ntk,k->nt", projected.tokens, inside, precision=PRECISION)
        return drawn + config.sigma * outside * along

    return projected, projected_head, logits_of


def attention_limit(
    config: Config,
    keys,
    train_set: Dataset,
    test_set: Dataset | None,
    head_params: Params,
    view: Callable,
) -> Callable:
    """``Trainer.limit`` of the attention model with a fixed W (``head_params.W``, None for W = I) and a fixed
    head, for any engine of it: ``values -> limit.Limit`` (``jaxbo.limit.limit_of``).

    The limit's test metrics use the run's own test draw: ``test_set`` where the engine sampled one, else the
    engine's exact projected draw (``data.sample_test_projected`` at the horizon's query, the same numbers its
    finite-horizon test metrics see) with one more coordinate along the part of q_mm outside that draw's span:
    its noise there is an independent N(0, σ²), so the pair (horizon, limit) is exact in law and shares the
    test samples.
    """
    W = head_params.W
    tokens = train_set.tokens
    rows = tokens if W is None else jnp.einsum("ntd,ed->nte", tokens, W, precision=PRECISION)  # W x_{i,t}

    def to_query(p):
        return jnp.matmul(p, W, precision=PRECISION)  # Wᵀp

    train_gamma = token_scores(head_params, tokens)

    def limit(values) -> limit_lib.Limit:
        params, query = view(values)
        query = effective_query(params) if query is None else query
        if test_set is not None:
            gamma = token_scores(head_params, test_set.tokens)

            def logits_of(q_mm):
                return jnp.einsum("ntd,d->nt", test_set.tokens, q_mm, precision=PRECISION)

            labels = test_set.labels
        else:
            projected, head, logits_of = limit_test_draw(keys, config, query, head_params.nu)
            gamma = jnp.einsum("ntk,k->nt", projected.tokens, head, precision=PRECISION)
            labels = projected.labels
        return limit_lib.limit_of(
            rows, params.p, query, train_set, train_gamma, logits_of, gamma, labels, None if W is None else to_query
        )

    return limit
