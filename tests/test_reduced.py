"""The exact reduced engine against the d-dimensional simulation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbo
from jaxbo import data, model, reduced, train

CONFIG = jaxbo.Config(n_train=6, T=4, d=60, n_test=64, steps=60, log_every=20, signal_norm=3.0, noise_rate=0.34)


def test_deterministic_equivalence_with_the_exact_reduction_of_a_primal_data_set():
    config = CONFIG
    primal_train, primal_test = data.sample_train_test(jax.random.key(4), config)
    N = config.n_train * config.T
    noise = np.asarray(primal_train.tokens[..., 2:], np.float64).reshape(N, config.d - 2)
    q, r = np.linalg.qr(noise.T)  # Z = L Qᵀ with L = Rᵀ lower-triangular
    rows = r.T.reshape(config.n_train, config.T, N)
    test_noise = np.asarray(primal_test.tokens[..., 2:], np.float64) @ q  # g = Qᵀz′
    # Same labels and roles, tokens mapped to [S-part | L-row] and [S-part | Qᵀz′].
    reduced_train = dataclasses.replace(
        primal_train, tokens=jnp.asarray(np.concatenate([primal_train.tokens[..., :2], rows], -1), jnp.float32)
    )
    reduced_test = dataclasses.replace(
        primal_test, tokens=jnp.asarray(np.concatenate([primal_test.tokens[..., :2], test_noise], -1), jnp.float32)
    )
    runs = []
    for train_set, test_set, width in ((primal_train, primal_test, config.d), (reduced_train, reduced_test, 2 + N)):
        params = model.init_params(jax.random.key(0), config, width)
        runs.append(train.train(config, params, train_set, test_set))
    (p_primal, primal, _), (p_reduced, small, _) = runs
    for name in ("train_accuracy", "test_accuracy", "clean_accuracy"):
        np.testing.assert_array_equal(getattr(primal, name), getattr(small, name), err_msg=name)
    for name in ("train_loss", "test_loss", "p_norm", "cos_mu1", "cos_mu2", "attention_clean", "saturation_clean"):
        np.testing.assert_allclose(getattr(primal, name), getattr(small, name), rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(p_primal.p[:2], p_reduced.p[:2], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("start", [0.0, 0.3])
def test_kernel_form_follows_plain_gradient_descent(start):
    config = CONFIG.replace(steps=200, log_every=50)
    train_set, test_set = reduced.sample_train_test(jax.random.key(9), config)
    params = model.init_params(jax.random.key(0), config, reduced.width(config))
    params = model.Params(p=params.p + start * jax.random.normal(jax.random.key(1), params.p.shape), nu=params.nu)
    p_plain, plain, _ = train.train(config, params, train_set, test_set)
    p_kernel, kernel, _ = train.train(config, params, train_set, test_set, kernel=True)
    np.testing.assert_allclose(p_kernel.p, p_plain.p, rtol=1e-4, atol=1e-6)
    for name in ("train_loss", "test_loss", "p_norm", "cos_mu1", "attention_noisy", "saturation_noisy"):
        np.testing.assert_allclose(getattr(kernel, name), getattr(plain, name), rtol=1e-4, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(kernel.train_accuracy, plain.train_accuracy)
    with pytest.raises(ValueError, match="kernel=True"):
        train.train(config, params, train_set, test_set, optimizer=optax.adam(0.1), kernel=True)


@pytest.mark.slow
@pytest.mark.parametrize("d", [10, 26, 400])  # m = d − 2 < N, m ≈ N, m ≫ N (N = 24)
def test_distributional_equivalence(d):
    config = CONFIG.replace(d=d)
    keys = jax.random.split(jax.random.key(d), 128)
    results = {}
    for engine in ("primal", "reduced"):
        run = jax.jit(jax.vmap(jaxbo.make_run(config, log_history=False, engine=engine)))(keys)
        results[engine] = {
            "test_accuracy": run.final.test_accuracy,
            "train_loss": run.final.train_loss,
            "test_loss": run.final.test_loss,
            "p_norm": run.final.p_norm,
            "relevant_attention": run.final.attention_clean[:, 0],
        }
    for name in results["primal"]:
        a, b = (np.asarray(results[engine][name], np.float64) for engine in ("primal", "reduced"))
        standard_error = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
        assert abs(a.mean() - b.mean()) <= 4 * standard_error + 1e-7, (name, a.mean(), b.mean(), standard_error)


@pytest.mark.slow
@pytest.mark.parametrize(("d", "N"), [(102, 12), (8, 12)])
def test_bartlett_gram_has_the_wishart_moments(d, N):
    config = jaxbo.Config(n_train=3, T=4, d=d, sigma=1.5)
    assert config.n_train * config.T == N
    keys = jax.random.split(jax.random.key(1), 4000)
    factors = jax.vmap(lambda k: reduced.bartlett_factor(k, config))(keys)
    gram = np.asarray(factors @ jnp.swapaxes(factors, -1, -2), np.float64)  # Z Zᵀ ~ σ²·Wishart_N(m)
    m, s2 = d - 2, 1.5**2
    diagonal, off = gram[:, np.arange(N), np.arange(N)], gram[:, 0, 1:]
    tolerance = 5 / np.sqrt(len(keys))
    np.testing.assert_allclose(diagonal.mean(0) / (m * s2), 1.0, atol=tolerance * np.sqrt(2 / m) * 1.5)
    np.testing.assert_allclose(diagonal.var(0) / (2 * m * s2**2), 1.0, atol=0.15)
    np.testing.assert_allclose(off.mean(0) / s2, 0.0, atol=tolerance * np.sqrt(m) * 1.5)
    np.testing.assert_allclose(off.var(0) / (m * s2**2), 1.0, atol=0.15)


@pytest.mark.slow
def test_chi_square_stays_accurate_at_ten_million_dimensions():
    config = jaxbo.Config(n_train=4, T=4, d=10**7)
    keys = jax.random.split(jax.random.key(2), 2000)
    diagonal = jax.vmap(lambda k: jnp.diag(reduced.bartlett_factor(k, config)))(keys)
    ratio = np.asarray(diagonal, np.float64) ** 2 / (10**7 - 2)  # χ²_m / m: mean 1, sd √(2/m)
    assert abs(ratio.mean() - 1) < 5 * np.sqrt(2 / 1e7) / np.sqrt(ratio.size)
    assert 0.85 < ratio.std() / np.sqrt(2 / 1e7) < 1.15
    run = jaxbo.simulate(0, CONFIG.replace(d=10**7))
    assert run.engine == "reduced" and np.isfinite(float(run.final.train_loss))


def test_auto_rule_and_forced_reduced():
    assert train.resolve_engine(CONFIG, None, "auto") == "reduced"
    assert train.resolve_engine(CONFIG, optax.sgd(0.1, momentum=0.9, nesterov=True), "auto") == "reduced"
    assert train.resolve_engine(CONFIG, optax.adam(1e-3), "auto") == "primal"
    assert train.resolve_engine(CONFIG.replace(attention="trained"), None, "auto") == "primal"
    assert train.resolve_engine(CONFIG.replace(attention="fixed"), None, "auto") == "primal"
    with pytest.raises(ValueError, match="not rotation-equivariant"):
        jaxbo.simulate(0, CONFIG, optax.adam(1e-3), engine="reduced")
    with pytest.raises(ValueError, match="attention = 'trained'"):
        jaxbo.simulate(0, CONFIG.replace(attention="trained"), engine="reduced")
    assert jaxbo.simulate(0, CONFIG, optax.adam(1e-3)).engine == "primal"
