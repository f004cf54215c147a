"""One run: full-batch gradient descent on p from p = 0 (docs/model.md §3), metrics logged as scan outputs."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbo import data as data_lib
from jaxbo import encoder as encoder_lib
from jaxbo import kernel as weights_kernel_lib
from jaxbo import reduced
from jaxbo.config import SWEEPABLE, Config, with_traced
from jaxbo.loss import (
    accuracy_and_loss,
    autodiff_grad,
    grad_from_attention,
    token_weights,
    trainable,
    with_trainable,
)
from jaxbo.memory import check_fits
from jaxbo.model import PRECISION, Params, attention_logits, effective_query, init_params, token_scores
from jaxbo.theory import masked_mean, mean_gaps, role_attention, saturation, saturation_by_group


@dataclasses.dataclass(frozen=True)
class Metrics:
    """Metrics of a model at one time; in a history every field gains a leading axis (n_logs,).

    Accuracies count f = 0 as wrong. A *noisy* sample is fitted when the model predicts its flipped label ỹ.

    For the encoder (``Config.model = "encoder"``) the attention fields are the [CLS] token's attention on
    x_1 … x_T (per role they then sum to 1 minus [CLS]'s attention on itself) and the gaps are read from its
    logits; ``p_norm``, ``cos_mu1``, ``cos_mu2``, ``saturation_clean`` and ``saturation_noisy`` belong to the
    analysed model's query p and gradient and are NaN.

    Attributes:
      train_accuracy: fraction of training samples with ỹ f > 0.
      train_loss: empirical logistic loss L(p).
      test_accuracy: fraction of (clean) test samples with y f > 0.
      test_loss: logistic loss on the test set.
      clean_accuracy: accuracy on the clean training samples 𝒞.
      noisy_fit: fraction of noisy training samples 𝒩 fitted (ỹ f > 0); NaN when 𝒩 is empty.
      attention_clean: mean attention mass per role over 𝒞, (4,) in ``data.ROLE_NAMES`` order.
      attention_noisy: the same over 𝒩, (4,); NaN when 𝒩 is empty.
      attention_test: the same over the test set, (4,).
      p_norm: ‖p‖.
      cos_mu1: cos(p, μ₁) (0 while p = 0).
      cos_mu2: cos(p, μ₂) (0 while p = 0).
      saturation_clean: Σ_{τ<t} Σ_{i∈𝒞, y_i=c} 𝔖⁽ⁱ⁾(τ), (2,) for classes c = +1, −1: cumulative 𝔖 over every
        step so far, evaluated at the parameters each step started from.
      saturation_noisy: the same over 𝒩, (2,).
      gap_clean: mean over 𝒞 of Λ̄_i, the relevant token's logit lead over the mean of the others
        (``theory.mean_gaps``).
      gap_noisy: mean over 𝒩 of Γ̄_i, the weakly-relevant opposite token's lead; NaN when 𝒩 is empty.
      max_attention: mean over training samples of the largest attention probability max_t s_t (the
        [CLS] token's, for the encoder: the statistic the paper plots for real data).
    """

    train_accuracy: jax.Array
    train_loss: jax.Array
    test_accuracy: jax.Array
    test_loss: jax.Array
    clean_accuracy: jax.Array
    noisy_fit: jax.Array
    attention_clean: jax.Array
    attention_noisy: jax.Array
    attention_test: jax.Array
    p_norm: jax.Array
    cos_mu1: jax.Array
    cos_mu2: jax.Array
    saturation_clean: jax.Array
    saturation_noisy: jax.Array
    gap_clean: jax.Array
    gap_noisy: jax.Array
    max_attention: jax.Array


#: Metrics fields that belong to the analysed model's query p and its gradient: NaN for the encoder.
NOT_FOR_ENCODER = ("p_norm", "cos_mu1", "cos_mu2", "saturation_clean", "saturation_noisy")


jax.tree_util.register_dataclass(Metrics, data_fields=[f.name for f in dataclasses.fields(Metrics)], meta_fields=[])


@dataclasses.dataclass(frozen=True)
class Run:
    """Result of ``simulate``.

    Attributes:
      params: final parameters, in the engine's coordinates (``coordinates`` says which). With the reduced
        engine ``params.p`` has 2 + n_train·T entries: p on e₁, e₂ (so on μ₁, μ₂), then on an orthonormal basis
        of the training noise's span. Every metric, ‖p‖ and cos(p, μ_c) are the same as in R^d;
        ``jaxbo.reduced.lift(run.params.p, key, d)`` gives a d-vector with the same joint law as p.
      history: ``Metrics`` recorded after steps log_every, 2·log_every, …, steps; fields (n_logs, …).
      final: ``Metrics`` after the last step (equals the last row of ``history``).
      log_steps: (n_logs,) int32, the step count at each history row.
      engine: ``"primal"`` (d-dimensional tokens), ``"reduced"`` (exact 2 + nT representation) or ``"kernel"``
        (W and p in kernel form, ``jaxbo.kernel``).
      data: (training set, test set) in the engine's coordinates when asked for (``simulate(...,
        keep_data=True)``, e.g. for ``plot.selected_tokens``), else None.
    """

    params: Params
    history: Metrics
    final: Metrics
    log_steps: jax.Array
    engine: str = "primal"
    data: tuple[data_lib.Dataset, data_lib.Dataset] | None = None

    @property
    def coordinates(self) -> str:
        """Which coordinates ``params`` live in, in words."""
        if isinstance(self.params, encoder_lib.EncoderParams):
            return f"primal: encoder of width d = {self.params.d}, MLP width {self.params.mlp_width}"
        width = self.params.p.shape[-1]
        if self.engine == "reduced":
            return (
                f"reduced: {width} coordinates (e₁, e₂, then an orthonormal basis of the training noise's span); "
                "use jaxbo.reduced.lift for a d-vector"
            )
        return f"primal: R^{width}"

    def __repr__(self) -> str:
        final = self.final
        batch = tuple(np.shape(final.train_accuracy))
        if batch:
            summary = f"batch of {batch} runs"
        else:
            summary = (
                f"train acc {float(final.train_accuracy):.3f}, test acc {float(final.test_accuracy):.3f}, "
                f"noisy fit {float(final.noisy_fit):.3f}, train loss {float(final.train_loss):.4f}"
            )
        steps = int(np.asarray(self.log_steps).reshape(-1)[-1]) if np.size(self.log_steps) else 0
        return (
            f"Run(engine={self.engine!r}, {steps} steps, {np.shape(self.log_steps)[-1]} logged rows, {summary}; "
            f"params in {self.coordinates})"
        )


jax.tree_util.register_dataclass(
    Run, data_fields=["params", "history", "final", "log_steps", "data"], meta_fields=["engine"]
)


def _train_metrics(params: Params, train, train_gamma, saturation_totals, query=None) -> dict[str, jax.Array]:
    """Training-set and parameter metrics of ``params`` (γ = Xν precomputed; ``saturation_totals``: (n,)
    Σ_τ 𝔖⁽ⁱ⁾(τ) per sample, summed by class and group here rather than at every step; ``query``: Wᵀp where
    the caller has it cheaper than from ``params``)."""
    saturation_sums = saturation_by_group(saturation_totals, train.clean_labels, train.noisy_mask)
    query = effective_query(params) if query is None else query
    logits = jnp.einsum("ntd,d->nt", train.tokens, query, precision=PRECISION)
    s_train = jax.nn.softmax(logits, axis=-1)
    f_train = jnp.sum(s_train * train_gamma, axis=-1)
    lead_relevant, lead_opposite = mean_gaps(logits, train.roles)
    train_accuracy, train_loss = accuracy_and_loss(f_train, train.labels)
    fitted = train.labels * f_train > 0
    roles_train = role_attention(s_train, train.roles)
    p_norm = jnp.linalg.norm(params.p)
    safe_norm = jnp.where(p_norm > 0, p_norm, 1.0)
    return dict(
        train_accuracy=train_accuracy,
        train_loss=train_loss,
        clean_accuracy=masked_mean(fitted, ~train.noisy_mask),
        noisy_fit=masked_mean(fitted, train.noisy_mask),
        attention_clean=masked_mean(roles_train, ~train.noisy_mask),
        attention_noisy=masked_mean(roles_train, train.noisy_mask),
        p_norm=p_norm,
        cos_mu1=params.p[0] / safe_norm,
        cos_mu2=params.p[1] / safe_norm,
        saturation_clean=saturation_sums[:, 0],
        saturation_noisy=saturation_sums[:, 1],
        gap_clean=masked_mean(lead_relevant, ~train.noisy_mask),
        gap_noisy=masked_mean(lead_opposite, train.noisy_mask),
        max_attention=jnp.mean(jnp.max(s_train, axis=-1)),
    )


def _test_metrics(params: Params, test, test_gamma, query=None) -> dict[str, jax.Array]:
    query = effective_query(params) if query is None else query
    s_test = jax.nn.softmax(jnp.einsum("ntd,d->nt", test.tokens, query, precision=PRECISION), axis=-1)
    test_accuracy, test_loss = accuracy_and_loss(jnp.sum(s_test * test_gamma, axis=-1), test.labels)
    return dict(
        test_accuracy=test_accuracy,
        test_loss=test_loss,
        attention_test=jnp.mean(role_attention(s_test, test.roles), axis=0),
    )


def _evaluate(params: Params, train, train_gamma, test, test_gamma, saturation_totals, query=None) -> Metrics:
    """Metrics of ``params`` (with its ``query`` Wᵀp if given) on the training and test sets (γ = Xν given)."""
    return Metrics(
        **_train_metrics(params, train, train_gamma, saturation_totals, query),
        **_test_metrics(params, test, test_gamma, query),
    )


def default_optimizer(config: Config) -> optax.GradientTransformation:
    """Plain gradient descent with step size ``config.lr`` (the paper's algorithm)."""
    return optax.sgd(config.lr)


def train(
    config: Config,
    params: Params,
    train_set: data_lib.Dataset,
    test_set: data_lib.Dataset | None,
    *,
    optimizer: optax.GradientTransformation | None = None,
    log_history: bool = True,
    kernel: bool = False,
    weights_kernel: bool = False,
) -> tuple[Params, Metrics | None, Metrics | dict[str, jax.Array]]:
    """Gradient descent from ``params`` on ``train_set``; pure and jit-able (config's shape fields static).

    Steps run in a ``lax.scan`` of ``config.log_every`` steps nested in a scan over ``config.n_logs`` blocks,
    so metrics are scan outputs and nothing syncs with the host inside the loop.

    Args:
      config: run configuration (``config.gradient`` picks the analytic or autodiff gradient).
      params: initial parameters (p = 0 in the paper).
      train_set: training data, tokens (n_train, T, width).
      test_set: test data, tokens (n_test, T, width); may be None when ``log_history`` is False: the final
        "metrics" are then only the training part, as a dict with the final query Wᵀp under ``"query"`` (the
        caller evaluates a test set of its own).
      optimizer: any optax transformation; default ``optax.sgd(config.lr)``.
      log_history: record metrics after every block; if False only the final metrics are computed (the test
        set is then evaluated once, which is what a sweep needs).
      kernel: train the coefficients α of p = Xᵀα instead of p (W = I and default gradient descent only):
        gradient descent on p is α ← α − lr·w with w the ``loss.token_weights``, and the attention logits
        are Gα with the Gram matrix G = XXᵀ, so a step costs one (nT)² product instead of two nT × width
        ones. The same iterates in exact arithmetic; the reduced engine uses it.
      weights_kernel: with a random W (``attention`` "fixed" or "trained"), p⁽⁰⁾ = 0, the default gradient
        descent and the analytic gradient, train (β, A) of p = W₀Xᵀβ, W = W₀ + W₀Xᵀ A X instead (``jaxbo.kernel``):
        O((nT)²) per step whatever the width. The same iterates in exact arithmetic; the kernel engine uses it.

    Returns:
      (final params, history or None, final ``Metrics`` or its training part).
    """
    optimizer_is_default = optimizer is None
    optimizer = default_optimizer(config) if optimizer is None else optimizer
    train_weights = config.attention == "trained"
    tokens, labels = train_set.tokens, train_set.labels
    # ν is fixed, so γ = Xν is computed once per data set instead of once per step.
    train_gamma = token_scores(params, tokens)
    test_gamma = None if test_set is None else token_scores(params, test_set.tokens)

    def descent_step(carry, _):
        values, opt_state, saturation_totals = carry
        current = with_trainable(params, values)
        attention = jax.nn.softmax(attention_logits(current, tokens), axis=-1)
        saturation_totals = saturation_totals + saturation(attention, train_set.roles)
        if config.gradient == "analytic":
            grads = grad_from_attention(current, tokens, labels, attention, train_gamma, train_weights)
        else:
            grads = autodiff_grad(current, tokens, labels, train_weights)
        updates, opt_state = optimizer.update(grads, opt_state, values)
        return (optax.apply_updates(values, updates), opt_state, saturation_totals), None

    if kernel:
        if not (optimizer_is_default and config.attention == "identity" and config.gradient == "analytic"):
            raise ValueError("kernel=True needs W = I, the default gradient descent and the analytic gradient")
        step = _kernel_step(config, params, train_set, train_gamma)
        values = {"p": jnp.zeros(tokens.shape[0] * tokens.shape[1], jnp.float32)}  # α: p = p⁽⁰⁾ + Xᵀα
        params_of = _kernel_params(params, tokens)

        def view(values):
            return params_of(values), None

    elif weights_kernel:
        if not (optimizer_is_default and config.attention != "identity" and config.gradient == "analytic"):
            raise ValueError(
                "weights_kernel=True needs a random W (attention 'fixed' or 'trained'), the default gradient "
                "descent and the analytic gradient"
            )
        data = weights_kernel_lib.prepare(params.W, tokens)
        step = _weights_kernel_step(config, data, train_set, train_gamma, train_weights)
        size = tokens.shape[0] * tokens.shape[1]
        values = {"beta": jnp.zeros(size, tokens.dtype), "A": jnp.zeros((size, size), tokens.dtype)}

        def view(values):
            p = jnp.matmul(data.M, values["beta"], precision=PRECISION)
            return Params(p=p, nu=params.nu), weights_kernel_lib.query(data, values["beta"], values["A"])

        def params_of(values):
            p, W = weights_kernel_lib.parameters(data, values["beta"], values["A"])
            return Params(p=p, nu=params.nu, W=W)

    else:
        step = descent_step
        values = trainable(params, train_weights)

        def params_of(values):
            return with_trainable(params, values)

        def view(values):
            return params_of(values), None

    def block(carry, _):
        carry, _ = jax.lax.scan(step, carry, length=config.log_every)
        if not log_history:
            return carry, None
        values, _, saturation_totals = carry
        metrics = _evaluate(*_pair(view(values), train_set, train_gamma, test_set, test_gamma, saturation_totals))
        return carry, metrics

    # The carry's last entry is Σ_τ 𝔖⁽ⁱ⁾(τ) per sample, (n,): one add per step, grouped only when logged.
    state = () if kernel or weights_kernel else optimizer.init(values)
    carry = (values, state, jnp.zeros(tokens.shape[0], tokens.dtype))
    (values, _, saturation_totals), history = jax.lax.scan(block, carry, length=config.n_logs)
    final_params = params_of(values)
    metric_params, query = view(values)
    if test_set is None:
        query = effective_query(final_params) if query is None else query
        training = _train_metrics(metric_params, train_set, train_gamma, saturation_totals, query)
        return final_params, history, {**training, "query": query}
    final = _evaluate(metric_params, train_set, train_gamma, test_set, test_gamma, saturation_totals, query)
    return final_params, history, final


def _pair(viewed, train_set, train_gamma, test_set, test_gamma, saturation_totals):
    """``_evaluate``'s arguments from a (params, query) view."""
    params, query = viewed
    return params, train_set, train_gamma, test_set, test_gamma, saturation_totals, query


def _weights_kernel_step(config: Config, data, train_set, train_gamma, train_weights: bool):
    """One gradient step on (β, A) (``jaxbo.kernel``); see ``train(weights_kernel=True)``."""
    n, T = train_set.labels.shape[0], train_set.roles.shape[0]

    def step(carry, _):
        values, state, saturation_totals = carry
        logits = weights_kernel_lib.logits(data, values["beta"], values["A"]).reshape(n, T)
        attention = jax.nn.softmax(logits, axis=-1)
        saturation_totals = saturation_totals + saturation(attention, train_set.roles)
        weights = token_weights(train_set.labels, attention, train_gamma).reshape(-1)
        beta, A = weights_kernel_lib.step(data, values["beta"], values["A"], weights, config.lr, train_weights)
        return ({"beta": beta, "A": A}, state, saturation_totals), None

    return step


def _kernel_step(config: Config, params: Params, train_set, train_gamma):
    """One gradient step on α (p = p⁽⁰⁾ + Xᵀα) with the Gram matrix G = XXᵀ; see ``train(kernel=True)``."""
    n, T = train_set.labels.shape[0], train_set.roles.shape[0]
    flat = train_set.tokens.reshape(n * T, -1)
    gram = jnp.matmul(flat, flat.T, precision=PRECISION)
    initial_logits = jnp.matmul(flat, params.p, precision=PRECISION)

    def step(carry, _):
        alpha, state, saturation_totals = carry
        logits = (initial_logits + jnp.matmul(gram, alpha["p"], precision=PRECISION)).reshape(n, T)
        attention = jax.nn.softmax(logits, axis=-1)
        saturation_totals = saturation_totals + saturation(attention, train_set.roles)
        weights = token_weights(train_set.labels, attention, train_gamma)
        return ({"p": alpha["p"] - config.lr * weights.reshape(-1)}, state, saturation_totals), None

    return step


def _kernel_params(params: Params, tokens: jax.Array):
    """Map α to the parameters with p = p⁽⁰⁾ + Xᵀα, for tokens X (n, T, width)."""
    flat = tokens.reshape(-1, tokens.shape[-1])

    def params_of(alpha):
        return with_trainable(params, {"p": params.p + jnp.matmul(flat.T, alpha["p"], precision=PRECISION)})

    return params_of


def run(
    key: jax.Array,
    config: Config,
    *,
    width: int,
    optimizer: optax.GradientTransformation | None = None,
    log_history: bool = True,
    engine: str = "primal",
    keep_data: bool = False,
) -> Run:
    """Sample data, initialise and train one run; pure and jit-able with ``width``, ``engine`` static.

    ``keep_data`` returns the training and test sets in ``Run.data`` (needs ``log_history``).

    ``engine="primal"`` samples d-dimensional tokens zero-padded to ``width`` >= d; ``"reduced"`` samples the
    exact 2 + n_train·T representation (``width`` is then ignored and d may be any traced value). Without
    ``log_history`` no test set is sampled up front: the final test metrics use
    ``data.sample_test_projected``, an exact draw in 4 coordinates (so they are another test sample than with
    ``log_history``, from the same distribution), which is what makes sweeps cheap.
    """
    if config.model == "encoder":
        return _run_encoder(key, config, width=width, optimizer=optimizer, log_history=log_history, keep_data=keep_data)
    train_key, test_key, weights_key = data_lib.run_keys(key)
    if engine == "reduced":
        width = reduced.width(config)
        train_set = reduced.sample_train(train_key, config)
        test_set = reduced.sample_test(test_key, config) if log_history else None
    else:
        train_set = data_lib.sample(train_key, config, config.n_train, flip=True, width=width)
        test_set = data_lib.sample(test_key, config, config.n_test, flip=False, width=width) if log_history else None
    params = init_params(weights_key, config, width)
    final_params, history, final = train(
        config,
        params,
        train_set,
        test_set,
        optimizer=optimizer,
        log_history=log_history,
        kernel=engine == "reduced" and optimizer is None and config.gradient == "analytic",
        weights_kernel=engine == "kernel",
    )
    if test_set is None:  # final metrics only: ``final`` holds the training metrics and the query Wᵀp
        final = dict(final)
        test_set, query, head = data_lib.sample_test_projected(test_key, config, final.pop("query"), final_params.nu)
        test_params = Params(p=query, nu=head)
        test_metrics = _test_metrics(test_params, test_set, token_scores(test_params, test_set.tokens))
        final = Metrics(**final, **test_metrics)
    log_steps = jnp.arange(1, config.n_logs + 1, dtype=jnp.int32) * config.log_every
    data = (train_set, test_set) if keep_data and log_history else None
    return Run(params=final_params, history=history, final=final, log_steps=log_steps, engine=engine, data=data)


def _run_encoder(key, config: Config, *, width: int, optimizer, log_history: bool, keep_data: bool) -> Run:
    """``run`` for ``Config.model = "encoder"``: d-dimensional data, unpadded (``width`` must be d), the full test
    set sampled (the encoder has no 4-coordinate test draw), every parameter trained."""
    train_key, test_key, weights_key = data_lib.run_keys(key)
    train_set = data_lib.sample(train_key, config, config.n_train, flip=True, width=width)
    test_set = data_lib.sample(test_key, config, config.n_test, flip=False, width=width)
    params = encoder_lib.init_params(weights_key, width, config.mlp_width)
    final_params, history, final = encoder_lib.train(
        config, params, train_set, test_set, optimizer=optimizer, log_history=log_history
    )
    history = None if history is None else _encoder_metrics(history, (config.n_logs,))
    log_steps = jnp.arange(1, config.n_logs + 1, dtype=jnp.int32) * config.log_every
    data = (train_set, test_set) if keep_data and log_history else None
    return Run(
        params=final_params,
        history=history,
        final=_encoder_metrics(final, ()),
        log_steps=log_steps,
        engine="primal",
        data=data,
    )


def _encoder_metrics(values: dict[str, jax.Array], batch: tuple[int, ...]) -> Metrics:
    """``Metrics`` from the encoder's metric dict, NaN in the fields that do not apply (``NOT_FOR_ENCODER``)."""
    shapes = {"saturation_clean": (2,), "saturation_noisy": (2,)}
    missing = {name: jnp.full(batch + shapes.get(name, ()), jnp.nan, jnp.float32) for name in NOT_FOR_ENCODER}
    return Metrics(**values, **missing)


_run_jit = jax.jit(run, static_argnames=("width", "optimizer", "log_history", "engine", "keep_data"))


def as_key(key) -> jax.Array:
    """A typed PRNG key from a key or an int seed; ``TypeError`` for anything else."""
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        return jax.random.key(int(key))
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"key must be a single PRNG key, got a key array of shape {key.shape}")
        return key
    if isinstance(key, jax.Array | np.ndarray) and key.dtype == np.uint32 and key.shape == (2,):
        return jax.random.wrap_key_data(jnp.asarray(key))
    raise TypeError(f"key must be a jax.random.key(...) or an int seed, got {type(key).__name__}")


ENGINES = ("auto", "primal", "reduced", "kernel")


def is_rotation_equivariant(optimizer: optax.GradientTransformation, dim: int = 6, steps: int = 4) -> bool:
    """Whether ``optimizer`` commutes with rotations: update(Rg) = R·update(g) along a gradient sequence.

    Rotation equivariance is what keeps p in the span of the training tokens and makes the reduced engine
    exact: true of gradient descent and (Nesterov) momentum, false of Adam-like per-coordinate methods.
    Probed numerically in float32 on a random orthogonal R.
    """
    key_rotation, key_grads = jax.random.split(jax.random.key(0))
    rotation, _ = jnp.linalg.qr(jax.random.normal(key_rotation, (dim, dim)))
    grads = jax.random.normal(key_grads, (steps, dim))
    plain = {"p": jnp.zeros(dim)}
    rotated = {"p": jnp.zeros(dim)}
    plain_state, rotated_state = optimizer.init(plain), optimizer.init(rotated)
    for g in grads:
        update, plain_state = optimizer.update({"p": g}, plain_state, plain)
        rotated_update, rotated_state = optimizer.update({"p": rotation @ g}, rotated_state, rotated)
        plain = optax.apply_updates(plain, update)
        rotated = optax.apply_updates(rotated, rotated_update)
        if not jnp.allclose(rotation @ update["p"], rotated_update["p"], rtol=1e-4, atol=1e-6):
            return False
    return True


def resolve_engine(config: Config, optimizer: optax.GradientTransformation | None, engine: str) -> str:
    """The engine a run uses: ``"auto"`` means the cheapest exact one.

    - ``"reduced"`` (any d at the cost of d ≈ nT) is exact when W = I (``attention="identity"``) and the
      optimizer is rotation-equivariant (the default gradient descent, momentum);
    - ``"kernel"`` (O((nT)²) per step whatever d; ``jaxbo.kernel``) is exact for a random W (``"fixed"`` or
      ``"trained"``) with the default gradient descent and the analytic gradient;
    - ``"primal"`` (d-dimensional arrays) runs everything else, and is the encoder's only engine
      (``Config.model = "encoder"``: no reduced or kernel form exists for it).
    Forcing ``"reduced"`` or ``"kernel"`` where it is not exact raises ``ValueError`` saying why and what works.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine = {engine!r} is unknown: allowed values are {ENGINES}")
    if config.model == "encoder":
        if engine in ("reduced", "kernel"):
            raise ValueError(
                f"engine = {engine!r} does not exist for Config.model = 'encoder': the encoder's LayerNorms, GELU and "
                "dense Q, K, V have no reduced or kernel form. Use engine='auto' or 'primal'."
            )
        return "primal"
    if engine == "primal":
        return engine
    kernel_reasons = []
    if config.attention == "identity":
        kernel_reasons.append("Config.attention = 'identity' (W = I: use the reduced engine)")
    if optimizer is not None:
        kernel_reasons.append(
            f"optimizer = {type(optimizer).__name__} (the kernel form is plain gradient descent: pass no optimizer)"
        )
    if config.gradient != "analytic":
        kernel_reasons.append(f"Config.gradient = {config.gradient!r} (needs 'analytic')")
    if engine == "kernel":
        if kernel_reasons:
            raise ValueError(
                "engine = 'kernel' is not exact here: " + "; ".join(kernel_reasons) + ". Use 'primal' or 'auto'."
            )
        return engine
    reasons = []
    if config.attention != "identity":
        reasons.append(f"Config.attention = {config.attention!r} (the reduction needs W = I, attention='identity')")
    if optimizer is not None and not is_rotation_equivariant(optimizer):
        reasons.append("the optimizer is not rotation-equivariant (e.g. Adam), so p leaves the span of the tokens")
    if not reasons:
        return "reduced"
    if engine == "reduced":
        raise ValueError("engine = 'reduced' is not exact here: " + "; ".join(reasons) + ". Use 'primal' or 'auto'.")
    return "primal" if kernel_reasons else "kernel"


def checked_engine(
    config: Config, optimizer: optax.GradientTransformation | None, engine: str, log_history: bool = False
) -> str:
    """Validate the arguments every entry point shares, before any tracing, and resolve ``engine``.

    The primal and kernel engines also refuse, before compiling, a d beyond int32 indexing or one run (with
    its history's test set when ``log_history``) beyond this machine's available memory, naming the size;
    ``sweep`` checks each bucket against its devices' memory too (on a CPU, every device's run at once).
    """
    if not isinstance(config, Config):
        raise TypeError(f"config must be a jaxbo.Config, got {type(config).__name__}")
    config.validate()
    if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}")
    engine = resolve_engine(config, optimizer, engine)
    if engine in ("primal", "kernel"):
        check_fits(config, engine, config.d, log_history=log_history)
    return engine


def jit_config(config: Config, engine: str) -> Config:
    """``config`` with its sweepable fields as 0-d numpy arrays, ready to be a ``jit`` argument.

    d is float32 for the reduced engine, where it only counts orthogonal coordinates (so any d up to 2⁵³ is
    accepted; beyond 2²⁴ float32 rounds it to 7 significant digits, a relative change of the χ² degrees of
    freedom below 6e-8), and int32 for the primal engine, whose arrays have d columns.
    """
    d_type = np.float32 if engine == "reduced" else np.int32
    leaves = {name: np.asarray(getattr(config, name), np.float32) for name in SWEEPABLE if name != "d"}
    return with_traced(config, d=np.asarray(config.d, d_type), **leaves)


def make_run(
    config: Config,
    optimizer: optax.GradientTransformation | None = None,
    *,
    log_history: bool = True,
    engine: str = "auto",
):
    """``run(key) -> Run`` for a validated ``config``: pure, so ``jax.jit(jax.vmap(run))(keys)`` trains many
    seeds at once (``keys = jax.random.split(jax.random.key(0), seeds)``). ``engine`` as in ``simulate``.
    """
    engine = checked_engine(config, optimizer, engine, log_history)
    traced = jit_config(config, engine)
    width = reduced.width(config) if engine == "reduced" else config.d

    def run_one(key: jax.Array) -> Run:
        return run(key, traced, width=width, optimizer=optimizer, log_history=log_history, engine=engine)

    return run_one


def simulate(
    key,
    config: Config | None = None,
    optimizer: optax.GradientTransformation | None = None,
    *,
    engine: str = "auto",
    keep_data: bool = False,
) -> Run:
    """Train the paper's model once: sample data, run gradient descent from p = 0, record metrics.

    With ``Config(model="encoder")`` the model is the appendix's one-layer Transformer encoder
    (``jaxbo.encoder``): every parameter trained from PyTorch's default initialisation, ``Run.params`` an
    ``EncoderParams``, the metrics that belong to p NaN (``Metrics``).

    Args:
      key: ``jax.random.key`` (or an int seed); the same key gives a bit-identical ``Run``.
      config: run configuration (default ``Config()``, the authors' settings); validated before tracing.
      optimizer: any ``optax.GradientTransformation``; default ``optax.sgd(config.lr)``. Pass the same object
        again to reuse the compiled program.
      engine: ``"primal"`` (d-dimensional tokens), ``"reduced"`` (the exact 2 + n_train·T representation,
        equal in distribution; see ``jaxbo.reduced``), ``"kernel"`` (W and p trained in kernel form: the same
        iterates as primal, O((nT)²) per step; ``jaxbo.kernel``) or ``"auto"`` (the cheapest exact one, see
        ``resolve_engine``). ``Run.engine`` records the choice.
      keep_data: also return the training and test sets (``Run.data``), e.g. for ``plot.selected_tokens``.

    Returns:
      A ``Run`` with final parameters, metric histories (n_logs rows) and final metrics. With the reduced
      engine, ``params`` live in the 2 + n_train·T coordinates (``Run.coordinates``; p[0], p[1] on e₁, e₂;
      ‖p‖ preserved); ``jaxbo.reduced.lift`` maps them to R^d.
    """
    config = Config() if config is None else config
    engine = checked_engine(config, optimizer, engine, log_history=True)
    width = reduced.width(config) if engine == "reduced" else config.d
    return _run_jit(
        as_key(key), jit_config(config, engine), width=width, optimizer=optimizer, engine=engine, keep_data=keep_data
    )
