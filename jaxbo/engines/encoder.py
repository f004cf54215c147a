"""The encoder's engine (``Config.model = "encoder"``): the appendix's one-layer Transformer encoder
(``jaxbo.encoder_model``), every parameter trained by an optax optimizer on ``jax.grad`` of the loss.

Named ``"encoder"`` (until 0.5 ``"primal"``, which ``engine=`` still accepts for it for one release, and which
its checkpoints keep); it is the encoder's only engine (its LayerNorms, GELU and dense Q, K, V have no reduced
or kernel form). Never padded: LayerNorm averages over the d features and the
attention scale is d^(−1/2), so zero columns would change the function.
"""

from __future__ import annotations

import jax
import numpy as np
import optax

from jaxbo import data as data_lib
from jaxbo import encoder_model
from jaxbo.config import Config
from jaxbo.deprecation import moved_names
from jaxbo.engines.base import Engine, RunKeys, Trainer
from jaxbo.memory import MAX_PRIMAL_WIDTH
from jaxbo.metrics import complete


def encoder_trainer(
    config: Config, params: encoder_model.EncoderParams, train_set, test_set, optimizer=None
) -> Trainer:
    """Full-batch descent with ``optimizer`` (default ``optax.sgd(config.lr)``) on every parameter, from
    ``params``, on tokens (n, T, d); metrics on ``test_set`` (n_test, T, d)."""
    optimizer = optax.sgd(config.lr) if optimizer is None else optimizer
    gradient = jax.grad(encoder_model.empirical_loss)

    def step(current, opt_state):
        grads = gradient(current, train_set.tokens, train_set.labels)
        updates, opt_state = optimizer.update(grads, opt_state, current)
        return optax.apply_updates(current, updates), opt_state, None

    def evaluate(current, saturation_totals):
        del saturation_totals  # 𝔖 belongs to the analysed model's query p: NaN here
        measured = {
            **encoder_model.train_metrics(current, train_set),
            **encoder_model.test_metrics(current, test_set),
        }
        return complete(measured)

    return Trainer(values=params, opt_state=optimizer.init(params), step=step, evaluate=evaluate, params_of=lambda v: v)


def sample(keys: RunKeys, config: Config, width: int, log_history: bool):
    """d-dimensional data, unpadded, with the full test set always (the encoder has no 4-coordinate draw)."""
    train_set = data_lib.sample(keys.train, config, config.n_train, flip=True, width=width)
    test_set = data_lib.sample(keys.test, config, config.n_test, flip=False, width=width)
    return train_set, test_set


def start(keys: RunKeys, config: Config, width: int, train_set, test_set, optimizer) -> Trainer:
    params = encoder_model.init_params(keys.weights, width, config.mlp_width, config.layers)
    return encoder_trainer(config, params, train_set, test_set, optimizer)


def bytes_per_run(config: Config, width: int, log_history: bool) -> int:
    """Its parameters, their gradient and the new parameters (3 copies: XLA's figure is 2.6–3 at d >= 500), its
    activations (the top block's [CLS] row; every token's rows in each lower block, kept for the backward pass),
    and a full d-dimensional test set (sampled, then layer-normalised)."""
    T, n, m = config.T, config.n_train, config.mlp_width
    parameters = encoder_model.parameter_count(width, m, config.layers)
    activations = 8 * n * (T + 1) * width + 4 * n * m
    activations += (config.layers - 1) * n * (T + 1) * (12 * width + 2 * (T + 1) + 3 * m)
    data = 3 * T * width * n + 5 * T * width * config.n_test
    history = 40 * config.n_logs if log_history else 0
    return 4 * (3 * parameters + activations + data + history)


def step_bytes(config: Config, width: int) -> int:
    """Every weight, read once per step."""
    return 4 * encoder_model.parameter_count(width, config.mlp_width, config.layers)


def size_words(config: Config, width: int, engine: str) -> tuple[str, str, str]:
    parameters = encoder_model.parameter_count(width, config.mlp_width, config.layers)
    layers = f" and Config.layers = {config.layers}" if config.layers > 1 else ""
    return (
        f"Config.d = {width} with Config.mlp_width = {config.mlp_width}{layers}",
        f"one {engine} run (its {parameters:,} parameters, their gradient and a {config.n_test}-sample test set)",
        "The encoder has no reduced form: use a smaller d, mlp_width or n_test.",
    )


def title(config: Config) -> str:
    mlp = f"MLP width {config.mlp_width}" if config.mlp_width else "no MLP"
    depth = "one-layer" if config.layers == 1 else f"{config.layers}-layer"
    return f"{depth} Transformer encoder ({mlp})"


ENGINE = Engine(
    name="encoder",
    former_names=("primal",),
    model="encoder",
    summary="the one-layer Transformer encoder on d-dimensional tokens, every parameter trained",
    not_exact=lambda config, optimizer: [],
    width=lambda config: int(config.d),
    padding="none",
    d_dtype=np.int32,
    sample=sample,
    start=start,
    bytes_per_run=bytes_per_run,
    step_bytes=step_bytes,
    size_words=size_words,
    max_width=MAX_PRIMAL_WIDTH,
    title=title,
    # attention and gradient are the attention model's and do not change the encoder (Config's docstring).
    settings=frozenset({"mlp_width", "layers", "attention", "gradient"}),
    coordinates=lambda params: f"width d = {params.d}, MLP width {params.mlp_width}",
)

#: 0.4's name (``descent_trainer``, which another engine's function also had), for one release.
__getattr__ = moved_names(__name__, {"descent_trainer": f"{__name__}.encoder_trainer"})
