"""The reduced kernel engine (a Gaussian W₀ in 2 + nT coordinates) against the kernel engine on R^d."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import jaxbo
from jaxbo import data, engines, model, reduced_form, train
from jaxbo.engines import kernel, reduced_kernel
from jaxbo.results import config_fingerprint

CONFIG = jaxbo.Config(
    n_train=6, T=4, d=80, n_test=64, steps=300, log_every=50, signal_norm=5.0, lr=0.05,
    attention="trained", weight_init="gaussian",
)  # fmt: skip


def exact_reduction(config: jaxbo.Config, key: jax.Array):
    """A primal run's data and Gaussian W₀, and the same run in the reduced kernel form's coordinates.

    Input side: B = [e₁, e₂, Q] with Q an orthonormal basis of the training noise, training tokens XB; test
    tokens [x′B, ξ] with ξ = Q_outᵀW₀(I − BBᵀ)x′. Output side: Q_out = [e₁, e₂, Q′] with A₂: = Q′R′ (QR of
    W₀B's rows past e₁, e₂), so Â = Q_outᵀW₀B. Then W₀ is [Â | I]: every logit of the primal run, exactly.
    """
    train_key, test_key, weights_key = data.run_keys(key)
    train_set = data.sample(train_key, config, config.n_train, flip=True)
    test_set = data.sample(test_key, config, config.n_test, flip=False)
    W0 = np.asarray(model.random_weights(weights_key, config, config.d), np.float64)
    d, N = config.d, config.n_train * config.T
    noise = np.asarray(train_set.tokens, np.float64).reshape(N, d)[:, 2:]
    basis = np.zeros((d, 2 + N))
    basis[0, 0] = basis[1, 1] = 1.0
    basis[2:, 2:] = np.linalg.qr(noise.T)[0]
    A = W0 @ basis
    frame = np.zeros((d, 4 + N))
    frame[0, 0] = frame[1, 1] = 1.0
    frame[2:, 2:] = np.linalg.qr(A[2:])[0]
    inside = frame.T @ A
    test_tokens = np.asarray(test_set.tokens, np.float64)
    outside = (test_tokens - (test_tokens @ basis) @ basis.T) @ W0.T @ frame
    reduced_W0 = np.concatenate([inside, np.eye(4 + N)], axis=1)
    train_tokens = np.concatenate(
        [np.asarray(train_set.tokens) @ basis, np.zeros((config.n_train, config.T, 4 + N))], -1
    )
    as32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    small = (
        dataclasses.replace(train_set, tokens=as32(train_tokens)),
        dataclasses.replace(test_set, tokens=as32(np.concatenate([test_tokens @ basis, outside], -1))),
        as32(reduced_W0),
    )
    return (train_set, test_set, jnp.asarray(W0, jnp.float32)), small


def kernel_run(config, W0, train_set, test_set):
    keys = engines.RunKeys(*data.run_keys(jax.random.key(0)))
    width = train_set.tokens.shape[-1]
    params = model.Params(p=jnp.zeros(W0.shape[0]), nu=model.head(config, width), W=W0)
    trainer = kernel.kernel_trainer(config, keys, params, train_set, test_set)
    return jax.jit(lambda: train.train_from(config, trainer, train_set))()


@pytest.mark.parametrize("attention", ["trained", "fixed"])
def test_reduced_coordinates_give_the_primal_run_of_the_same_data_and_weights(attention):
    config = CONFIG.replace(attention=attention)
    (train_set, test_set, W0), (small_train, small_test, small_W0) = exact_reduction(config, jax.random.key(5))
    assert small_W0.shape == (reduced_form.width(config) + 2, reduced_form.kernel_width(config))
    _, primal, _ = kernel_run(config, W0, train_set, test_set)
    _, in_reduced, _ = kernel_run(config, small_W0, small_train, small_test)
    for name in ("train_loss", "test_loss", "p_norm", "cos_mu1", "cos_mu2", "attention_clean", "attention_test"):
        np.testing.assert_allclose(getattr(in_reduced, name), getattr(primal, name), rtol=2e-4, atol=2e-5, err_msg=name)
    for name in ("train_accuracy", "test_accuracy", "noisy_fit"):
        np.testing.assert_array_equal(getattr(in_reduced, name), getattr(primal, name), err_msg=name)
    assert float(primal.p_norm[-1]) > 0.1 and float(np.std(primal.test_loss)) > 0  # a run that moved


def test_gaussian_weights_have_the_uniform_variance_and_ignore_padding():
    config = CONFIG.replace(d=300)
    W = np.asarray(model.random_weights(jax.random.key(1), config, 320), np.float64)
    assert not W[300:].any() and not W[:, 300:].any()
    inside = W[:300, :300]
    assert abs(inside.var() * 3 * 300 - 1) < 5 * np.sqrt(2 / inside.size)  # 1/(3d), as uniform in ±1/√d
    assert abs(stats.kurtosis(inside.ravel())) < 0.1  # Gaussian (a uniform's excess kurtosis is −1.2)
    narrow = model.random_weights(jax.random.key(1), config, 300)
    np.testing.assert_array_equal(W[:300, :300], narrow)


@pytest.mark.parametrize("d", [120, 40, 20])
def test_reduced_weight_blocks_have_their_wishart_moments(d):
    # d = 120: both Bartlett factors; 40: the outside block as a Gaussian block (d − k < k + 2); 20 < k: no
    # outside block, and W₀'s columns past d are 0.
    config = jaxbo.Config(n_train=4, T=3, d=d, attention="trained", weight_init="gaussian")
    k, v = reduced_form.width(config), 1.0 / (3 * d)
    draws = 4000
    blocks = np.asarray(
        jax.vmap(lambda key: reduced_form.gaussian_weights(key, config))(jax.random.split(jax.random.key(2), draws)),
        np.float64,
    )
    inside, outside = blocks[:, :, :k], blocks[:, :, k:]
    live = min(d, k)
    assert not inside[:, :, live:].any()
    gram = np.einsum("sri,srj->sij", inside, inside)[:, :live, :live]  # AᵀA ~ Wishart_k(d, v)
    tolerance = 5 / np.sqrt(draws)
    np.testing.assert_allclose(gram.mean(0) / (d * v), np.eye(live), atol=tolerance * np.sqrt(2 / d) * 3)
    diagonal = gram[:, np.arange(live), np.arange(live)]
    np.testing.assert_allclose(diagonal.var(0) / (2 * d * v**2), 1.0, atol=0.2)
    np.testing.assert_allclose(gram[:, 0, 1:].var(0) / (d * v**2), 1.0, atol=0.2)
    np.testing.assert_allclose(inside[:, :2, :live].var(0) / v, 1.0, atol=0.2)  # W₀'s rows along e₁, e₂
    outer = np.einsum("sik,sjk->sij", outside, outside)  # v·R_ỸᵀR_Ỹ ~ v·Wishart_{k+2}(d − k, I)
    dof = max(d - k, 0)
    np.testing.assert_allclose(outer.mean(0), v * dof * np.eye(k + 2), atol=5 * v * np.sqrt(2 * dof / draws) + 1e-12)
    if dof:
        np.testing.assert_allclose(outer[:, 0, 0].var() / (2 * dof * v**2), 1.0, atol=0.2)


def test_a_test_tokens_score_has_the_law_it_has_in_r_d():
    # s = x′ᵀW₀ᵀW₀x for an irrelevant training token x and an irrelevant test token x′, as the first step's
    # query meets it: in R^d and in reduced coordinates, over independent draws (KS test, and the variance).
    config = jaxbo.Config(n_train=4, T=3, d=70, n_test=1, attention="trained", weight_init="gaussian")
    draws = 3000

    def primal_score(key):
        train_key, weights_key = jax.random.split(key)
        W0 = model.random_weights(weights_key, config, config.d)
        x, x_test = jax.random.normal(train_key, (2, config.d)) * config.sigma
        return x_test @ W0.T @ (W0 @ x)

    def reduced_score(key):
        train_key, test_key, weights_key = data.run_keys(key)
        W0 = reduced_form.gaussian_weights(weights_key, config)
        x = reduced_form.sample_train(train_key, config).tokens[0, -1]
        test_inside = reduced_form.sample_test(test_key, config).tokens[0, -1]
        test_outside = reduced_form.outside_coordinates(test_key, config, 1)[0, -1]
        x = jnp.concatenate([x, jnp.zeros(W0.shape[1] - x.shape[0])])
        return jnp.concatenate([test_inside, test_outside]) @ W0.T @ (W0 @ x)

    keys = jax.random.split(jax.random.key(3), draws)
    a = np.asarray(jax.vmap(primal_score)(keys), np.float64)
    b = np.asarray(jax.vmap(reduced_score)(keys), np.float64)
    assert stats.ks_2samp(a, b).pvalue > 1e-3
    assert abs(a.var() / b.var() - 1) < 0.15  # ≈ 5 standard errors of a variance ratio at 3000 draws


def test_auto_picks_it_for_a_gaussian_w_and_refuses_what_it_cannot_do():
    assert engines.resolve(CONFIG, None, "auto").name == "reduced_kernel"
    assert engines.resolve(CONFIG.replace(attention="fixed"), None, "auto").name == "reduced_kernel"
    assert engines.resolve(CONFIG.replace(weight_init="uniform"), None, "auto").name == "kernel"
    with pytest.raises(
        ValueError, match=r"engine = 'reduced_kernel' is not exact here: Config.weight_init = 'uniform'"
    ):
        jaxbo.simulate(0, CONFIG.replace(weight_init="uniform"), engine="reduced_kernel")
    with pytest.raises(ValueError, match=r"optimizer = "):
        jaxbo.simulate(0, CONFIG, optax.adam(1e-3), engine="reduced_kernel")
    with pytest.raises(ValueError, match=r"Config.weight_init = 'normal' is unknown: allowed values are"):
        CONFIG.replace(weight_init="normal")
    with pytest.raises(ValueError, match=r"Config.weight_init = 'gaussian' .*attention='identity'"):
        CONFIG.replace(attention="identity")
    with pytest.raises(ValueError, match=r"Config.weight_init = 'gaussian' .*model='encoder'"):
        CONFIG.replace(model="encoder", attention="identity")
    with pytest.raises(ValueError, match=r"Config.heads = 2"):
        jaxbo.simulate(0, CONFIG.replace(heads=2), engine="reduced_kernel")


def test_one_compile_serves_every_d_at_one_cost():
    grid = {"d": [250, 10**6], "signal_norm": [5.0]}
    config = CONFIG.replace(steps=100, log_every=100)
    result = jaxbo.sweep(grid, seeds=2, config=config, progress=False)
    assert result.metadata["engine"] == "reduced_kernel" and result.metadata["plan"]["compiles"] == 1
    width = reduced_kernel.width(config)
    assert reduced_kernel.bytes_per_run(config.replace(d=10**6), width, False) == reduced_kernel.bytes_per_run(
        config.replace(d=250), width, False
    )
    assert np.isfinite(result.final["test_loss"]).all() and (result.final["p_norm"] > 0).all()
    assert result.final["train_accuracy"].shape == (2, 1, 2)
    # At d = 10⁶ W₀ᵀW₀ is nearly v·d·I = I/3 on the tokens: the run follows the fixed-W = I/√3 model closely.
    run = jaxbo.simulate(1, config.replace(d=10**6))
    assert run.engine == "reduced_kernel" and "reduced_kernel: p in" in run.coordinates


def test_the_limit_runs_with_a_fixed_gaussian_w():
    run = jaxbo.simulate(0, CONFIG.replace(attention="fixed", steps=600), limit=True)
    assert run.engine == "reduced_kernel"
    assert run.limit is not None and int(run.limit.status) in (0, 1, 2, 3)
    assert 0.0 <= float(run.limit.test_accuracy) <= 1.0


def test_a_checkpoint_fingerprint_names_weight_init_only_when_set():
    assert "weight_init" not in config_fingerprint(CONFIG.replace(weight_init="uniform"))
    assert config_fingerprint(CONFIG)["weight_init"] == "gaussian"
    assert set(config_fingerprint(jaxbo.Config())) == set(jaxbo.config.field_names()) - set(jaxbo.config.LATER_FIELDS)


def _welch_failures(first, second, alpha):
    """Every final metric (each coordinate of a vector one) whose seed means differ at Welch p < alpha /
    tests (Bonferroni); a field constant in both must be equal."""
    failures, tests = [], 0
    for name in first:
        a = np.asarray(first[name], np.float64).reshape(len(first[name]), -1)
        b = np.asarray(second[name], np.float64).reshape(len(second[name]), -1)
        for j in range(a.shape[1]):
            x, y = a[:, j][np.isfinite(a[:, j])], b[:, j][np.isfinite(b[:, j])]
            if len(x) < 8 or len(y) < 8:
                continue
            if x.std() == 0 and y.std() == 0:
                failures += [] if x[0] == y[0] else [(name, j, "constant", x[0], y[0])]
                continue
            tests += 1
            failures.append((name, j, stats.ttest_ind(x, y, equal_var=False).pvalue, x.mean(), y.mean()))
    return [f for f in failures if f[2] == "constant" or f[2] < alpha / tests], tests


@pytest.mark.slow
@pytest.mark.parametrize(("d", "signal_norm"), [(200, 8.0), (1000, 5.0), (4000, 6.0)])
def test_it_equals_the_kernel_engine_in_law(d, signal_norm):
    config = jaxbo.Config(
        n_train=8, T=4, d=d, n_test=256, steps=400, log_every=400, signal_norm=signal_norm, lr=0.05,
        attention="trained", weight_init="gaussian",
    )  # fmt: skip
    finals = [
        jaxbo.sweep({"d": [d]}, seeds=128, config=config, engine=name, progress=False).final
        for name in ("reduced_kernel", "kernel")
    ]
    failures, tests = _welch_failures(*[{k: v[0] for k, v in f.items()} for f in finals], alpha=0.01)
    assert tests > 25 and not failures, failures


@pytest.mark.slow
def test_uniform_and_gaussian_weights_give_the_same_law_at_a_paper_cell():
    # docs/universality.md's question at one of its cells (the authors' settings, d = 1000, ‖μ‖ = 20): the
    # kernel engine with each law, 64 seeds, independent keys, Welch on every final metric.
    config = jaxbo.Config(d=1000, signal_norm=20.0, attention="trained")
    finals = [
        jaxbo.sweep({"d": [1000]}, seeds=64, config=config.replace(weight_init=law), key=key, progress=False).final
        for key, law in ((0, "uniform"), (1, "gaussian"))
    ]
    failures, tests = _welch_failures(*[{k: v[0] for k, v in f.items()} for f in finals], alpha=0.01)
    assert tests > 25 and not failures, failures
