"""Samplers of the paper's data distribution (docs/model.md §1), d-dimensional ("primal") representation.

A sample is X ∈ R^{T×d}: token t is x_t = m_t + ε_t with ε_t ~ N(0, σ²I_d) and a mean m_t in
span(μ₁, μ₂) fixed by the token's role and the clean label y (μ₊₁ = μ₁ = ‖μ‖e₁, μ₋₁ = μ₂ = ‖μ‖e₂):
relevant μ_y, weakly-relevant aligned ρμ_y, weakly-relevant opposite ρμ_{−y}, irrelevant 0.

Every function takes an explicit key. Noise coordinate j is drawn from its own stream ``fold_in(key, j)``, so
the first d coordinates of a sample do not depend on the array width it is padded to (sweeps pad d).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxbo.config import Config

RELEVANT, WEAK_ALIGNED, WEAK_OPPOSITE, IRRELEVANT = 0, 1, 2, 3
ROLE_NAMES = ("relevant", "weak_aligned", "weak_opposite", "irrelevant")

# Independent sub-streams of one run key, by meaning, so adding a stream never shifts another.
_TRAIN_STREAM, _TEST_STREAM, _WEIGHTS_STREAM = 0, 1, 2
_TOKEN_STREAM, _FLIP_STREAM = 0, 1


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A labelled set of token sequences.

    Attributes:
      tokens: X, (n, T, width) float32; coordinates j >= d (padding) are exactly 0.
      labels: ỹ, (n,) float32 in {±1}, the observed (possibly flipped) labels used for training.
      clean_labels: y, (n,) float32 in {±1}.
      noisy_mask: (n,) bool, True where ỹ = −y (the noisy set 𝒩).
      roles: (T,) int32 token roles: RELEVANT, WEAK_ALIGNED, WEAK_OPPOSITE or IRRELEVANT.
    """

    tokens: jax.Array
    labels: jax.Array
    clean_labels: jax.Array
    noisy_mask: jax.Array
    roles: jax.Array


jax.tree_util.register_dataclass(
    Dataset, data_fields=["tokens", "labels", "clean_labels", "noisy_mask", "roles"], meta_fields=[]
)


def run_keys(key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Split a run key into independent (train data, test data, attention weights) keys."""
    return (
        jax.random.fold_in(key, _TRAIN_STREAM),
        jax.random.fold_in(key, _TEST_STREAM),
        jax.random.fold_in(key, _WEIGHTS_STREAM),
    )


def token_roles(layout: tuple[int, int, int], T: int) -> np.ndarray:
    """Role of each token position, (T,) int32: |R| relevant, |W⁺| aligned, |W⁻| opposite, then irrelevant."""
    relevant, aligned, opposite = layout
    roles = np.full(T, IRRELEVANT, dtype=np.int32)
    roles[:relevant] = RELEVANT
    roles[relevant : relevant + aligned] = WEAK_ALIGNED
    roles[relevant + aligned : relevant + aligned + opposite] = WEAK_OPPOSITE
    return roles


def balanced_labels(n: int) -> np.ndarray:
    """Clean labels y, (n,) float32: the first n // 2 are +1, the rest −1 (as the authors' code)."""
    return np.where(np.arange(n) < n // 2, 1.0, -1.0).astype(np.float32)


def noisy_mask(key: jax.Array, config: Config, n: int) -> jax.Array:
    """Which training labels are flipped, (n,) bool.

    ``"balanced"``: ⌈ηn⌉ flips are requested and ⌊⌈ηn⌉/2⌋ are taken from the start of each class, exactly as
    the authors' code (so an odd ⌈ηn⌉ flips one label fewer). ``"random"``: Bernoulli(η) per sample.
    """
    if config.flips == "random":
        return jax.random.bernoulli(key, config.noise_rate, (n,))
    # ηn is computed in float32 from a traced η: 0.2 * 20 may land a hair above 4, so round before ceil.
    requested = jnp.ceil(jnp.round(config.noise_rate * n, 4))
    per_class = jnp.floor(requested / 2)
    index = jnp.arange(n)
    first_class = index < n // 2
    rank_in_class = jnp.where(first_class, index, index - n // 2)
    return rank_in_class < per_class


def signal_coefficients(roles: jax.Array, clean_labels: jax.Array, rho: jax.Array) -> jax.Array:
    """Token means in units of ‖μ‖ on the basis (e₁, e₂) of span(μ₁, μ₂): (n, T, 2).

    relevant → e_y, weakly-relevant aligned → ρ e_y, weakly-relevant opposite → ρ e_{−y}, irrelevant → 0,
    where e_{+1} = e₁ and e_{−1} = e₂.
    """
    positive = (clean_labels > 0)[:, None]  # (n, 1)
    own = jnp.stack([positive, ~positive], axis=-1).astype(jnp.float32)  # e_y: (n, 1, 2)
    roles = roles[None, :, None]
    scale = jnp.where(roles == RELEVANT, 1.0, 0.0) + jnp.where(roles == WEAK_ALIGNED, rho, 0.0)
    opposite = jnp.where(roles == WEAK_OPPOSITE, rho, 0.0)
    return scale * own + opposite * own[..., ::-1]


def gaussian_columns(key: jax.Array, shape: tuple[int, ...], width: int) -> jax.Array:
    """Standard normal array of ``shape + (width,)`` whose column j comes from the stream ``fold_in(key, j)``.

    Column j is therefore the same whatever ``width`` is: padding never changes the data it pads.
    """

    def column(j):
        return jax.random.normal(jax.random.fold_in(key, j), shape, dtype=jnp.float32)

    return jnp.moveaxis(jax.vmap(column)(jnp.arange(width)), 0, -1)


def sample(
    key: jax.Array,
    config: Config,
    n: int,
    *,
    flip: bool,
    width: int | None = None,
) -> Dataset:
    """n samples of the paper's distribution in R^d, zero-padded to ``width`` >= d coordinates.

    Args:
      key: PRNG key of this data set.
      config: run configuration; ``config.d`` may be traced when ``width`` is given.
      n: number of samples (static).
      flip: whether to flip labels with ``config.flips`` (training sets) or keep them clean (test sets).
      width: array width; defaults to ``config.d`` (which must then be a concrete int).

    Returns:
      A ``Dataset`` with tokens (n, T, width).
    """
    width = int(config.d) if width is None else width
    token_key, flip_key = jax.random.fold_in(key, _TOKEN_STREAM), jax.random.fold_in(key, _FLIP_STREAM)
    roles = jnp.asarray(token_roles(config.layout, config.T))
    clean = jnp.asarray(balanced_labels(n))
    flipped = noisy_mask(flip_key, config, n) if flip else jnp.zeros(n, dtype=bool)

    noise = config.sigma * gaussian_columns(token_key, (n, config.T), width)
    noise = jnp.where(jnp.arange(width) < config.d, noise, 0.0)
    means = config.signal_norm * signal_coefficients(roles, clean, config.rho)
    tokens = noise.at[..., :2].add(means)
    return Dataset(
        tokens=tokens,
        labels=jnp.where(flipped, -clean, clean),
        clean_labels=clean,
        noisy_mask=flipped,
        roles=roles,
    )


def orthonormal_basis(columns: jax.Array) -> jax.Array:
    """Q of a Householder QR of ``columns`` (width, k), k small: orthonormal columns spanning at least them.

    The same reflections (and sign convention) as LAPACK's geqrf, written in plain XLA operations: a
    vmapped LAPACK QR on several CPU devices at once deadlocked the shared intra-op thread pool (its batch
    loop waits for pool tasks from pool threads). A zero or dependent column gets a reflection of 0 (the
    identity), so Q stays orthonormal for any input, including q = 0 or q ∈ span(e₁, e₂).
    """
    width, k = columns.shape
    rows = jnp.arange(width)
    reflectors = []
    remaining = columns
    for j in range(k):
        x = jnp.where(rows >= j, remaining[:, j], 0.0)
        norm = jnp.sqrt(jnp.sum(x * x))
        alpha = -jnp.where(x[j] >= 0, 1.0, -1.0) * norm
        v = x.at[j].add(-alpha)
        v_norm = jnp.sqrt(jnp.sum(v * v))
        v = jnp.where(v_norm > 0, v / jnp.where(v_norm > 0, v_norm, 1.0), 0.0)
        remaining = remaining - 2.0 * jnp.outer(v, v @ remaining)
        reflectors.append(v)
    basis = jnp.eye(width, k, dtype=columns.dtype)
    for v in reversed(reflectors):  # Q = H₀ H₁ … H_{k−1} [e₁ … e_k]
        basis = basis - 2.0 * jnp.outer(v, v @ basis)
    return basis


def projected_basis(query: jax.Array, head: jax.Array) -> jax.Array:
    """B of ``sample_test_projected``: orthonormal columns (width, 4) spanning e₁, e₂, q (width,) and ν (width,),
    even when q = 0 or q ∈ span(e₁, e₂)."""
    width = query.shape[0]
    spanning = jnp.zeros((width, 4), jnp.float32).at[0, 0].set(1.0).at[1, 1].set(1.0)
    spanning = spanning.at[:, 2].set(query).at[:, 3].set(head)
    return orthonormal_basis(spanning)


def projected_test_noise(key: jax.Array, config: Config) -> jax.Array:
    """The standard normal noise Bᵀε/σ of ``sample_test_projected``'s tokens, (n_test, T, 4): it does not
    depend on the query, so runs that share a test key share it."""
    return jax.random.normal(jax.random.fold_in(key, _TOKEN_STREAM), (config.n_test, config.T, 4), jnp.float32)


def sample_test_projected(
    key: jax.Array, config: Config, query: jax.Array, head: jax.Array
) -> tuple[Dataset, jax.Array, jax.Array]:
    """A clean test set for one fixed query, in 4 coordinates, exact for every test metric.

    The model sees a test token only through a_t = x_tᵀq (q = Wᵀp) and γ_t = x_tᵀν. Take an orthonormal basis
    B (width × 4) of span{e₁, e₂, q, ν}: the token means lie in it, and for a q independent of the test set
    the noise's coordinates Bᵀε are N(0, σ²I₄) while the rest of ε is orthogonal to q and ν. So tokens
    Bᵀm_t + σ·N(0, I₄) with query Bᵀq and head Bᵀν give every test metric exactly its distribution under the
    full d-dimensional draw, at 4 normals per token instead of d (either engine: ``query`` and ``head`` in the
    engine's coordinates). Used when only final metrics are wanted; it is another sample than ``sample``'s.

    Args:
      key: test-set key; config: run configuration; query: q = Wᵀp, (width,); head: ν, (width,).

    Returns:
      (test set with tokens (n_test, T, 4), query Bᵀq (4,), head Bᵀν (4,)).
    """
    n, T = config.n_test, config.T
    basis = projected_basis(query, head)
    roles = jnp.asarray(token_roles(config.layout, T))
    clean = jnp.asarray(balanced_labels(n))
    means = config.signal_norm * signal_coefficients(roles, clean, config.rho)  # on (e₁, e₂): (n, T, 2)
    tokens = means @ basis[:2] + config.sigma * projected_test_noise(key, config)  # Bᵀm = m₁B[0] + m₂B[1]
    test = Dataset(tokens=tokens, labels=clean, clean_labels=clean, noisy_mask=jnp.zeros(n, bool), roles=roles)
    return test, basis.T @ query, basis.T @ head


def sample_test_projected_span(key: jax.Array, config: Config, vectors: jax.Array) -> tuple[Dataset, jax.Array]:
    """``sample_test_projected`` for any number of fixed vectors: a clean test set in 2 + k coordinates.

    The model sees a test token only through its inner products with ``vectors`` (k, width) (every head's
    query and score vector), so an orthonormal basis B of span{e₁, e₂, vectors} gives every test metric its
    exact law: tokens Bᵀm_t + σ·N(0, I_{2+k}), vectors Bᵀv.

    Returns:
      (test set with tokens (n_test, T, 2 + k), the vectors in those coordinates (k, 2 + k)).
    """
    n, T = config.n_test, config.T
    width, k = vectors.shape[-1], vectors.shape[0]
    spanning = jnp.zeros((width, 2 + k), jnp.float32).at[0, 0].set(1.0).at[1, 1].set(1.0).at[:, 2:].set(vectors.T)
    basis = orthonormal_basis(spanning)
    roles = jnp.asarray(token_roles(config.layout, T))
    clean = jnp.asarray(balanced_labels(n))
    means = config.signal_norm * signal_coefficients(roles, clean, config.rho)
    noise = jax.random.normal(jax.random.fold_in(key, _TOKEN_STREAM), (n, T, 2 + k), jnp.float32)
    tokens = means @ basis[:2] + config.sigma * noise
    test = Dataset(tokens=tokens, labels=clean, clean_labels=clean, noisy_mask=jnp.zeros(n, bool), roles=roles)
    return test, jnp.matmul(vectors, basis, precision=jax.lax.Precision.HIGHEST)


def sample_train_test(key: jax.Array, config: Config, *, width: int | None = None) -> tuple[Dataset, Dataset]:
    """The training set (n_train, flipped labels) and clean test set (n_test) of one run key.

    The two come from independent streams (unlike the authors' code, whose test set reuses the training
    seed and so copies the training noise into its first n_train samples).
    """
    train_key, test_key, _ = run_keys(key)
    return (
        sample(train_key, config, config.n_train, flip=True, width=width),
        sample(test_key, config, config.n_test, flip=False, width=width),
    )
