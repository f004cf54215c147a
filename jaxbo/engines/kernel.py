"""The kernel engine: a random W (fixed or trained) and p in kernel form, p = W₀Xᵀβ, W = W₀ + W₀XᵀAX.

The same iterates as the primal engine in exact arithmetic, O((nT)²) per step whatever d (``jaxbo.kernel_form``);
d enters once per run, through M = W₀Xᵀ.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxbo import kernel_form
from jaxbo.config import Config
from jaxbo.engines import primal
from jaxbo.engines.base import RunKeys, Trainer
from jaxbo.evaluation import ATTENTION_SETTINGS, attention_evaluate, attention_limit
from jaxbo.loss import token_weights
from jaxbo.model import PRECISION, Params, init_params, normalise, token_scores


def not_exact(config: Config, optimizer) -> list[str]:
    """The kernel form holds for p⁽⁰⁾ = 0, a random W, plain gradient descent and the analytic gradient."""
    reasons = []
    if config.attention == "identity":
        reasons.append("Config.attention = 'identity' (W = I: use the reduced engine)")
    if optimizer is not None:
        reasons.append(
            f"optimizer = {type(optimizer).__name__} (the kernel form is plain gradient descent: pass no optimizer)"
        )
    if config.gradient != "analytic":
        reasons.append(f"Config.gradient = {config.gradient!r} (needs 'analytic')")
    if config.variant:
        reasons.append(
            f"Config.heads = {config.heads}, train_head = {config.train_head}, query_init_std = "
            f"{config.query_init_std} (the kernel form has one fixed head from p = 0: use 'primal')"
        )
    return reasons


def start(keys: RunKeys, config: Config, width: int, train_set, test_set, optimizer) -> Trainer:
    """``kernel_trainer`` from the model's initialisation; ``optimizer`` is None (``not_exact``)."""
    return kernel_trainer(config, keys, init_params(keys.weights, config, width), train_set, test_set)


def kernel_trainer(config: Config, keys: RunKeys, params: Params, train_set, test_set) -> Trainer:
    """Gradient descent on (β, A) from 0, i.e. on (p, W) from (0, W₀ = ``params.W``) (``jaxbo.kernel_form``)."""
    tokens = train_set.tokens
    n, T = tokens.shape[0], tokens.shape[1]
    train_weights = config.attention == "trained"
    data = kernel_form.prepare(params.W, tokens)
    train_gamma = token_scores(params, tokens)

    def step(values, opt_state):
        logits = kernel_form.logits(data, values["beta"], values["A"]).reshape(n, T)
        attention = normalise(logits, config.normaliser)
        weights = token_weights(train_set.labels, attention, train_gamma, config.normaliser).reshape(-1)
        beta, A = kernel_form.step(data, values["beta"], values["A"], weights, config.lr, train_weights)
        return {"beta": beta, "A": A}, opt_state, attention

    def view(values):
        p = jnp.matmul(data.M, values["beta"], precision=PRECISION)
        return Params(p=p, nu=params.nu), kernel_form.query(data, values["beta"], values["A"])

    def params_of(values) -> Params:
        p, W = kernel_form.parameters(data, values["beta"], values["A"])
        return Params(p=p, nu=params.nu, W=W)

    size = n * T
    return Trainer(
        values={"beta": jnp.zeros(size, tokens.dtype), "A": jnp.zeros((size, size), tokens.dtype)},
        opt_state=(),
        step=step,
        evaluate=attention_evaluate(config, keys, train_set, test_set, params, view),
        params_of=params_of,
        # Only reached with W fixed (``limit.not_covered`` refuses trained W), where W = W₀ = params.W.
        limit=attention_limit(config, keys, train_set, test_set, params, view),
    )


def bytes_per_run(config: Config, width: int, log_history: bool) -> int:
    """The primal engine's, plus M = W₀Xᵀ (2 copies) and the (nT)² matrices K, G, A (4 copies)."""
    N = config.n_train * config.T
    return primal.bytes_per_run(config, width, log_history) + 4 * width * N * 2 + 4 * N * N * 4


def step_bytes(config: Config, width: int) -> int:
    """K, G and A, read every step."""
    tokens = config.n_train * config.T
    return 3 * 4 * tokens * tokens


# The primal engine's data, widths and cost of the d-wide W and tokens; its own training code and claims.
ENGINE = primal.ENGINE.derive(
    name="kernel",
    summary="W and p in kernel form (random W, fixed or trained): the primal iterates at O((nT)²) per step",
    not_exact=not_exact,
    start=start,
    bytes_per_run=bytes_per_run,
    step_bytes=step_bytes,
    limit=True,
    settings=ATTENTION_SETTINGS,
    coordinates=lambda params: f"R^{params.p.shape[-1]} (p and W = W₀ + W₀XᵀAX rebuilt from the kernel form's β, A)",
)
