import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbo
from jaxbo import data, model


@pytest.fixture(scope="module")
def dataset(small_config, key):
    return data.sample(key, small_config, 7, flip=True)


@pytest.mark.parametrize("attention", ["identity", "fixed"])
def test_forward_matches_the_formula(small_config, dataset, attention):
    config = small_config.replace(attention=attention)
    params = model.init_params(jax.random.key(2), config)
    params = jax.tree.map(lambda x: x, params)
    p = jax.random.normal(jax.random.key(3), (config.d,))
    params = params.__class__(p=p, nu=params.nu, W=params.W)
    f, attention_scores = jaxbo.forward(params, dataset.tokens)
    X = np.asarray(dataset.tokens, np.float64)
    W = np.eye(config.d) if params.W is None else np.asarray(params.W, np.float64)
    logits = X @ W.T @ np.asarray(p, np.float64)  # a_t = x_tᵀ Wᵀ p
    s = np.exp(logits - logits.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    expected = (s * (X @ np.asarray(params.nu, np.float64))).sum(-1)
    assert f.shape == (7,) and attention_scores.shape == (7, 5)
    np.testing.assert_allclose(attention_scores, s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(attention_scores.sum(-1), 1.0, rtol=1e-6)


def test_initial_attention_is_uniform_and_head_has_the_authors_scale(small_config, dataset):
    params = model.init_params(jax.random.key(0), small_config)
    assert not np.asarray(params.p).any() and params.W is None
    _, attention_scores = jaxbo.forward(params, dataset.tokens)
    np.testing.assert_allclose(attention_scores, 1.0 / small_config.T)
    mu1 = jnp.zeros(small_config.d).at[0].set(small_config.signal_norm)
    mu2 = jnp.zeros(small_config.d).at[1].set(small_config.signal_norm)
    np.testing.assert_allclose(params.nu @ mu1, 1 / np.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(params.nu @ mu2, -1 / np.sqrt(2), rtol=1e-6)


def test_random_weights_are_seeded_bounded_and_width_independent(small_config):
    config = small_config.replace(attention="fixed")
    W = model.random_weights(jax.random.key(5), config, config.d)
    again = model.random_weights(jax.random.key(5), config, config.d)
    padded = model.random_weights(jax.random.key(5), config, config.d + 9)
    np.testing.assert_array_equal(W, again)
    np.testing.assert_array_equal(padded[: config.d, : config.d], W)
    assert not np.asarray(padded[config.d :]).any() and not np.asarray(padded[:, config.d :]).any()
    bound = 1 / np.sqrt(config.d)
    assert np.abs(W).max() <= bound and np.abs(W).max() > 0.9 * bound
    other = model.random_weights(jax.random.key(6), config, config.d)
    assert not np.array_equal(W, other)
