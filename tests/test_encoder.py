"""The one-layer encoder against an independent float64 numpy encoder, jax.grad, and the attention model."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbo
from jaxbo import data, encoder_model, engines, loss, memory, model, plan, train

D, MLP = 12, 16
STEP = 1e-5  # central differences in float64: truncation error ~STEP², rounding ~1e-16/STEP


@pytest.fixture(scope="module")
def config():
    return jaxbo.Config(
        model="encoder", mlp_width=MLP, d=D, n_train=6, T=4, n_test=8, steps=4, log_every=2, signal_norm=3.0
    )


@pytest.fixture(scope="module")
def dataset(config):
    return data.sample(jax.random.key(1), config, config.n_train, flip=True)


def _perturbed(params: encoder_model.EncoderParams, key) -> encoder_model.EncoderParams:
    """Every parameter moved off its initial value, so LayerNorm scales and shifts are tested too."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    moved = [leaf + 0.3 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(tree, moved)


@pytest.fixture(scope="module")
def params(config):
    return _perturbed(encoder_model.init_params(jax.random.key(2), D, MLP), jax.random.key(3))


def numpy_encoder(params, tokens, *, normalise=True, residual=True, cls_key=True):
    """The encoder as PyTorch evaluates it, in float64: every token's query, attention and MLP, then [CLS].

    Returns (f (n,), [CLS]'s attention on x_1 … x_T (n, T)).
    """
    lower = params.lower
    p = {name: np.asarray(value, np.float64) for name, value in vars(params).items() if name != "lower"}
    x = np.asarray(tokens, np.float64)
    n, _, d = x.shape
    sequence = np.concatenate([np.broadcast_to(p["cls"], (n, 1, d)), x], axis=1)  # (n, T + 1, d)
    for block in range(0 if lower is None else lower.query.shape[0]):  # bottom block first
        weights = {name: np.asarray(value[block], np.float64) for name, value in vars(lower).items()}
        sequence = numpy_block(weights, sequence, normalise=normalise, residual=residual, cls_key=cls_key)[0]
    _, attention, hidden = numpy_block(p, sequence, normalise=normalise, residual=residual, cls_key=cls_key)
    final = numpy_norm(hidden, p["final_norm_scale"], p["final_norm_bias"], normalise)
    return final[:, 0] @ p["head"] + p["head_bias"], attention[:, 0, 1:]


def numpy_norm(v, scale, shift, normalise=True):
    if not normalise:
        return v
    mean = v.mean(-1, keepdims=True)
    variance = ((v - mean) ** 2).mean(-1, keepdims=True)
    return (v - mean) / np.sqrt(variance + 1e-5) * scale + shift


def numpy_block(p, sequence, *, normalise=True, residual=True, cls_key=True):
    """One pre-LN block on every token, float64: (its output, attention (n, T + 1, T + 1), output)."""
    d = sequence.shape[-1]

    def norm(v, scale, shift):
        return numpy_norm(v, scale, shift, normalise)

    def gelu(v):
        return 0.5 * v * (1.0 + np.vectorize(math.erf)(v / math.sqrt(2.0)))

    h = norm(sequence, p["attention_norm_scale"], p["attention_norm_bias"])
    q, k, v = h @ p["query"].T, h @ p["key"].T, h @ p["value"].T
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(d)  # (n, T + 1, T + 1), every query
    if not cls_key:
        scores[:, :, 0] = -np.inf
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    attention = scores / scores.sum(-1, keepdims=True)
    out = attention @ v
    hidden = out + sequence if residual else out
    if p["mlp_in"].shape[0]:
        inner = norm(hidden, p["mlp_norm_scale"], p["mlp_norm_bias"]) @ p["mlp_in"].T + p["mlp_in_bias"]
        branch = gelu(inner) @ p["mlp_out"].T + p["mlp_out_bias"]
        hidden = hidden + branch if residual else branch
    return hidden, attention, hidden


@pytest.mark.parametrize(
    "switches",
    [{}, {"residual": False}, {"cls_key": False}, {"normalise": False, "residual": False}],
    ids=["authors", "no-residual", "no-cls-key", "no-norm-no-residual"],
)
def test_forward_matches_a_float64_numpy_encoder(params, dataset, switches):
    expected_f, expected_attention = numpy_encoder(params, dataset.tokens, **switches)
    with jax.enable_x64():
        params64 = jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float64)), params)
        f, attention, _ = encoder_model.forward(
            params64, jnp.asarray(np.asarray(dataset.tokens, np.float64)), **switches
        )
        assert f.dtype == jnp.float64
        np.testing.assert_allclose(f, expected_f, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(attention, expected_attention, rtol=1e-10, atol=1e-12)
    f32, attention32, _ = encoder_model.forward(params, dataset.tokens, **switches)
    np.testing.assert_allclose(f32, expected_f, rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(attention32, expected_attention, rtol=2e-4, atol=1e-6)


def test_without_mlp_branch_matches_numpy(config, dataset):
    params = _perturbed(encoder_model.init_params(jax.random.key(4), D, 0), jax.random.key(5))
    assert params.mlp_width == 0
    expected_f, _ = numpy_encoder(params, dataset.tokens)
    f, _, _ = encoder_model.forward(params, dataset.tokens)
    np.testing.assert_allclose(f, expected_f, rtol=2e-4, atol=2e-4)


def test_gradient_matches_float64_finite_differences_of_the_numpy_encoder(params, dataset):
    """jax.grad of the loss, along random directions, against central differences of the numpy encoder_model."""
    labels = np.asarray(dataset.labels, np.float64)

    def numpy_loss(p):
        f, _ = numpy_encoder(p, dataset.tokens)
        return np.mean(np.log1p(np.exp(-labels * f)))

    with jax.enable_x64():
        params64 = jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float64)), params)
        tokens64 = jnp.asarray(np.asarray(dataset.tokens, np.float64))
        gradient = jax.jit(jax.grad(encoder_model.empirical_loss))(params64, tokens64, jnp.asarray(labels))
        for seed in range(3):
            leaves, tree = jax.tree.flatten(params64)
            keys = jax.random.split(jax.random.key(10 + seed), len(leaves))
            direction = jax.tree.unflatten(
                tree, [jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys, strict=True)]
            )
            plus = jax.tree.map(lambda a, v: a + STEP * v, params64, direction)
            minus = jax.tree.map(lambda a, v: a - STEP * v, params64, direction)
            numeric = (numpy_loss(plus) - numpy_loss(minus)) / (2 * STEP)
            pairs = zip(jax.tree.leaves(gradient), jax.tree.leaves(direction), strict=True)
            analytic = sum(jnp.vdot(g, v) for g, v in pairs)
            np.testing.assert_allclose(float(analytic), numeric, rtol=1e-6, atol=1e-9)


def trained(config, params, dataset, optimizer=None):
    """(params, history, final) of the encoder engine's descent from ``params`` on ``dataset`` (also its test set)."""
    trainer = engines.encoder.encoder_trainer(config, params, dataset, dataset, optimizer)
    return train.train_from(config, trainer, dataset, log_history=False)


def test_a_training_step_is_one_gradient_descent_step(config, params, dataset):
    one_step = config.replace(steps=1, log_every=1)
    stepped, _, _ = trained(one_step, params, dataset)
    gradient = jax.jit(jax.grad(encoder_model.empirical_loss))(params, dataset.tokens, dataset.labels)
    expected = jax.tree.map(lambda a, g: a - config.lr * g, params, gradient)
    for name in (field.name for field in dataclasses.fields(params) if field.name != "lower"):
        np.testing.assert_allclose(getattr(stepped, name), getattr(expected, name), rtol=1e-6, atol=1e-7)
    assert not np.allclose(stepped.query, params.query), "the step must move the attention weights"


def _reduced_encoder(p, W, nu, mlp_width=0):
    """Encoder parameters that make it the paper's model: no MLP, W_Q = √d·I, W_K = W, W_V = I, head ν."""
    d = p.shape[0]
    base = encoder_model.init_params(jax.random.key(0), d, mlp_width)
    return dataclasses.replace(
        base, cls=p, query=jnp.sqrt(d) * jnp.eye(d), key=W, value=jnp.eye(d), head=nu, head_bias=jnp.zeros(())
    )


def test_known_answer_reduces_to_the_attention_model(config, dataset):
    """MLP and residual branches off, LayerNorms off, [CLS] not a key, value path and head fixed:
    f(X) = νᵀXᵀsoftmax(X W_Kᵀ c), the attention model with p = c, W = W_K, in value and in gradient."""
    attention_config = config.replace(model="attention", attention="trained")
    p = 0.5 * jax.random.normal(jax.random.key(6), (D,))
    W = model.random_weights(jax.random.key(7), attention_config, D) + 0.1 * jax.random.normal(
        jax.random.key(8), (D, D)
    )
    paper = model.Params(p=p, nu=model.head(attention_config, D), W=W)
    reduced = _reduced_encoder(p, W, paper.nu)
    switches = dict(normalise=False, residual=False, cls_key=False)
    f_encoder, attention_encoder, _ = encoder_model.forward(reduced, dataset.tokens, **switches)
    f_paper, attention_paper = model.forward(paper, dataset.tokens)
    np.testing.assert_allclose(f_encoder, f_paper, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(attention_encoder, attention_paper, rtol=1e-5, atol=1e-7)

    def encoder_loss(trainable):
        values = dataclasses.replace(reduced, cls=trainable["p"], key=trainable["W"])
        f, _, _ = encoder_model.forward(values, dataset.tokens, **switches)
        return jnp.mean(loss.logistic_loss(dataset.labels * f))

    gradient = jax.grad(encoder_loss)({"p": p, "W": W})
    closed_form = loss.analytic_grad(paper, dataset.tokens, dataset.labels, train_weights=True)
    np.testing.assert_allclose(gradient["p"], closed_form["p"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gradient["W"], closed_form["W"], rtol=1e-4, atol=1e-6)


def test_initialisation_is_pytorchs_default():
    params = encoder_model.init_params(jax.random.key(9), 64, 256)
    for name, fan_in in (("query", 64), ("key", 64), ("value", 64), ("mlp_in", 64), ("mlp_out", 256), ("head", 64)):
        weights = np.asarray(getattr(params, name))
        bound = 1 / math.sqrt(fan_in)
        assert np.abs(weights).max() <= bound, name
        # uniform on ±bound: variance bound²/3, checked to 5 standard errors
        assert abs(weights.var() / (bound**2 / 3) - 1) < 5 * math.sqrt(0.8 / weights.size), name
    for name in ("attention_norm", "mlp_norm", "final_norm"):
        np.testing.assert_array_equal(getattr(params, f"{name}_scale"), 1.0)
        np.testing.assert_array_equal(getattr(params, f"{name}_bias"), 0.0)
    assert abs(float(np.std(params.cls)) - 1.0) < 0.3  # torch.randn
    narrower = encoder_model.init_params(jax.random.key(9), 64, 32)
    np.testing.assert_array_equal(narrower.query, params.query)  # the MLP width does not move other draws


def test_simulate_and_sweep_run_the_encoder_with_the_same_numbers(config):
    # One d: a sweep's encoder groups are unpadded, one per d (test_plan_gives_each_d_its_own_unpadded_group...).
    grid = {"d": [D + 4], "signal_norm": [3.0, 8.0]}
    result = jaxbo.sweep(grid, config=config, seeds=2, key=5, progress=False)
    assert [group["width"] for group in result.metadata["plan"]["groups"]] == [D + 4]
    coordinates = {"d": D + 4, "signal_norm": 8.0}
    alone = jaxbo.simulate(jaxbo.sweep_module.run_key(5, 1, coordinates), config.replace(**coordinates))
    assert alone.coordinates.startswith("encoder: width d = ")
    assert alone.history.train_loss.shape == (config.n_logs,)
    for name in ("p_norm", "cos_mu1", "saturation_clean"):
        assert np.isnan(getattr(alone.final, name)).all(), name
    assert np.isfinite(alone.final.max_attention) and 0 < alone.final.max_attention <= 1
    for name in ("train_loss", "test_loss", "noisy_fit", "max_attention"):
        np.testing.assert_allclose(result.final[name][0, 1, 1], getattr(alone.final, name), rtol=1e-5, atol=1e-6)


def test_wrong_engines_and_sizes_fail_before_compiling(config):
    for engine in ("reduced", "kernel"):
        with pytest.raises(ValueError, match=r"engine = '.*' does not exist for Config\.model = 'encoder'"):
            jaxbo.simulate(0, config, engine=engine)
        with pytest.raises(ValueError, match=r"Config\.model = 'encoder'"):
            jaxbo.sweep({"d": [D]}, config=config, engine=engine, progress=False)
    with pytest.raises(ValueError, match=r"Config\.d = 400000 with Config\.mlp_width = 16 needs about .* GiB"):
        jaxbo.simulate(0, config.replace(d=400_000))
    with pytest.raises(ValueError, match=r"Config\.mlp_width = 10000000000 needs about"):
        jaxbo.sweep({"d": [D]}, config=config.replace(mlp_width=10**10), progress=False)
    with pytest.raises(ValueError, match=r"Config.mlp_width = -1 is out of range"):
        config.replace(mlp_width=-1)
    with pytest.raises(ValueError, match=r"Config.model = 'transformer' is unknown"):
        config.replace(model="transformer")


def test_plan_gives_each_d_its_own_unpadded_group_sized_by_memory(config):
    big = config.replace(mlp_width=2000, n_test=1000)
    axes = {"d": np.array([250, 1000, 2000]), "signal_norm": np.array([5.0, 20.0])}
    gpu = memory.Backend(platform="gpu", device_count=1, memory_bytes=80 << 30)
    planned = plan.make_plan(axes, big, seeds=10, engine="encoder", histories=False, backend=gpu)
    assert [group.width for group in planned.groups] == [250, 1000, 2000]
    per_run = [plan.bytes_per_run(big, "encoder", width, False) for width in (250, 1000, 2000)]
    assert per_run[2] > 4 * 3 * encoder_model.parameter_count(2000, 2000)  # parameters ×3 and data
    for group, size in zip(planned.groups, per_run, strict=True):
        assert group.chunk_size * size <= 0.5 * (80 << 30) or group.chunk_size == 1
    assert planned.groups[0].chunk_size == 20  # all of d = 250 in one call


@pytest.mark.parametrize(("d", "mlp_width"), [(256, 512), pytest.param(512, 1024, marks=pytest.mark.slow)])
def test_flops_per_step_agree_with_xlas_count_of_a_compiled_training_step(config, d, mlp_width):
    # An independent count: XLA's cost analysis of one jax.grad step (every op, elementwise ones included), of
    # which the formula's matrix products must be nearly all.
    wide = config.replace(n_train=20, T=8, d=d, mlp_width=mlp_width, steps=1, log_every=1)
    params = encoder_model.init_params(jax.random.key(0), d, mlp_width)
    dataset = data.sample(jax.random.key(1), wide, wide.n_train, flip=True)

    def step(params, tokens, labels):
        gradient = jax.grad(encoder_model.empirical_loss)(params, tokens, labels)
        return jax.tree.map(lambda a, g: a - wide.lr * g, params, gradient)

    cost = jax.jit(step).lower(params, dataset.tokens, dataset.labels).compile().cost_analysis()
    counted = (cost[0] if isinstance(cost, list) else cost)["flops"]
    formula = encoder_model.flops_per_step(wide, d)
    assert 0.85 * counted <= formula <= 1.05 * counted, (formula, counted)


def test_any_optax_optimizer_trains_the_whole_pytree(config, dataset, params):
    stepped, _, final = trained(config.replace(steps=2, log_every=2), params, dataset, optax.adam(1e-2))
    assert all(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(stepped), jax.tree.leaves(params), strict=True))
    assert np.isfinite(final.train_loss)


@pytest.mark.parametrize("layers", [2, pytest.param(3, marks=pytest.mark.slow)])
@pytest.mark.parametrize(
    "switches", [{}, {"normalise": False, "residual": False}, {"cls_key": False}], ids=["authors", "bare", "no-cls-key"]
)
def test_deeper_encoders_match_a_float64_numpy_encoder_that_evaluates_every_token(layers, switches, dataset):
    params = encoder_model.init_params(jax.random.key(12), D, MLP, layers)
    params = _perturbed(params, jax.random.key(13))
    assert params.layers == layers and params.lower.query.shape == (layers - 1, D, D)
    expected_f, expected_attention = numpy_encoder(params, dataset.tokens, **switches)
    with jax.enable_x64():
        params64 = jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float64)), params)
        f, attention, _ = encoder_model.forward(
            params64, jnp.asarray(np.asarray(dataset.tokens, np.float64)), **switches
        )
        np.testing.assert_allclose(f, expected_f, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(attention, expected_attention, rtol=1e-10, atol=1e-12)


def test_one_layer_is_the_appendix_encoder_and_its_top_block_is_drawn_alike():
    one = encoder_model.init_params(jax.random.key(14), D, MLP)
    three = encoder_model.init_params(jax.random.key(14), D, MLP, 3)
    assert one.lower is None and one.layers == 1
    for name in ("cls", "query", "key", "value", "mlp_in", "head"):
        np.testing.assert_array_equal(getattr(three, name), getattr(one, name))
    assert not np.allclose(three.lower.query[0], three.lower.query[1])  # each lower block its own draw
    count = sum(leaf.size for leaf in jax.tree.leaves(three))
    assert count == encoder_model.parameter_count(D, MLP, 3)


def test_lower_block_gradients_match_central_differences(dataset):
    with jax.enable_x64():
        params = encoder_model.init_params(jax.random.key(15), D, MLP, 2)
        params = jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float64)), _perturbed(params, jax.random.key(16)))
        tokens = jnp.asarray(np.asarray(dataset.tokens, np.float64))
        gradient = jax.jit(jax.grad(encoder_model.empirical_loss))(params, tokens, dataset.labels)
        direction = jax.tree.map(lambda a: jnp.zeros_like(a), params)
        for name in ("query", "mlp_in", "attention_norm_scale"):
            along = jax.random.normal(jax.random.key(17), getattr(params.lower, name).shape, jnp.float64)
            lower = dataclasses.replace(direction.lower, **{name: along})
            step = dataclasses.replace(direction, lower=lower)
            plus = jax.tree.map(lambda a, v: a + 1e-6 * v, params, step)
            minus = jax.tree.map(lambda a, v: a - 1e-6 * v, params, step)
            numeric = (
                encoder_model.empirical_loss(plus, tokens, dataset.labels)
                - encoder_model.empirical_loss(minus, tokens, dataset.labels)
            ) / 2e-6
            analytic = jnp.vdot(getattr(gradient.lower, name), along)
            np.testing.assert_allclose(float(analytic), float(numeric), rtol=1e-6, atol=1e-10, err_msg=name)


@pytest.mark.slow  # two compiles of a two-block encoder
def test_deeper_encoders_train_through_sweep_and_are_planned_by_their_size(config):
    deep = config.replace(layers=2)
    run = jaxbo.simulate(0, deep)
    assert run.params.layers == 2 and np.isfinite(run.final.train_loss)
    result = jaxbo.sweep({"d": [D]}, seeds=2, config=deep, progress=False)
    assert result.final["train_loss"].shape == (1, 2)
    assert plan.bytes_per_run(deep, "encoder", 512, False) > plan.bytes_per_run(config, "encoder", 512, False)
    gpu = memory.Backend(platform="gpu", device_count=1, memory_bytes=1 << 30)
    with pytest.raises(ValueError, match=r"Config\.d = 4000 with Config\.mlp_width = .* and Config\.layers = 6"):
        plan.check_fits(config.replace(layers=6, mlp_width=2000), "encoder", 4000, False, gpu)
    with pytest.raises(ValueError, match=r"Config\.layers = 0 is out of range"):
        config.replace(layers=0)
    assert "2-layer Transformer encoder" in jaxbo.plot.model_name(deep)


def test_the_encoder_engine_is_named_for_what_it_is_and_answers_to_its_old_name():
    config = jaxbo.Config(model="encoder", mlp_width=8, d=8, n_train=4, T=4, n_test=8, steps=2, log_every=1)
    assert engines.resolve(config, None, "auto").name == "encoder"
    with pytest.warns(DeprecationWarning, match="now engine = 'encoder'"):
        assert engines.resolve(config, None, "primal") is engines.resolve(config, None, "encoder")
    assert engines.resolve(config, None, "encoder").store_name == "primal"  # stores written by 0.4 resume
