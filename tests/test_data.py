import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbo
from jaxbo import data


def test_shapes_dtypes_and_roles(small_config, key):
    train, test = data.sample_train_test(key, small_config)
    assert train.tokens.shape == (10, 5, 40) and train.tokens.dtype == jnp.float32
    assert test.tokens.shape == (64, 5, 40)
    assert train.labels.shape == train.clean_labels.shape == train.noisy_mask.shape == (10,)
    assert train.noisy_mask.dtype == jnp.bool_
    np.testing.assert_array_equal(train.roles, [0, 1, 2, 3, 3])
    np.testing.assert_array_equal(data.token_roles((2, 2, 2), 8), [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(train.clean_labels, [1] * 5 + [-1] * 5)
    np.testing.assert_array_equal(train.labels, jnp.where(train.noisy_mask, -1, 1) * train.clean_labels)
    assert not bool(test.noisy_mask.any())
    np.testing.assert_array_equal(test.labels, test.clean_labels)


def test_token_means_follow_roles():
    # Average many samples: means must be μ_y, ρμ_y, ρμ_{−y}, 0 on (e₁, e₂) and 0 elsewhere.
    config = jaxbo.Config(n_train=4000, T=4, d=6, signal_norm=3.0, rho=0.25, noise_rate=0.0)
    dataset = data.sample(jax.random.key(1), config, 4000, flip=False)
    positive = dataset.tokens[:2000].mean(axis=0)
    negative = dataset.tokens[2000:].mean(axis=0)
    expected_positive = np.zeros((4, 6))
    expected_positive[0, 0], expected_positive[1, 0], expected_positive[2, 1] = 3.0, 0.75, 0.75
    expected_negative = expected_positive[:, [1, 0, 2, 3, 4, 5]]
    tolerance = 5 / np.sqrt(2000)  # 5 standard errors of a mean of 2000 unit normals
    np.testing.assert_allclose(positive, expected_positive, atol=tolerance)
    np.testing.assert_allclose(negative, expected_negative, atol=tolerance)
    centred = np.asarray(dataset.tokens[:2000] - expected_positive)
    assert abs(centred.std() - 1.0) < 0.02


@pytest.mark.parametrize(
    ("n", "eta", "per_class"), [(20, 0.2, 2), (20, 0.0, 0), (20, 0.25, 2), (21, 0.3, 3), (10, 0.1, 0)]
)
def test_balanced_flips_follow_the_authors_rule(n, eta, per_class):
    config = jaxbo.Config(n_train=n, noise_rate=eta)
    mask = np.asarray(data.noisy_mask(jax.random.key(0), config, n))
    # ⌈ηn⌉ requested, ⌊⌈ηn⌉/2⌋ from the start of each class.
    assert mask[: n // 2].sum() == per_class and mask[n // 2 :].sum() == per_class
    assert mask[:per_class].all() and mask[n // 2 : n // 2 + per_class].all()


def test_random_flips_have_rate_eta():
    config = jaxbo.Config(noise_rate=0.3, flips="random")
    mask = np.asarray(data.noisy_mask(jax.random.key(3), config, 20000))
    assert abs(mask.mean() - 0.3) < 5 * np.sqrt(0.3 * 0.7 / 20000)


def test_padding_never_changes_the_data(small_config, key):
    plain = data.sample(key, small_config, 6, flip=True)
    padded = data.sample(key, small_config, 6, flip=True, width=64)
    np.testing.assert_array_equal(padded.tokens[..., :40], plain.tokens)
    assert not np.asarray(padded.tokens[..., 40:]).any()
    np.testing.assert_array_equal(padded.labels, plain.labels)


def test_train_and_test_sets_are_independent(key):
    config = jaxbo.Config(n_train=200, n_test=200, T=4, d=50)
    train, test = data.sample_train_test(key, config)
    noise_train = np.asarray(train.tokens[..., 2:]).ravel()
    noise_test = np.asarray(test.tokens[..., 2:]).ravel()
    # No copied samples (the authors' test set repeats its first n_train samples from the training set) ...
    assert (noise_train == noise_test).mean() < 1e-3
    # ... and no correlation beyond sampling error.
    assert abs(np.corrcoef(noise_train, noise_test)[0, 1]) < 5 / np.sqrt(noise_train.size)
    again, _ = data.sample_train_test(key, config)
    np.testing.assert_array_equal(again.tokens, train.tokens)


@pytest.mark.slow
def test_projected_test_draw_has_the_exact_joint_distribution_of_logits_and_scores():
    # For a fixed query q and head ν, a_t = x_tᵀq and γ_t = x_tᵀν are Gaussian with mean m_tᵀq, m_tᵀν,
    # variances σ²‖q‖², σ²‖ν‖² and covariance σ² qᵀν: closed forms, independent of both samplers.
    config = jaxbo.Config(n_test=400, T=4, d=30, sigma=1.3, signal_norm=2.0)
    q = jax.random.normal(jax.random.key(1), (30,))
    nu = jaxbo.model.head(config, 30) + 0.05 * jax.random.normal(jax.random.key(2), (30,))
    keys = jax.random.split(jax.random.key(3), 200)

    def projected(key):
        test, query, head = data.sample_test_projected(key, config, q, nu)
        return test.tokens @ query, test.tokens @ head

    def full(key):
        test = data.sample(key, config, config.n_test, flip=False)
        return test.tokens @ q, test.tokens @ nu

    means = config.signal_norm * data.signal_coefficients(
        jnp.asarray(data.token_roles(config.layout, config.T)), jnp.asarray(data.balanced_labels(400)), config.rho
    )
    expected_a, expected_g = means @ q[:2], means @ nu[:2]
    for sampler in (projected, full):
        a, g = (np.asarray(v, np.float64) for v in jax.vmap(sampler)(keys))  # (keys, n, T)
        ra, rg = a - np.asarray(expected_a), g - np.asarray(expected_g)
        count = ra.size
        s2 = config.sigma**2
        np.testing.assert_allclose(ra.mean(), 0, atol=5 * np.sqrt(s2 * float(q @ q) / count))
        np.testing.assert_allclose(ra.var() / (s2 * float(q @ q)), 1, atol=5 * np.sqrt(2 / count))
        np.testing.assert_allclose(rg.var() / (s2 * float(nu @ nu)), 1, atol=5 * np.sqrt(2 / count))
        correlation = float(q @ nu) / np.sqrt(float(q @ q) * float(nu @ nu))
        np.testing.assert_allclose(np.corrcoef(ra.ravel(), rg.ravel())[0, 1], correlation, atol=5 / np.sqrt(count))
