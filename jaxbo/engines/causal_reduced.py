"""The causal model's reduced engine: W = I in the exact 2 + n·T representation (``jaxbo.reduced_form``), any d
at the cost of d ≈ n·T.

Every gradient of the causal model is a combination of training tokens, as the paper model's
(``causal_model.analytic_grad``: Σ_{i,t} w_{i,t} x_{i,t}), so p stays in span(μ₁, μ₂, training tokens) under any
rotation-equivariant optimizer and the reduced coordinates are exact in distribution for any d; only the forward
pass differs (P masked softmaxes a sequence), and the one trainer serves both engines.
"""

from __future__ import annotations

from jaxbo import causal_model, reduced_form
from jaxbo.causal_evaluation import CAUSAL_SETTINGS, causal_coordinates, causal_title
from jaxbo.engines import causal, reduced
from jaxbo.engines.base import RunKeys, Trainer
from jaxbo.model import init_params


def sample(keys: RunKeys, config, width: int, log_history: bool):
    """Training (and, with ``log_history``, test) sets in the 2 + n·T coordinates, training targets per
    position (the same target draw as the causal engine's for the same key)."""
    train_set = causal_model.with_targets(keys.train, config, reduced_form.sample_train(keys.train, config))
    return train_set, reduced_form.sample_test(keys.test, config) if log_history else None


def start(keys: RunKeys, config, width: int, train_set, test_set, optimizer) -> Trainer:
    """``causal.causal_trainer`` on the reduced tokens, from p = 0 and ν in the reduced coordinates."""
    return causal.causal_trainer(config, keys, init_params(keys.weights, config, width), train_set, test_set, optimizer)


ENGINE = reduced.ENGINE.derive(
    name="causal_reduced",
    model="causal",
    summary="the causal model in the exact 2 + n·T representation: any d at the cost of d ≈ n·T",
    not_exact=reduced.not_exact,
    start=start,
    sample=sample,
    title=causal_title,
    settings=CAUSAL_SETTINGS,
    limit=True,
    coordinates=lambda params: causal_coordinates(
        params,
        "{width} coordinates (e₁, e₂, then an orthonormal basis of the training noise's span); use "
        "jaxbo.reduced_form.lift for a d-vector",
    ),
)
