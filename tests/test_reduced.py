"""The exact reduced engine against the d-dimensional simulation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbo
from jaxbo import data, engines, model, reduced_form, train

CONFIG = jaxbo.Config(n_train=6, T=4, d=60, n_test=64, steps=60, log_every=20, signal_norm=3.0, noise_rate=0.34)


def exact_reduction(config: jaxbo.Config, key: jax.Array):
    """A primal (train, test) pair and the same data in reduced coordinates [e₁, e₂ | Q], Q an orthonormal
    basis of the training noise's span: tokens mapped to [S-part | L-row] and [S-part | Qᵀz′]."""
    primal_train, primal_test = data.sample_train_test(key, config)
    N = config.n_train * config.T
    noise = np.asarray(primal_train.tokens[..., 2:], np.float64).reshape(N, config.d - 2)
    q, r = np.linalg.qr(noise.T)  # Z = L Qᵀ with L = Rᵀ lower-triangular
    rows = r.T.reshape(config.n_train, config.T, N)
    test_noise = np.asarray(primal_test.tokens[..., 2:], np.float64) @ q  # g = Qᵀz′
    reduced_train = dataclasses.replace(
        primal_train, tokens=jnp.asarray(np.concatenate([primal_train.tokens[..., :2], rows], -1), jnp.float32)
    )
    reduced_test = dataclasses.replace(
        primal_test, tokens=jnp.asarray(np.concatenate([primal_test.tokens[..., :2], test_noise], -1), jnp.float32)
    )
    return (primal_train, primal_test), (reduced_train, reduced_test)


def descent(config, params, train_set, test_set, optimizer):
    """(params, history, final) of the primal descent (any tokens' width) from ``params``."""
    keys = engines.RunKeys(*data.run_keys(jax.random.key(0)))
    trainer = engines.primal.descent_trainer(config, keys, params, train_set, test_set, optimizer)
    return jax.jit(lambda: train.train_from(config, trainer, train_set))()


#: Rotation-equivariant optimizers, for which the reduction is exact iterate by iterate (docs/exact_reduction.md).
EQUIVARIANT = {
    "gradient descent": None,
    "momentum": optax.sgd(CONFIG.lr, momentum=0.9),
    "nesterov": optax.sgd(CONFIG.lr, momentum=0.9, nesterov=True),
}


@pytest.mark.parametrize("name", list(EQUIVARIANT))
def test_deterministic_equivalence_with_the_exact_reduction_of_a_primal_data_set(name):
    config, optimizer = CONFIG, EQUIVARIANT[name]
    primal_sets, reduced_sets = exact_reduction(config, jax.random.key(4))
    N = config.n_train * config.T
    runs = []
    for (train_set, test_set), width in ((primal_sets, config.d), (reduced_sets, 2 + N)):
        params = model.init_params(jax.random.key(0), config, width)
        runs.append(descent(config, params, train_set, test_set, optimizer))
    (p_primal, primal, _), (p_reduced, small, _) = runs
    for name in ("train_accuracy", "test_accuracy", "clean_accuracy"):
        np.testing.assert_array_equal(getattr(primal, name), getattr(small, name), err_msg=name)
    for name in ("train_loss", "test_loss", "p_norm", "cos_mu1", "cos_mu2", "attention_clean", "saturation_clean"):
        np.testing.assert_allclose(getattr(primal, name), getattr(small, name), rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(p_primal.p[:2], p_reduced.p[:2], rtol=1e-5, atol=1e-7)


def test_the_reduction_is_not_exact_for_adam_which_is_not_rotation_equivariant():
    # The negative control of the test above: Adam's per-coordinate scaling sees the basis, so p leaves the
    # span of the tokens and the reduced iterates differ from the primal ones.
    config, optimizer = CONFIG, optax.adam(0.05)
    primal_sets, reduced_sets = exact_reduction(config, jax.random.key(4))
    losses = []
    for (train_set, test_set), width in ((primal_sets, config.d), (reduced_sets, 2 + config.n_train * config.T)):
        params = model.init_params(jax.random.key(0), config, width)
        losses.append(np.asarray(descent(config, params, train_set, test_set, optimizer)[1].train_loss))
    assert np.max(np.abs(losses[0] - losses[1])) > 1e-3


def test_reduced_test_set_has_the_law_of_a_primal_test_set_in_the_training_noise_frame():
    # The reduced engine's test set (the test set of every run with histories) against primal test samples
    # expressed in the frame of a primal training set: same labels and roles, same per-(role, label) means of
    # the signal coordinates, unit-σ² noise in every coordinate of the training noise's span.
    config = CONFIG.replace(n_test=4000, sigma=1.3)
    _, (_, projected) = exact_reduction(config, jax.random.key(11))
    drawn = reduced_form.sample_test(jax.random.key(12), config)
    assert drawn.tokens.shape == projected.tokens.shape == (4000, config.T, 2 + config.n_train * config.T)
    np.testing.assert_array_equal(drawn.roles, projected.roles)
    np.testing.assert_array_equal(drawn.labels, drawn.clean_labels)
    assert not np.asarray(drawn.noisy_mask).any() and abs(float(np.mean(np.asarray(drawn.labels)))) < 0.01
    for label in (1.0, -1.0):
        a = np.asarray(drawn.tokens, np.float64)[np.asarray(drawn.labels) == label]
        b = np.asarray(projected.tokens, np.float64)[np.asarray(projected.labels) == label]
        standard_error = config.sigma * np.sqrt(1 / len(a) + 1 / len(b))
        np.testing.assert_allclose(a.mean(0), b.mean(0), atol=5 * standard_error)  # every role, every coordinate
        variance_tolerance = 5 * np.sqrt(2 / len(a)) * config.sigma**2
        np.testing.assert_allclose(a.var(0), config.sigma**2, atol=variance_tolerance)
        np.testing.assert_allclose(b.var(0), config.sigma**2, atol=variance_tolerance)


@pytest.mark.parametrize("start", [0.0, 0.3])
def test_kernel_form_follows_plain_gradient_descent(start):
    config = CONFIG.replace(steps=200, log_every=50)
    train_set, test_set = reduced_form.sample_train_test(jax.random.key(9), config)
    params = model.init_params(jax.random.key(0), config, reduced_form.width(config))
    params = model.Params(p=params.p + start * jax.random.normal(jax.random.key(1), params.p.shape), nu=params.nu)
    p_plain, plain, _ = descent(config, params, train_set, test_set, None)
    keys = engines.RunKeys(*data.run_keys(jax.random.key(9)))
    trainer = engines.reduced.gram_trainer(config, keys, params, train_set, test_set)
    p_kernel, kernel, _ = jax.jit(lambda: train.train_from(config, trainer, train_set))()
    np.testing.assert_allclose(p_kernel.p, p_plain.p, rtol=1e-4, atol=1e-6)
    for name in ("train_loss", "test_loss", "p_norm", "cos_mu1", "attention_noisy", "saturation_noisy"):
        np.testing.assert_allclose(getattr(kernel, name), getattr(plain, name), rtol=1e-4, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(kernel.train_accuracy, plain.train_accuracy)


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
    factors = jax.vmap(lambda k: reduced_form.bartlett_factor(k, config))(keys)
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
    diagonal = jax.vmap(lambda k: jnp.diag(reduced_form.bartlett_factor(k, config)))(keys)
    ratio = np.asarray(diagonal, np.float64) ** 2 / (10**7 - 2)  # χ²_m / m: mean 1, sd √(2/m)
    assert abs(ratio.mean() - 1) < 5 * np.sqrt(2 / 1e7) / np.sqrt(ratio.size)
    assert 0.85 < ratio.std() / np.sqrt(2 / 1e7) < 1.15
    run = jaxbo.simulate(0, CONFIG.replace(d=10**7))
    assert run.engine == "reduced" and np.isfinite(float(run.final.train_loss))


def test_auto_rule_and_forced_reduced():
    assert engines.resolve(CONFIG, None, "auto").name == "reduced"
    assert engines.resolve(CONFIG, optax.sgd(0.1, momentum=0.9, nesterov=True), "auto").name == "reduced"
    assert engines.resolve(CONFIG, optax.adam(1e-3), "auto").name == "primal"
    assert engines.resolve(CONFIG.replace(attention="trained"), None, "auto").name == "kernel"
    assert engines.resolve(CONFIG.replace(attention="fixed"), None, "auto").name == "kernel"
    with pytest.raises(ValueError, match="not rotation-equivariant"):
        jaxbo.simulate(0, CONFIG, optax.adam(1e-3), engine="reduced")
    with pytest.raises(ValueError, match="attention = 'trained'"):
        jaxbo.simulate(0, CONFIG.replace(attention="trained"), engine="reduced")
    assert jaxbo.simulate(0, CONFIG, optax.adam(1e-3)).engine == "primal"


def test_run_says_its_coordinates_and_lift_gives_a_d_vector_with_the_same_invariants():
    config = jaxbo.Config(n_train=6, T=4, d=120, n_test=16, steps=20, log_every=10, signal_norm=5.0)
    run = jaxbo.simulate(0, config)
    assert run.engine == "reduced" and run.params.p.shape == (2 + 24,)
    assert "reduced: 26 coordinates" in run.coordinates and "jaxbo.reduced_form.lift" in repr(run)
    lifted = jaxbo.reduced_form.lift(run.params.p, jax.random.key(1), config.d)
    assert lifted.shape == (120,)
    np.testing.assert_allclose(jnp.linalg.norm(lifted), run.final.p_norm, rtol=1e-5)
    np.testing.assert_allclose(lifted[0] / jnp.linalg.norm(lifted), run.final.cos_mu1, rtol=1e-5, atol=1e-7)
    # One frame for everything lifted together: inner products with the training tokens survive the lift.
    train, _ = jaxbo.reduced_form.sample_train_test(jaxbo.sweep_module.run_key(0, 0, {}), config)
    stacked = jnp.concatenate([train.tokens.reshape(-1, 26), run.params.p[None]], axis=0)
    up = jaxbo.reduced_form.lift(stacked, jax.random.key(2), config.d)
    np.testing.assert_allclose(up @ up.T, stacked @ stacked.T, rtol=1e-4, atol=1e-3)
    small = jaxbo.reduced_form.lift(run.params.p, jax.random.key(1), 12)  # d − 2 < N: just the real coordinates
    np.testing.assert_array_equal(small, run.params.p[:12])
    assert jaxbo.simulate(0, config, engine="primal").params.p.shape == (120,)
    with pytest.raises(ValueError, match=r"Config\.d = 3000000000 is too large for the primal engine"):
        jaxbo.simulate(0, config.replace(d=3 * 10**9), engine="primal")
