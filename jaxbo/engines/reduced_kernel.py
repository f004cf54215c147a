"""The reduced kernel engine: a Gaussian W₀ (fixed or trained) and p from 0 in 2 + nT coordinates, any d.

The kernel engine's iterates (``jaxbo.kernel_form``) on a Gaussian W₀ depend on W₀ only through its action on the
training span and on what test tokens meet outside it; ``reduced.gaussian_weights`` samples exactly that, a
(k + 2) × (2k + 2) matrix (k = 2 + nT) whose law is the d × d one's, so the run is exact in law at any d and
costs what a run at d ≈ 2nT does (docs/exact_reduction.md, "Trained W at any d").
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from jaxbo import reduced_form
from jaxbo.config import Config
from jaxbo.engines import kernel, reduced
from jaxbo.engines.base import HISTORY_BYTES_PER_LOG, TOKEN_COPIES, Engine, RunKeys, Trainer
from jaxbo.evaluation import ATTENTION_SETTINGS, attention_title
from jaxbo.model import Params, head


def not_exact(config: Config, optimizer) -> list[str]:
    """The kernel form's conditions, and a Gaussian W₀ (the reduction rests on its orthogonal invariance)."""
    reasons = kernel.not_exact(config, optimizer)
    if config.attention != "identity" and config.weight_init != "gaussian":
        reasons.append(
            f"Config.weight_init = {config.weight_init!r} (the reduction needs an orthogonally invariant W₀: "
            "weight_init='gaussian'; the kernel engine runs this W₀ exactly)"
        )
    return reasons


def width(config: Config) -> int:
    """Input coordinates 2k + 2, k = 2 + n·T (``reduced.kernel_width``)."""
    return reduced_form.kernel_width(config)


def sample(keys: RunKeys, config: Config, width: int, log_history: bool):
    """Training tokens in the 2 + n·T coordinates of ``reduced.sample_train``, 0 on the k + 2 outside ones;
    with ``log_history``, test tokens with their own ``reduced.outside_coordinates`` there."""
    train_set = reduced_form.sample_train(keys.train, config)
    n, T, k = train_set.tokens.shape
    padding = jnp.zeros((n, T, width - k), train_set.tokens.dtype)
    train_set = dataclasses.replace(train_set, tokens=jnp.concatenate([train_set.tokens, padding], axis=-1))
    if not log_history:
        return train_set, None
    test_set = reduced_form.sample_test(keys.test, config)
    outside = reduced_form.outside_coordinates(keys.test, config, config.n_test)
    return train_set, dataclasses.replace(test_set, tokens=jnp.concatenate([test_set.tokens, outside], axis=-1))


def start(keys: RunKeys, config: Config, width: int, train_set, test_set, optimizer) -> Trainer:
    """``kernel.kernel_trainer`` from p = 0 and the reduced Gaussian W₀ (``optimizer`` is None: ``not_exact``)."""
    W0 = reduced_form.gaussian_weights(keys.weights, config)
    params = Params(p=jnp.zeros(W0.shape[0], jnp.float32), nu=head(config, width), W=W0)
    return kernel.kernel_trainer(config, keys, params, train_set, test_set)


def bytes_per_run(config: Config, width: int, log_history: bool) -> int:
    """Tokens of 2k + 2 coordinates (``TOKEN_COPIES``; a 4-coordinate test draw without ``log_history``), W₀
    and W (k + 2) × (2k + 2) in 4 copies, K, G and A (4 copies) and the history; independent of d (and of
    ``width``, which the plan may pass as d: the width is 2k + 2 whatever d is)."""
    N, width = config.n_train * config.T, reduced_form.kernel_width(config)
    samples = config.n_train + (config.n_test if log_history else 0)
    data = 4 * config.T * width * samples * TOKEN_COPIES + 4 * config.T * config.n_test * 12
    data += 4 * (width // 2 + 1) * width * 4 + 4 * N * N * 4
    return data + (HISTORY_BYTES_PER_LOG * config.n_logs if log_history else 0)


ENGINE = Engine(
    name="reduced_kernel",
    model="attention",
    summary="a Gaussian W₀ (fixed or trained) and p in kernel form on 2 + n·T coordinates: exact in law at any d",
    not_exact=not_exact,
    width=width,
    padding="free",
    d_dtype=np.float32,
    sample=sample,
    start=start,
    bytes_per_run=bytes_per_run,
    step_bytes=kernel.step_bytes,
    size_words=reduced.size_words,
    title=attention_title,
    limit=True,
    settings=ATTENTION_SETTINGS,
    # Its (nT)² matrices make the cache rule's batch 1 run a device; 8 ran the paper's Figure-5 grid 1.3×
    # faster on 2 Zen-4 cores (13 s against 17 s steady, docs/benchmarks.md).
    cpu_batch=8,
    coordinates=lambda params: (
        f"p in {params.p.shape[-1]} coordinates (e₁, e₂, then a frame of W₀'s image of the training span), W "
        f"({params.p.shape[-1]} × {params.W.shape[-1]}) from those to the tokens' 2 + n·T coordinates and the ones "
        "a Gaussian W₀ reads outside them"
    ),
)
