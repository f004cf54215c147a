"""The paper's open questions as settings of the one model: several heads (a head axis of ``model.Params``), a
trained head, a random start."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbo
from jaxbo import data, engines, heads, loss, metrics, model, train
from jaxbo.loss import logistic_derivative

SMALL = jaxbo.Config(n_train=8, T=4, d=30, n_test=64, steps=60, log_every=20, signal_norm=4.0, noise_rate=0.25)


def random_heads(config, key, count, width, trained_weights=False, scale=0.3):
    keys = jax.random.split(key, 3)
    p = scale * jax.random.normal(keys[0], (count, width))
    nu = model.head(config, width) / count + 0.05 * jax.random.normal(keys[1], (count, width))
    W = None
    if trained_weights:
        W = jnp.eye(width) + 0.1 * jax.random.normal(keys[2], (count, width, width))
    return model.Params(p=p, nu=nu, W=W)


def test_one_head_is_the_paper_model():
    dataset = data.sample(jax.random.key(0), SMALL, SMALL.n_train, flip=True)
    p = 0.4 * jax.random.normal(jax.random.key(1), (SMALL.d,))
    one = model.Params(p=p, nu=model.head(SMALL, SMALL.d))
    stacked = model.Params(p=p[None], nu=one.nu[None])
    assert (one.heads, stacked.heads) == (1, 1)
    np.testing.assert_allclose(
        model.forward(stacked, dataset.tokens)[0], model.forward(one, dataset.tokens)[0], rtol=1e-5, atol=1e-7
    )
    totals = jnp.abs(jax.random.normal(jax.random.key(2), (SMALL.n_train,)))
    expected = metrics.attention_train_metrics(one, dataset, model.token_scores(one, dataset.tokens), totals)
    got = metrics.attention_train_metrics(stacked, dataset, model.token_scores(stacked, dataset.tokens), totals)
    for name, value in got.items():
        np.testing.assert_allclose(value, expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
    grads = loss.analytic_grad(stacked, dataset.tokens, dataset.labels, False, train_head=True)
    by_one = loss.analytic_grad(one, dataset.tokens, dataset.labels, False)["p"]
    np.testing.assert_allclose(grads["p"][0], by_one, rtol=1e-5, atol=1e-8)


def test_the_04_names_still_work():
    config = SMALL.replace(heads=2, train_head=True)
    dataset = data.sample(jax.random.key(0), config, config.n_train, flip=True)
    params = heads.init_params(jax.random.key(1), config, config.d)
    assert heads.HeadParams is model.Params and params.p.shape == (2, config.d)
    np.testing.assert_allclose(heads.forward(params, dataset.tokens), model.forward(params, dataset.tokens)[0])
    old = heads.analytic_grad(params, dataset.tokens, dataset.labels, False, True)
    new = loss.analytic_grad(params, dataset.tokens, dataset.labels, False, train_head=True)
    assert sorted(old) == ["nu", "p"]
    for name in old:
        np.testing.assert_array_equal(old[name], new[name])


@pytest.mark.parametrize("engine", ["primal", "reduced"])
def test_h_heads_from_zero_are_one_head_at_step_size_lr_over_h(engine):
    count = 3
    several = jaxbo.simulate(5, SMALL.replace(heads=count), engine=engine)
    one = jaxbo.simulate(5, SMALL.replace(lr=SMALL.lr / count), engine=engine)
    for h in range(count):
        np.testing.assert_allclose(several.params.p[h], one.params.p, rtol=1e-4, atol=1e-7)
    for name in ("train_loss", "test_loss", "p_norm", "cos_mu1", "attention_clean", "saturation_clean", "gap_clean"):
        np.testing.assert_allclose(
            getattr(several.history, name), getattr(one.history, name), rtol=1e-4, atol=1e-6, err_msg=name
        )
    np.testing.assert_array_equal(several.history.train_accuracy, one.history.train_accuracy)
    np.testing.assert_allclose(several.final.head_attention, np.repeat(one.final.head_attention, count, 0), atol=1e-5)


def central_differences(loss, params, direction, step=1e-6):
    plus = jax.tree.map(lambda a, v: a + step * v, params, direction)
    minus = jax.tree.map(lambda a, v: a - step * v, params, direction)
    return (loss(plus) - loss(minus)) / (2 * step)


@pytest.mark.parametrize("trained_weights", [False, True])
def test_every_gradient_matches_central_differences_in_float64(trained_weights):
    with jax.enable_x64(True):
        config = SMALL.replace(heads=2, train_head=True, attention="trained" if trained_weights else "identity")
        dataset = data.sample(jax.random.key(3), config, config.n_train, flip=True)
        tokens = jnp.asarray(dataset.tokens, jnp.float64)
        params = jax.tree.map(
            lambda a: jnp.asarray(a, jnp.float64), random_heads(config, jax.random.key(4), 2, 30, trained_weights)
        )
        grads = loss.analytic_grad(params, tokens, dataset.labels, trained_weights, train_head=True)
        for index, name in enumerate(grads):
            direction = jax.random.normal(jax.random.key(10 + index), getattr(params, name).shape, jnp.float64)

            def loss_along(values, name=name):
                return loss.empirical_loss(values, tokens, dataset.labels)

            zero = jax.tree.map(jnp.zeros_like, params)
            numeric = central_differences(loss_along, params, dataclasses.replace(zero, **{name: direction}))
            analytic = float(jnp.vdot(grads[name], direction))
            np.testing.assert_allclose(analytic, float(numeric), rtol=1e-6, atol=1e-10, err_msg=name)


def test_analytic_head_gradient_equals_jax_grad():
    config = SMALL.replace(heads=3, train_head=True)
    dataset = data.sample(jax.random.key(5), config, config.n_train, flip=True)
    params = random_heads(config, jax.random.key(6), 3, 30)
    analytic = loss.analytic_grad(params, dataset.tokens, dataset.labels, False, train_head=True)
    autodiff = loss.autodiff_grad(params, dataset.tokens, dataset.labels, False, train_head=True)
    assert sorted(analytic) == sorted(autodiff) == ["nu", "p"]
    for name in analytic:
        np.testing.assert_allclose(analytic[name], autodiff[name], rtol=1e-4, atol=1e-7, err_msg=name)
    # The closed form written out for one head's ν: Σ_{i,t} c_i s_{h,i,t} x_{i,t}, c_i = ℓ′(ỹf)ỹ/n.
    f, attention = model.forward(params, dataset.tokens)
    c = logistic_derivative(dataset.labels * f) * dataset.labels / config.n_train
    by_hand = np.einsum("n,nt,ntd->d", c, attention[1], dataset.tokens)
    np.testing.assert_allclose(analytic["nu"][1], by_hand, rtol=1e-4, atol=1e-7)


def exact_reduction(config, key):
    """Primal data and the same data in reduced coordinates (as in tests/test_reduced.py)."""
    primal_train, primal_test = data.sample_train_test(key, config)
    N = config.n_train * config.T
    noise = np.asarray(primal_train.tokens[..., 2:], np.float64).reshape(N, config.d - 2)
    q, r = np.linalg.qr(noise.T)
    rows = r.T.reshape(config.n_train, config.T, N)
    test_noise = np.asarray(primal_test.tokens[..., 2:], np.float64) @ q

    def as_reduced(dataset, rest):
        tokens = np.concatenate([dataset.tokens[..., :2], rest], -1)
        return dataclasses.replace(dataset, tokens=jnp.asarray(tokens, jnp.float32))

    return (primal_train, primal_test), (as_reduced(primal_train, rows), as_reduced(primal_test, test_noise))


@pytest.mark.parametrize("variant", [{"train_head": True}, {"heads": 2, "train_head": True}])
def test_the_reduced_kernel_form_is_exact_on_the_reduction_of_a_primal_data_set(variant):
    config = SMALL.replace(d=60, **variant)
    (primal_train, primal_test), (reduced_train, reduced_test) = exact_reduction(config, jax.random.key(7))
    keys = engines.RunKeys(*data.run_keys(jax.random.key(0)))
    N = config.n_train * config.T

    def start(width):
        nu = jnp.broadcast_to(model.head(config, width) / config.heads, (config.heads, width))
        return model.Params(p=jnp.zeros((config.heads, width)), nu=nu)

    primal = engines.primal.descent_trainer(config, keys, start(config.d), primal_train, primal_test, None)
    kernel = engines.reduced.gram_trainer(config, keys, start(2 + N), reduced_train, reduced_test)
    p_primal, by_primal, _ = jax.jit(lambda: train.train_from(config, primal, primal_train))()
    p_reduced, by_kernel, _ = jax.jit(lambda: train.train_from(config, kernel, reduced_train))()
    for name in ("train_loss", "test_loss", "p_norm", "cos_mu1", "attention_noisy", "head_attention", "gap_noisy"):
        np.testing.assert_allclose(
            getattr(by_kernel, name), getattr(by_primal, name), rtol=2e-4, atol=2e-6, err_msg=name
        )
    np.testing.assert_array_equal(by_kernel.train_accuracy, by_primal.train_accuracy)
    np.testing.assert_allclose(p_reduced.nu[:, :2], p_primal.nu[:, :2], rtol=1e-4, atol=1e-7)  # ν on μ₁, μ₂


def welch(a, b):
    """Welch's t of the difference of two means; 0 when both samples are constant and equal."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    error = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    if error == 0:
        return 0.0 if a.mean() == b.mean() else np.inf
    return (a.mean() - b.mean()) / error


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant",
    [{"query_init_std": 0.5}, {"heads": 3, "query_init_std": 0.3, "train_head": True}],
    ids=["random start", "3 heads, random start, trained head"],
)
def test_reduced_engine_has_the_primal_law_with_a_random_start(variant):
    # d = 200 > 2 + N = 34: the start's part orthogonal to the data (K = 166 dimensions) matters for the test draw.
    config = SMALL.replace(d=200, steps=200, log_every=200, n_test=200, **variant)
    seeds = 192
    keys = jax.random.split(jax.random.key(11), seeds)
    finals = {}
    for engine in ("primal", "reduced"):
        run = train.make_run(config, log_history=False, engine=engine)
        finals[engine] = jax.jit(jax.vmap(lambda key, run=run: run(key).final))(keys)
    for name in ("train_loss", "test_loss", "test_accuracy", "p_norm", "noisy_fit", "max_attention"):
        statistic = welch(getattr(finals["primal"], name), getattr(finals["reduced"], name))
        assert abs(statistic) < 4.0, (name, statistic)  # 4 standard errors of the difference of two means


def test_route_and_specialisation_statistics_are_consistent():
    config = SMALL.replace(heads=2, query_init_std=0.5, train_head=True, steps=100, log_every=50, lr=0.5)
    run = jaxbo.simulate(2, config)
    final = run.final
    assert final.head_attention.shape == (2, 2, 4)
    np.testing.assert_allclose(np.sum(final.head_attention, axis=-1), 1.0, rtol=1e-5)
    assert 0 <= final.fit_by_attention + final.fit_by_head <= final.noisy_fit + 1e-6
    result = jaxbo.sweep({"signal_norm": [2.0, 8.0]}, seeds=2, config=config, progress=False)
    assert result.final["head_attention"].shape == (2, 2, 2, 2, 4)
    assert result.metadata["engine"] == "reduced"


@pytest.mark.parametrize("engine", ["primal", "reduced"])
def test_head_noise_share_is_the_share_of_the_noisy_margin_the_heads_noise_part_supplies(engine):
    """Recomputed in float64 numpy from the run's own parameters and data: the median over fitted noisy samples
    of ỹ Σ_h Σ_t s x_tᵀν_h⊥ / ỹ f (ν_h⊥: every coordinate but the first two); 0 for the paper's fixed head."""
    config = SMALL.replace(heads=2, query_init_std=0.3, train_head=True, steps=200, log_every=100, lr=0.5, d=60)
    run = jaxbo.simulate(4, config, engine=engine, keep_data=True)
    train_set = run.data[0]
    tokens, labels = np.asarray(train_set.tokens, np.float64), np.asarray(train_set.labels, np.float64)
    p, nu = np.asarray(run.params.p, np.float64), np.asarray(run.params.nu, np.float64)
    logits = np.einsum("ntd,hd->hnt", tokens, p)
    attention = np.exp(logits - logits.max(-1, keepdims=True))
    attention /= attention.sum(-1, keepdims=True)
    margin = labels * np.einsum("hnt,ntd,hd->n", attention, tokens, nu)
    outside = labels * np.einsum("hnt,ntd,hd->n", attention, tokens[..., 2:], nu[:, 2:])
    counted = (margin > 0) & np.asarray(train_set.noisy_mask)
    assert counted.any(), "the run must fit some noisy sample for the check to mean anything"
    expected = np.median(outside[counted] / margin[counted])
    assert 0.05 < abs(expected)  # a trained head does supply part of the margin here
    np.testing.assert_allclose(float(run.final.head_noise_share), expected, rtol=1e-3, atol=1e-4)
    fixed = jaxbo.simulate(4, SMALL.replace(lr=0.5, steps=200, log_every=100), engine=engine).final
    assert float(fixed.head_noise_share) == 0.0 or (np.isnan(fixed.head_noise_share) and fixed.noisy_fit == 0)


def test_bad_variants_fail_before_compiling():
    with pytest.raises(ValueError, match=r"Config\.heads = 0 is out of range"):
        SMALL.replace(heads=0)
    with pytest.raises(ValueError, match=r"Config\.query_init_std = nan is out of range"):
        SMALL.replace(query_init_std=float("nan"))
    with pytest.raises(ValueError, match=r"Config\.query_init_std = -0\.1 is out of range"):
        SMALL.replace(query_init_std=-0.1)
    with pytest.raises(TypeError, match=r"Config\.train_head = 'yes' must be True or False"):
        SMALL.replace(train_head="yes")
    with pytest.raises(ValueError, match=r"Config\.model = 'encoder' with heads = 2"):
        SMALL.replace(model="encoder", heads=2)
    trained = SMALL.replace(attention="trained", train_head=True)
    with pytest.raises(
        ValueError, match=r"engine = 'kernel' is not exact here: .*Config\.heads = 1, train_head = True"
    ):
        jaxbo.simulate(0, trained, engine="kernel")
    assert engines.resolve(trained, None, "auto").name == "primal"
    assert engines.resolve(SMALL.replace(heads=4), None, "auto").name == "reduced"
    with pytest.raises(ValueError, match="not rotation-equivariant"):
        jaxbo.sweep({"d": [30]}, config=SMALL.replace(heads=2), engine="reduced", optimizer=optax.adam(0.1))


def test_command_line_settings_reach_the_variants():
    from jaxbo.cli import parse_setting

    assert parse_setting("train_head=true") == ("train_head", True)
    assert parse_setting("train_head=0") == ("train_head", False)
    assert parse_setting("heads=4") == ("heads", 4)
    assert parse_setting("query_init_std=0.02") == ("query_init_std", 0.02)
    with pytest.raises(Exception, match="not a valid bool"):
        parse_setting("train_head=maybe")


def test_a_variant_sweep_resumes_from_its_checkpoint_and_runs_from_the_command_line(tmp_path):
    from jaxbo import cli
    from jaxbo.sweep import SweepInterrupted

    config = SMALL.replace(heads=2, train_head=True, query_init_std=0.1)
    grid = {"d": [30, 300], "signal_norm": [2.0, 8.0]}
    arguments = dict(seeds=2, config=config, chunk_size=2, checkpoint=tmp_path / "store", progress=False)

    def stop_after_one(done):
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(SweepInterrupted):
        jaxbo.sweep(grid, _after_chunk=stop_after_one, **arguments)
    resumed = jaxbo.sweep(grid, **arguments)
    whole = jaxbo.sweep(grid, **{**arguments, "checkpoint": None})
    assert resumed.metadata["checkpoint"]["chunks_loaded"] == 1
    np.testing.assert_array_equal(resumed.final["head_attention"], whole.final["head_attention"])
    with pytest.raises(ValueError, match="query_init_std"):
        jaxbo.sweep(grid, **{**arguments, "config": config.replace(query_init_std=0.2)})  # another sweep's store
    out = tmp_path / "cli"
    argv = ["sweep", "--d", "30,60", "--signal-norm", "2,8", "--seeds", "1", "--out", str(out), "--quiet"]
    argv += ["--set", "train_head=true", "--set", "heads=2", "--set", "n_train=8", "--set", "T=4", "--set", "steps=40"]
    assert cli.main(argv) == 0
    saved = jaxbo.load(out / "phase_diagram")
    assert saved.config.train_head and saved.config.heads == 2
    assert saved.final["head_attention"].shape == (2, 2, 1, 2, 2, 4)
