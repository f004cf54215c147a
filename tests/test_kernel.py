"""The kernel engine: gradient descent on (W, p) in kernel form, against primal gradient descent."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbo
from jaxbo import data, engines, model, train
from jaxbo.engines import kernel, primal

CONFIG = jaxbo.Config(n_train=8, T=4, d=60, n_test=64, steps=1000, log_every=100, signal_norm=8.0, attention="trained")


def shared_run(config, dtype=jnp.float32):
    """The same data and W₀ for both paths (the engines' own samplers draw them identically too)."""
    train_key, test_key, weights_key = data.run_keys(jax.random.key(3))
    train_set = data.sample(train_key, config, config.n_train, flip=True)
    test_set = data.sample(test_key, config, config.n_test, flip=False)
    params = model.init_params(weights_key, config)
    cast = lambda tree: jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)  # noqa: E731
    return cast(params), cast(train_set), cast(test_set)


def trained(config, params, train_set, test_set, *, kernel_form: bool):
    """(params, history, final) of gradient descent from ``params``: primal, or in kernel form."""
    keys = engines.RunKeys(*data.run_keys(jax.random.key(3)))

    def descend(params):
        if kernel_form:
            trainer = kernel.kernel_trainer(config, keys, params, train_set, test_set)
        else:
            trainer = primal.descent_trainer(config, keys, params, train_set, test_set, None)
        return train.train_from(config, trainer, train_set)

    return jax.jit(descend)(params)


@pytest.mark.parametrize("attention", ["trained", pytest.param("fixed", marks=pytest.mark.slow)])
def test_kernel_form_equals_primal_gradient_descent_for_1000_steps(attention):
    config = CONFIG.replace(attention=attention)
    params, train_set, test_set = shared_run(config)
    primal_params, plain, _ = trained(config, params, train_set, test_set, kernel_form=False)
    kernel_params, in_kernel_form, _ = trained(config, params, train_set, test_set, kernel_form=True)
    for name in ("train_loss", "test_loss", "p_norm", "attention_clean", "attention_test", "gap_clean"):
        np.testing.assert_allclose(
            getattr(in_kernel_form, name), getattr(plain, name), rtol=2e-4, atol=2e-5, err_msg=name
        )
    for name in ("train_accuracy", "test_accuracy", "noisy_fit"):
        np.testing.assert_array_equal(getattr(in_kernel_form, name), getattr(plain, name), err_msg=name)
    np.testing.assert_allclose(kernel_params.p, primal_params.p, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(kernel_params.W, primal_params.W, rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_kernel_form_is_exact_in_float64():
    with jax.enable_x64(True):
        params, train_set, test_set = shared_run(CONFIG, jnp.float64)
        _, plain, _ = trained(CONFIG, params, train_set, test_set, kernel_form=False)
        _, in_kernel_form, _ = trained(CONFIG, params, train_set, test_set, kernel_form=True)
        assert in_kernel_form.train_loss.dtype == jnp.float64
        deviation = max(
            float(jnp.max(jnp.abs(getattr(in_kernel_form, name) - getattr(plain, name))))
            for name in ("train_loss", "test_loss", "p_norm", "attention_clean")
        )
    assert deviation < 1e-10, deviation  # float32 rounding is ~1e-6: the two are the same iterates


def test_auto_picks_the_kernel_engine_and_refuses_what_it_cannot_do():
    assert engines.resolve(CONFIG, None, "auto").name == "kernel"
    assert engines.resolve(CONFIG.replace(attention="fixed"), None, "auto").name == "kernel"
    assert engines.resolve(CONFIG, optax.adam(1e-3), "auto").name == "primal"
    assert engines.resolve(CONFIG.replace(gradient="autodiff"), None, "auto").name == "primal"
    assert engines.resolve(CONFIG.replace(attention="identity"), None, "auto").name == "reduced"
    with pytest.raises(ValueError, match=r"engine = 'kernel' is not exact here: optimizer = .*pass no optimizer"):
        jaxbo.simulate(0, CONFIG, optax.adam(1e-3), engine="kernel")
    with pytest.raises(ValueError, match=r"Config\.attention = 'identity' \(W = I: use the reduced engine\)"):
        jaxbo.sweep({"d": [40]}, config=CONFIG.replace(attention="identity"), engine="kernel", progress=False)
    with pytest.raises(ValueError, match=r"Config\.gradient = 'autodiff'"):
        jaxbo.simulate(0, CONFIG.replace(gradient="autodiff"), engine="kernel")


@pytest.mark.slow
def test_sweep_runs_the_kernel_engine_and_matches_primal_runs():
    grid = {"d": [40, 100], "signal_norm": [4.0, 30.0]}
    config = CONFIG.replace(n_test=200)
    kernel = jaxbo.sweep(grid, seeds=2, config=config, progress=False)
    assert kernel.metadata["engine"] == "kernel" and kernel.metadata["plan"]["compiles"] == 2
    primal = jaxbo.sweep(grid, seeds=2, config=config, engine="primal", progress=False)
    for name in ("train_loss", "test_loss", "p_norm"):
        np.testing.assert_allclose(kernel.final[name], primal.final[name], rtol=1e-3, atol=1e-4, err_msg=name)
    np.testing.assert_array_equal(kernel.final["train_accuracy"], primal.final["train_accuracy"])


@pytest.mark.slow
def test_kernel_and_primal_agree_run_by_run_over_many_seeds():
    grid = {"d": [100, 400], "signal_norm": [5.0, 20.0]}
    config = CONFIG.replace(n_test=500)
    kernel = jaxbo.sweep(grid, seeds=32, config=config, progress=False)
    primal = jaxbo.sweep(grid, seeds=32, config=config, engine="primal", progress=False)
    for name in ("train_loss", "test_loss"):
        np.testing.assert_allclose(kernel.final[name], primal.final[name], rtol=1e-3, atol=1e-4, err_msg=name)
    # Regimes may differ only where a margin sits within float32 rounding of 0: a few runs at most.
    assert np.mean(kernel.regime == primal.regime) >= 0.97
