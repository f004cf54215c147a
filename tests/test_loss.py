"""The closed-form gradient against jax.grad (float64) and finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbo import data, loss, model


def make_problem(attention: str, p_scale: float, nu_scale: float = 1.0):
    config = jax.tree.map(lambda x: x, __import__("jaxbo").Config(n_train=9, T=5, d=12, attention=attention))
    dataset = data.sample(jax.random.key(1), config, 9, flip=True)
    params = model.init_params(jax.random.key(2), config)
    cast = lambda x: None if x is None else jnp.asarray(x, jnp.float64)  # noqa: E731
    p = p_scale * jax.random.normal(jax.random.key(3), (config.d,), jnp.float64)
    params = model.Params(p=p, nu=nu_scale * cast(params.nu), W=cast(params.W))
    return params, jnp.asarray(dataset.tokens, jnp.float64), jnp.asarray(dataset.labels, jnp.float64)


CASES = [
    (attention, p_scale, nu_scale)
    for attention in ("identity", "fixed", "trained")
    for p_scale, nu_scale in ((0.0, 1.0), (0.3, 1.0), (3.0, 1.0), (0.5, 1e3), (30.0, 1e4))
]


@pytest.mark.parametrize(("attention", "p_scale", "nu_scale"), CASES)
def test_analytic_gradient_equals_autodiff_in_float64(attention, p_scale, nu_scale):
    with jax.enable_x64(True):
        params, tokens, labels = make_problem(attention, p_scale, nu_scale)
        train_weights = attention == "trained"
        analytic = loss.analytic_grad(params, tokens, labels, train_weights)
        autodiff = loss.autodiff_grad(params, tokens, labels, train_weights)
        assert analytic.keys() == autodiff.keys()
        # Cancellation inside Σ_t s_t(γ_t − f) sets the rounding floor: measure error against the summands'
        # absolute size, not against a gradient that may itself be ~1e-13 when the softmax saturates.
        f, s = model.forward(params, tokens)
        gamma = model.token_scores(params, tokens)
        coefficient = jnp.abs(loss.logistic_derivative(labels * f)) / labels.shape[0]
        summands = jnp.sum(coefficient[:, None] * s * (jnp.abs(gamma) + jnp.abs(f)[:, None]))
        magnitude = float(summands * jnp.max(jnp.abs(tokens)))
        if params.W is not None:
            magnitude *= float(jnp.max(jnp.abs(params.W))) * params.W.shape[0] + float(jnp.max(jnp.abs(params.p)))
        for name in analytic:
            assert analytic[name].dtype == jnp.float64
            scale = max(float(jnp.max(jnp.abs(autodiff[name]))), magnitude) or 1.0
            np.testing.assert_allclose(analytic[name], autodiff[name], rtol=1e-10, atol=1e-10 * scale)
            assert np.isfinite(np.asarray(analytic[name])).all()


def test_analytic_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        params, tokens, labels = make_problem("identity", 0.7)
        grad = loss.analytic_grad(params, tokens, labels, False)["p"]
        for seed in range(3):
            direction = jax.random.normal(jax.random.key(10 + seed), params.p.shape, jnp.float64)
            h = 1e-5
            plus = loss.empirical_loss(model.Params(params.p + h * direction, params.nu), tokens, labels)
            minus = loss.empirical_loss(model.Params(params.p - h * direction, params.nu), tokens, labels)
            np.testing.assert_allclose((plus - minus) / (2 * h), grad @ direction, rtol=1e-7)


def test_logistic_loss_is_finite_at_extreme_margins():
    margins = jnp.array([-1e4, -100.0, 0.0, 100.0, 1e4], jnp.float32)
    values = loss.logistic_loss(margins)
    naive = jnp.log(1 + jnp.exp(-margins))
    assert np.isfinite(np.asarray(values)).all() and not np.isfinite(np.asarray(naive)).all()
    np.testing.assert_allclose(values, [1e4, 100.0, np.log(2), 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(loss.logistic_derivative(margins), [-1, -1, -0.5, 0, 0], atol=1e-6)
    safe = jnp.linspace(-20, 20, 41)
    np.testing.assert_allclose(loss.logistic_loss(safe), np.log1p(np.exp(-np.asarray(safe))), rtol=1e-5)
