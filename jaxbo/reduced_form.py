"""The exact 2 + nT representation of the paper's data (docs/exact_reduction.md).

With W = I, p⁽⁰⁾ = 0 and a rotation-equivariant optimizer (gradient descent, momentum), p stays in
S ⊕ span{training noise}, S = span(μ₁, μ₂). Write N = n_train·T and m = d − 2. Stacking the training tokens'
noise components orthogonal to S as Z (N × m), its LQ factorisation Z = L Qᵀ has Q Haar-distributed and
independent of L, and for m >= N the Bartlett decomposition gives L lower-triangular with
L_kk = σ√χ²_{m−k} and L_kj = σ·N(0, 1) for j < k. A test token's ⊥-noise z′ enters every inner product with
training tokens, p and ν only through g = Qᵀz′ ~ N(0, σ²I_N). So coordinates [e₁, e₂ | N] represent every
token exactly: training tokens [S-part, row of L], test tokens [S-part, g]. For m < N the Gaussian block
itself, zero-padded to N columns, is the (equally exact) representation.

``d`` enters only through χ² degrees of freedom and the m < N mask, so it is a traced scalar: one compiled
program serves every d, and d = 10⁷ costs what d = 200 costs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxbo.config import Config
from jaxbo.data import Dataset, balanced_labels, noisy_mask, run_keys, signal_coefficients, token_roles

_TOKEN_STREAM, _FLIP_STREAM, _DIAGONAL_STREAM, _SIGNAL_STREAM = 0, 1, 2, 3
#: Streams of a random start (in the weights key) and of the test tokens' coordinates along it (in the test key).
_START_STREAM, _START_TEST_STREAM = 0x7FFFFFFC, 4
#: Streams of a Gaussian W₀'s blocks (in the weights key; 4 consecutive) and of the test tokens' coordinates
#: outside the training span that W₀ reads (in the test key).
_WEIGHTS_STREAM, _WEIGHTS_TEST_STREAM = 0x7FFFFFF0, 5


def width(config: Config) -> int:
    """Coordinates of the reduced representation: 2 + n_train·T."""
    return 2 + config.n_train * config.T


def _orthogonal_dims(config: Config) -> jax.Array:
    """m = d − 2: dimensions of the noise orthogonal to span(μ₁, μ₂)."""
    return jnp.asarray(config.d, jnp.float32) - 2.0


def _signal_part(key: jax.Array, config: Config, clean: jax.Array, roles: jax.Array) -> jax.Array:
    """Token means plus noise on (e₁, e₂): (n, T, 2)."""
    means = config.signal_norm * signal_coefficients(roles, clean, config.rho)
    return means + config.sigma * jax.random.normal(key, means.shape, jnp.float32)


def bartlett_degrees(size: int, dof) -> jax.Array:
    """Degrees of freedom dof − k of the χ² on a Bartlett factor's diagonal, k < size, (size,); clamped to >= 1
    where dof < size (``wishart_factor`` then never reads them)."""
    return jnp.maximum(dof - jnp.arange(size), 1.0)


def chi_square(key: jax.Array, degrees: jax.Array) -> jax.Array:
    """χ² draws of the given degrees of freedom (any shape): χ²_k = 2·Gamma(k/2)."""
    return 2.0 * jax.random.gamma(key, degrees / 2.0, dtype=jnp.float32)


def wishart_factor(gaussian_key: jax.Array, chi_squares: jax.Array, size: int, dof, scale) -> jax.Array:
    """L with L Lᵀ distributed as Z Zᵀ for Z (size × dof) of i.i.d. N(0, scale²), i.e. Wishart_size(dof,
    scale²I): (size, size); ``dof`` and ``scale`` may be traced, ``chi_squares`` (size,) are χ² draws of
    ``bartlett_degrees(size, dof)`` (drawn by the caller, so several factors share one sampler).

    dof >= size: the lower-triangular Bartlett factor (diagonal scale·√χ²_{dof−k}, below it scale·N(0, 1)).
    dof < size: Z itself in its first dof columns, the rest 0 (every column, for dof <= 0).
    """
    gaussian = scale * jax.random.normal(gaussian_key, (size, size), jnp.float32)
    index = jnp.arange(size)
    bartlett = jnp.tril(gaussian, -1) + jnp.diag(scale * jnp.sqrt(chi_squares))
    block = jnp.where(index[None, :] < dof, gaussian, 0.0)
    return jnp.where(dof >= size, bartlett, block)


def bartlett_factor(key: jax.Array, config: Config) -> jax.Array:
    """L with L Lᵀ distributed as Z Zᵀ for Z (N × m) of i.i.d. N(0, σ²): (N, N) (``wishart_factor``)."""
    size = config.n_train * config.T
    m = _orthogonal_dims(config)
    draws = chi_square(jax.random.fold_in(key, _DIAGONAL_STREAM), bartlett_degrees(size, m))
    return wishart_factor(jax.random.fold_in(key, _TOKEN_STREAM), draws, size, m, config.sigma)


def sample_train(key: jax.Array, config: Config) -> Dataset:
    """The training set in reduced coordinates: tokens (n_train, T, 2 + n_train·T).

    Equal in distribution (jointly with everything training computes) to ``data.sample`` projected on
    S ⊕ span{training noise}; ``config.d`` may be traced.
    """
    n, T = config.n_train, config.T
    roles = jnp.asarray(token_roles(config.layout, T))
    clean = jnp.asarray(balanced_labels(n))
    flipped = noisy_mask(jax.random.fold_in(key, _FLIP_STREAM), config, n)
    signal = _signal_part(jax.random.fold_in(key, _SIGNAL_STREAM), config, clean, roles)
    orthogonal = bartlett_factor(key, config).reshape(n, T, n * T)
    return Dataset(
        tokens=jnp.concatenate([signal, orthogonal], axis=-1),
        labels=jnp.where(flipped, -clean, clean),
        clean_labels=clean,
        noisy_mask=flipped,
        roles=roles,
    )


def sample_test(key: jax.Array, config: Config) -> Dataset:
    """Clean test set in reduced coordinates [S-part, g], g ~ N(0, σ²I_N) (first m coordinates if m < N)."""
    n, T = config.n_test, config.T
    size = config.n_train * T
    roles = jnp.asarray(token_roles(config.layout, T))
    clean = jnp.asarray(balanced_labels(n))
    signal = _signal_part(jax.random.fold_in(key, _SIGNAL_STREAM), config, clean, roles)
    g = config.sigma * jax.random.normal(jax.random.fold_in(key, _TOKEN_STREAM), (n, T, size), jnp.float32)
    g = jnp.where(jnp.arange(size) < _orthogonal_dims(config), g, 0.0)
    return Dataset(
        tokens=jnp.concatenate([signal, g], axis=-1),
        labels=clean,
        clean_labels=clean,
        noisy_mask=jnp.zeros(n, bool),
        roles=roles,
    )


def sample_train_test(key: jax.Array, config: Config) -> tuple[Dataset, Dataset]:
    """Reduced training and (full-width) test sets of one run key, from independent streams."""
    train_key, test_key, _ = run_keys(key)
    return sample_train(train_key, config), sample_test(test_key, config)


def start_width(config: Config) -> int:
    """Coordinates with a random start (``Config.query_init_std`` > 0): 2 + N, then H for the parts of the
    heads' p_h⁽⁰⁾ orthogonal to S ⊕ span{training noise}; 2 + N without one."""
    return width(config) + (config.heads if config.query_init_std else 0)


def random_start(key: jax.Array, config: Config) -> jax.Array:
    """p_h⁽⁰⁾ ~ N(0, s²I_d), h < H, in the reduced coordinates: (H, ``start_width(config)``).

    With S' = span(e₁, e₂, training noise) (dimension 2 + m', m' = min(d − 2, N)): p⁽⁰⁾ is independent of the
    data and isotropic, so its coordinates on e₁, e₂ and on the Haar basis of the training noise are
    N(0, s²) each (m' of the N noise coordinates; the rest 0, as for test tokens). Its parts r_h orthogonal
    to S' (in K = d − 2 − m' dimensions) are written in the orthonormal basis their Gram–Schmidt gives: the
    Bartlett factor of the H × H Gram matrix, r_h's coordinate j < min(h, K) N(0, s²) and coordinate h
    s√χ²_{K−h} while h < K. Training tokens have no component there, so training never moves those coordinates;
    test tokens have σ·N(0, 1) on each of the first min(H, K) (``start_test_coordinates``).
    """
    n_tokens, heads, s = config.n_train * config.T, config.heads, config.query_init_std
    m = _orthogonal_dims(config)
    inside = jnp.concatenate([jnp.ones(2, bool), jnp.arange(n_tokens) < m])
    visible = s * jax.random.normal(jax.random.fold_in(key, _START_STREAM), (heads, 2 + n_tokens), jnp.float32)
    visible = jnp.where(inside, visible, 0.0)
    if not s:
        return visible
    K = jnp.maximum(m - n_tokens, 0.0)
    index = jnp.arange(heads)
    gaussian = s * jax.random.normal(jax.random.fold_in(key, _START_STREAM + 1), (heads, heads), jnp.float32)
    degrees = jnp.maximum(K - index, 1.0)
    chi_square = 2.0 * jax.random.gamma(jax.random.fold_in(key, _START_STREAM + 2), degrees / 2.0, dtype=jnp.float32)
    diagonal = jnp.where(index < K, s * jnp.sqrt(chi_square), 0.0)
    below = jnp.where((index[None, :] < index[:, None]) & (index[None, :] < K), gaussian, 0.0)
    return jnp.concatenate([visible, below + jnp.diag(diagonal)], axis=-1)


def start_test_coordinates(key: jax.Array, config: Config, n: int) -> jax.Array:
    """A test token's noise along the random start's H orthogonal directions: σ·N(0, 1) on the first
    min(H, K) of them, 0 beyond, (n, T, H)."""
    K = jnp.maximum(_orthogonal_dims(config) - config.n_train * config.T, 0.0)
    draw = jax.random.normal(jax.random.fold_in(key, _START_TEST_STREAM), (n, config.T, config.heads), jnp.float32)
    return jnp.where(jnp.arange(config.heads) < K, config.sigma * draw, 0.0)


def lift(vectors: jax.Array, key: jax.Array, d: int) -> jax.Array:
    """Vectors in reduced coordinates, (..., 2 + N), as vectors of R^d, (..., d), N = n_train·T.

    Coordinates 0 and 1 (on e₁, e₂, i.e. μ₁, μ₂) are kept; the other N are mapped through the first N columns
    of a Haar-random orthogonal frame of the d − 2 directions orthogonal to μ₁, μ₂ (drawn from ``key``). Lift
    everything you want to compare in one call (e.g. ``p`` and the training tokens stacked): one frame keeps
    their joint law, that of a primal run. For d − 2 < N the reduced coordinates are themselves the first
    d − 2 noise coordinates, and the lift only drops the padding (``key`` unused).

    Args:
      vectors: (..., 2 + N) reduced coordinates, e.g. ``run.params.p``.
      key: PRNG key of the frame.
      d: the run's dimension (a concrete int).

    Returns:
      (..., d) float32.
    """
    vectors = jnp.asarray(vectors, jnp.float32)
    size = vectors.shape[-1] - 2
    if isinstance(d, bool) or not isinstance(d, int) or d < 2:
        raise ValueError(f"d = {d!r} must be an int >= 2 (the run's dimension)")
    m = d - 2
    signal, rest = vectors[..., :2], vectors[..., 2:]
    if m <= size:
        return jnp.concatenate([signal, rest[..., :m]], axis=-1)
    # QR of a Gaussian with R's diagonal made positive gives Haar-distributed orthonormal columns.
    q, r = jnp.linalg.qr(jax.random.normal(key, (m, size), jnp.float32))
    q = q * jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0)
    return jnp.concatenate([signal, jnp.einsum("...k,mk->...m", rest, q, precision=jax.lax.Precision.HIGHEST)], -1)


# --- a Gaussian W₀ in reduced coordinates (docs/exact_reduction.md, "Trained W at any d") -----------------------


def kernel_width(config: Config) -> int:
    """Input coordinates of the reduced kernel form: k = 2 + N for the training span, then k + 2 for the part
    of test tokens outside it that a Gaussian W₀ reads: 2k + 2."""
    return 2 * width(config) + 2


def gaussian_weights(key: jax.Array, config: Config) -> jax.Array:
    """A Gaussian W₀ (entries N(0, v), v = 1/(3d)) as the reduced kernel form sees it: (k + 2, 2k + 2), k = 2 + N.

    Output coordinates: e₁, e₂, then an orthonormal frame of the rest of W₀'s image of the training span B
    (so p's coordinates 0 and 1 lie on μ₁, μ₂). Input coordinates: B (as the tokens of ``sample_train``),
    then k + 2 for the noise of test tokens outside B (``outside_coordinates``). With A = W₀B (d × k, i.i.d.
    N(0, v) given the data): its rows along e₁, e₂ are N(0, vI_k) and the other d − 2 rows have the Bartlett
    factor R of Wishart_k(d − 2, v), so the block [rows; R] has AᵀA's law and p's coordinates. Outside B,
    W₀'s columns B⊥ are independent of A and AᵀB⊥ has i.i.d. N(0, vAᵀA) columns, i.e. √v·Âᵀ Ỹᵀ with Ỹ
    i.i.d. N(0, 1) of k + 2 columns; a test token's noise z outside B enters only as Ỹᵀz = R_Ỹᵀ ξ with
    R_Ỹᵀ R_Ỹ ~ Wishart_{k+2}(d − k, I) and ξ ~ N(0, σ²I_{k+2}): the block √v R_Ỹᵀ. For d < k the columns
    beyond d are 0 (B is then all of R^d) and there is no outside block. ``config.d`` may be traced.
    """
    k = width(config)
    d = jnp.asarray(config.d, jnp.float32)
    scale = 1.0 / jnp.sqrt(3.0 * d)
    streams = [jax.random.fold_in(key, _WEIGHTS_STREAM + i) for i in range(4)]
    # One χ² sampler for both factors: each jax.random.gamma costs about a second of compile time.
    degrees = jnp.concatenate([bartlett_degrees(k, d - 2.0), bartlett_degrees(k + 2, d - k)])
    draws = chi_square(streams[3], degrees)
    rows = scale * jax.random.normal(streams[0], (2, k), jnp.float32)
    rest = wishart_factor(streams[1], draws[:k], k, d - 2.0, scale).T
    inside = jnp.where(jnp.arange(k) < d, jnp.concatenate([rows, rest]), 0.0)
    outside = wishart_factor(streams[2], draws[k:], k + 2, d - k, 1.0)
    return jnp.concatenate([inside, scale * outside], axis=1)


def outside_coordinates(key: jax.Array, config: Config, n: int) -> jax.Array:
    """ξ of ``gaussian_weights``: a test token's noise outside the training span, along the k + 2 directions a
    Gaussian W₀ reads there, σ·N(0, 1) each, (n, T, k + 2) (those beyond d − k meet zero columns of W₀)."""
    shape = (n, config.T, width(config) + 2)
    return config.sigma * jax.random.normal(jax.random.fold_in(key, _WEIGHTS_TEST_STREAM), shape, jnp.float32)
