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
