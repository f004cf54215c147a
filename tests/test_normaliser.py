"""φ, the attention normaliser, as a setting of the one model: sigmoid attention on every attention engine."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_reduced import exact_reduction

import jaxbo
from jaxbo import data, engines, loss, model, train
from jaxbo.engines import kernel, primal

SIGMOID = jaxbo.Config(
    n_train=6, T=4, d=60, n_test=64, steps=200, log_every=50, signal_norm=3.0, noise_rate=0.34, normaliser="sigmoid"
)


@pytest.mark.parametrize("attention", ["identity", "trained"])
def test_sigmoid_gradient_equals_jax_grad_in_float64(attention):
    with jax.enable_x64(True):
        config = SIGMOID.replace(attention=attention, d=12)
        dataset = data.sample(jax.random.key(1), config, config.n_train, flip=True)
        tokens, labels = jnp.asarray(dataset.tokens, jnp.float64), jnp.asarray(dataset.labels, jnp.float64)
        initial = model.init_params(jax.random.key(2), config)
        p = 0.7 * jax.random.normal(jax.random.key(3), (config.d,), jnp.float64)
        W = None if initial.W is None else jnp.asarray(initial.W, jnp.float64) * 5
        params = model.Params(p=p, nu=jnp.asarray(initial.nu, jnp.float64), W=W)
        trained = attention == "trained"
        analytic = loss.analytic_grad(params, tokens, labels, trained, normaliser="sigmoid")
        autodiff = loss.autodiff_grad(params, tokens, labels, trained, "sigmoid")
        softmax = loss.analytic_grad(params, tokens, labels, trained)
        for name in analytic:
            assert analytic[name].dtype == jnp.float64
            np.testing.assert_allclose(analytic[name], autodiff[name], rtol=1e-10, atol=1e-13)
            assert not np.allclose(analytic[name], softmax[name])  # φ changes the gradient


def test_sigmoid_head_gradients_equal_jax_grad_in_float64():
    with jax.enable_x64(True):
        config = SIGMOID.replace(d=12, heads=3, train_head=True, attention="trained", query_init_std=0.5)
        dataset = data.sample(jax.random.key(4), config, config.n_train, flip=True)
        tokens = jnp.asarray(dataset.tokens, jnp.float64)
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), model.init_params(jax.random.key(5), config, 12))
        analytic = loss.analytic_grad(params, tokens, dataset.labels, True, None, "sigmoid", train_head=True)
        autodiff = loss.autodiff_grad(params, tokens, dataset.labels, True, "sigmoid", train_head=True)
        assert sorted(analytic) == sorted(autodiff) == ["W", "nu", "p"]
        for name in analytic:
            np.testing.assert_allclose(analytic[name], autodiff[name], rtol=1e-10, atol=1e-13, err_msg=name)


def _descent(config, params, train_set, test_set, kernel_form: bool):
    keys = engines.RunKeys(*data.run_keys(jax.random.key(0)))
    if kernel_form:
        trainer = engines.reduced.gram_trainer(config, keys, params, train_set, test_set)
    else:
        trainer = primal.descent_trainer(config, keys, params, train_set, test_set, None)
    return jax.jit(lambda: train.train_from(config, trainer, train_set))()


def test_reduced_engine_runs_sigmoid_attention_exactly_on_a_primal_data_set():
    (primal_train, primal_test), (reduced_train, reduced_test) = exact_reduction(SIGMOID, jax.random.key(4))
    width = 2 + SIGMOID.n_train * SIGMOID.T
    _, in_r_d, _ = _descent(SIGMOID, model.init_params(jax.random.key(0), SIGMOID), primal_train, primal_test, False)
    small = model.init_params(jax.random.key(0), SIGMOID, width)
    _, reduced, _ = _descent(SIGMOID, small, reduced_train, reduced_test, True)
    for name in ("train_loss", "test_loss", "p_norm", "cos_mu1", "attention_clean", "attention_test", "gap_clean"):
        np.testing.assert_allclose(getattr(reduced, name), getattr(in_r_d, name), rtol=2e-4, atol=2e-5, err_msg=name)
    for name in ("train_accuracy", "test_accuracy", "noisy_fit"):
        np.testing.assert_array_equal(getattr(reduced, name), getattr(in_r_d, name), err_msg=name)
    # Unnormalised: the attention per role need not sum to 1, and at p = 0 every σ(0) = ½.
    assert abs(float(np.sum(in_r_d.attention_clean[-1])) - 1.0) > 1e-3


@pytest.mark.slow
def test_on_paper_cells_the_reduced_engine_runs_sigmoid_attention_run_by_run_as_the_primal_engine():
    # The paper's sizes (n = 20, T = 8, 1000 steps, 1000 test samples) at cells spanning its grid, each on one
    # primal data set and its exact reduction: every run's discrete metrics equal, the continuous ones to float32.
    width = 2 + 20 * 8
    for index, (d, signal_norm) in enumerate([(250, 5.0), (250, 80.0), (1000, 20.0), (2500, 5.0), (2500, 100.0)]):
        config = jaxbo.Config(d=d, signal_norm=signal_norm, normaliser="sigmoid", log_every=250)
        (primal_train, primal_test), (reduced_train, reduced_test) = exact_reduction(config, jax.random.key(index))
        _, in_r_d, _ = _descent(config, model.init_params(jax.random.key(0), config), primal_train, primal_test, False)
        small = model.init_params(jax.random.key(0), config, width)
        _, reduced, _ = _descent(config, small, reduced_train, reduced_test, True)
        for name in ("train_accuracy", "noisy_fit", "clean_accuracy"):
            np.testing.assert_array_equal(getattr(reduced, name), getattr(in_r_d, name), err_msg=f"{name} at {d}")
        for name in ("test_accuracy", "train_loss", "test_loss", "p_norm", "cos_mu1", "attention_clean"):
            np.testing.assert_allclose(
                getattr(reduced, name), getattr(in_r_d, name), rtol=5e-4, atol=2e-3, err_msg=f"{name} at {d}"
            )


def test_kernel_engine_runs_sigmoid_attention_as_the_primal_descent():
    config = SIGMOID.replace(attention="trained", signal_norm=8.0)
    train_key, test_key, weights_key = data.run_keys(jax.random.key(3))
    train_set = data.sample(train_key, config, config.n_train, flip=True)
    test_set = data.sample(test_key, config, config.n_test, flip=False)
    params = model.init_params(weights_key, config)
    keys = engines.RunKeys(train_key, test_key, weights_key)
    runs = []
    for trainer in (
        kernel.kernel_trainer(config, keys, params, train_set, test_set),
        primal.descent_trainer(config, keys, params, train_set, test_set, None),
    ):
        runs.append(jax.jit(lambda trainer=trainer: train.train_from(config, trainer, train_set))()[1])
    for name in ("train_loss", "test_loss", "p_norm", "attention_clean", "attention_test"):
        np.testing.assert_allclose(getattr(runs[0], name), getattr(runs[1], name), rtol=2e-4, atol=2e-5, err_msg=name)


def test_auto_picks_the_cheapest_engine_for_sigmoid_attention_and_the_limit_refuses_it():
    assert engines.resolve(SIGMOID, None, "auto").name == "reduced"
    assert engines.resolve(SIGMOID.replace(attention="trained"), None, "auto").name == "kernel"
    gaussian = SIGMOID.replace(attention="trained", weight_init="gaussian")
    assert engines.resolve(gaussian, None, "auto").name == "reduced_kernel"
    run = jaxbo.simulate(0, SIGMOID.replace(d=10**6))
    assert run.engine == "reduced" and np.isfinite(float(run.final.test_loss))
    with pytest.raises(ValueError, match=r"Config.normaliser = 'sigmoid' \(the attention SVM is the softmax's"):
        jaxbo.simulate(0, SIGMOID, limit=True)
    with pytest.raises(ValueError, match=r"Config.normaliser = 'tanh' is unknown"):
        SIGMOID.replace(normaliser="tanh")
    with pytest.raises(ValueError, match=r"Config.normaliser = 'sigmoid' is the attention model's φ"):
        SIGMOID.replace(model="encoder")
    result = jaxbo.sweep({"signal_norm": [2.0, 4.0]}, seeds=2, config=SIGMOID, paired=True, progress=False)
    assert any("normaliser" in reason for reason in result.metadata["plan"]["unshared"])
    assert "sigmoid attention model" in jaxbo.plot.model_name(SIGMOID)


def test_an_engine_refuses_a_setting_it_does_not_declare():
    # A Config field added later (here: a subclass's) is never run by an engine that does not know it.
    Extended = dataclasses.make_dataclass("Extended", [("new_setting", str, "off")], bases=(jaxbo.Config,), frozen=True)
    config = Extended(**{name: getattr(SIGMOID, name) for name in jaxbo.config.field_names()})
    assert all(not engine.reasons(config, None) for engine in engines.for_model("attention")[:1])
    object.__setattr__(config, "new_setting", "on")
    for engine in engines.REGISTRY:
        assert any("Config.new_setting = 'on'" in reason for reason in engine.reasons(config, None)), engine.name
    with pytest.raises(ValueError, match=r"no registered engine is exact"):
        engines.resolve(config, None, "auto")
