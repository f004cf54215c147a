import jax
import numpy as np
import optax
import pytest

import jaxbo
from jaxbo import engines, train
from jaxbo.theory import BENIGN, HARMFUL, NOT_OVERFITTING, regime


@pytest.fixture(scope="module")
def run(small_config):
    return jaxbo.simulate(jax.random.key(3), small_config, engine="primal")


def test_history_shapes_and_final_row(run, small_config):
    L = small_config.n_logs
    history = run.history
    for name in ("train_accuracy", "test_accuracy", "train_loss", "test_loss", "p_norm", "cos_mu1", "noisy_fit"):
        assert getattr(history, name).shape == (L,), name
    for name in ("attention_clean", "attention_noisy", "attention_test"):
        assert getattr(history, name).shape == (L, 4)
        np.testing.assert_allclose(getattr(history, name).sum(-1), 1.0, rtol=1e-5)
    assert history.saturation_clean.shape == history.saturation_noisy.shape == (L, 2)
    np.testing.assert_array_equal(run.log_steps, [10, 20, 30, 40])
    np.testing.assert_array_equal(run.params.p.shape, (small_config.d,))
    for name, value in vars(run.final).items():
        np.testing.assert_array_equal(value, getattr(history, name)[-1], err_msg=name)
    assert run.engine == "primal"
    # Cumulative sums of non-negative terms never decrease.
    assert (np.diff(history.saturation_clean, axis=0) >= 0).all()


def test_same_key_gives_a_bit_identical_run(run, small_config):
    again = jaxbo.simulate(jax.random.key(3), small_config, engine="primal")
    jax.tree.map(np.testing.assert_array_equal, run, again)
    other = jaxbo.simulate(jax.random.key(4), small_config, engine="primal")
    assert not np.array_equal(run.params.p, other.params.p)
    assert jaxbo.simulate(3, small_config, engine="primal").final.train_loss == run.final.train_loss
    reduced = jaxbo.simulate(3, small_config)
    assert reduced.engine == "reduced"
    jax.tree.map(np.testing.assert_array_equal, reduced, jaxbo.simulate(3, small_config))


def test_first_step_saturation_has_the_closed_form():
    # At p = 0 every token gets 1/T, so 𝔖 = (|R|/T)(1 − |R|/T) for each sample, summed per (class, group).
    config = jaxbo.Config(n_train=20, T=8, d=30, n_test=4, steps=1, log_every=1, layout=(2, 2, 2))
    final = jaxbo.simulate(0, config).final  # reduced engine: same data distribution
    per_sample = (2 / 8) * (1 - 2 / 8)
    np.testing.assert_allclose(final.saturation_clean, [8 * per_sample, 8 * per_sample], rtol=1e-6)
    np.testing.assert_allclose(final.saturation_noisy, [2 * per_sample, 2 * per_sample], rtol=1e-6)


def test_one_step_is_gradient_descent_on_the_analytic_gradient(small_config):
    config = small_config.replace(steps=1, log_every=1)
    result = jaxbo.simulate(5, config, engine="primal")
    train_set, _ = jaxbo.data.sample_train_test(train.as_key(5), config)
    params = jaxbo.model.init_params(jax.random.key(0), config)
    grad = jaxbo.loss.analytic_grad(params, train_set.tokens, train_set.labels, False)["p"]
    np.testing.assert_allclose(result.params.p, -config.lr * grad, rtol=1e-5, atol=1e-9)


def test_autodiff_and_analytic_training_agree(small_config):
    analytic = jaxbo.simulate(1, small_config)
    autodiff = jaxbo.simulate(1, small_config.replace(gradient="autodiff"))
    np.testing.assert_allclose(analytic.params.p, autodiff.params.p, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(analytic.history.train_loss, autodiff.history.train_loss, rtol=1e-5)


def test_trained_weights_and_custom_optimizers(small_config):
    trained = jaxbo.simulate(1, small_config.replace(attention="trained"))
    assert trained.params.W.shape == (small_config.d, small_config.d)
    initial = jaxbo.model.init_params(
        jaxbo.data.run_keys(train.as_key(1))[2], small_config.replace(attention="trained")
    )
    assert not np.allclose(trained.params.W, initial.W)
    fixed = jaxbo.simulate(1, small_config.replace(attention="fixed"))
    np.testing.assert_array_equal(fixed.params.W, initial.W)
    adam = jaxbo.simulate(1, small_config, optimizer=optax.adam(1e-2))
    assert np.isfinite(np.asarray(adam.history.train_loss)).all()
    assert adam.final.train_loss < adam.history.train_loss[0]
    with pytest.raises(TypeError, match=r"optax\.GradientTransformation"):
        jaxbo.simulate(1, small_config, optimizer="sgd")
    with pytest.raises(TypeError, match="key"):
        jaxbo.simulate("seed", small_config)


def test_padded_coordinates_of_p_stay_exactly_zero(small_config):
    key = jax.random.key(2)
    primal = engines.lookup("attention", "primal")
    plain = train.run(key, small_config, width=small_config.d, engine=primal)
    padded = train.run(key, small_config, width=small_config.d + 24, engine=primal)
    assert not np.asarray(padded.params.p[small_config.d :]).any()
    np.testing.assert_allclose(padded.params.p[: small_config.d], plain.params.p, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(padded.history.test_loss, plain.history.test_loss, rtol=1e-5)


# The paper's regimes at small scale: 8 seeds in one vmapped call per setting, a clear majority asserted.
REGIME_SETTINGS = [
    ((2, 2, 2), 2000, 20.0, BENIGN),  # paper: (2000, 20) benign
    ((1, 1, 1), 3000, 5.0, HARMFUL),  # large noise: fits all labels, test accuracy drops
    ((1, 1, 1), 500, 100.0, NOT_OVERFITTING),  # large signal: noisy labels not fitted
]


@pytest.mark.slow
@pytest.mark.parametrize(("layout", "d", "signal_norm", "expected"), REGIME_SETTINGS)
def test_three_regimes(layout, d, signal_norm, expected):
    config = jaxbo.Config(d=d, signal_norm=signal_norm, layout=layout, n_test=200)
    keys = jax.random.split(jax.random.key(100), 8)
    final = jax.jit(jax.vmap(jaxbo.make_run(config, log_history=False)))(keys).final
    regimes = np.asarray(regime(final.train_accuracy, final.test_accuracy))
    assert (regimes == expected).sum() >= 6, f"regimes over seeds: {regimes}"
    if expected == NOT_OVERFITTING:
        assert np.nanmean(final.noisy_fit) < 0.5 and final.test_accuracy.mean() >= 0.99
    else:
        assert np.nanmean(final.noisy_fit) > 0.9
    if expected == HARMFUL:
        assert final.test_accuracy.mean() < 0.97
