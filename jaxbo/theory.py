"""Quantities the paper reasons with (docs/model.md §5), computed from attention scores and data.

Every function is pure and shape-polymorphic over leading batch axes unless its docstring says otherwise.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxbo.data import WEAK_OPPOSITE, signal_coefficients

# The statistics measured inside the training loop live in ``metrics``; they are the paper's quantities too.
from jaxbo.metrics import (  # noqa: F401
    attention_gaps,
    masked_mean,
    mean_gaps,
    relevant_attention,
    role_attention,
    saturation,
    saturation_by_group,
)

BENIGN, HARMFUL, NOT_OVERFITTING = 0, 1, 2
REGIME_NAMES = ("benign", "harmful", "not overfitting")


def regime(train_accuracy: jax.Array, test_accuracy: jax.Array, tolerance: float = 0.005) -> jax.Array:
    """The paper's three regimes as int codes (``REGIME_NAMES`` order), elementwise.

    benign: every training label fitted (noisy ones included) and test accuracy >= 1 − ``tolerance``;
    harmful: every training label fitted and test accuracy < 1 − ``tolerance``;
    not overfitting: some training label (in practice a noisy one) not fitted.
    """
    # numpy in, numpy out (a SweepResult's arrays); jax arrays and tracers otherwise.
    where = jnp.where if isinstance(train_accuracy, jax.Array) or isinstance(test_accuracy, jax.Array) else np.where
    fitted = train_accuracy >= 1.0
    return where(fitted, where(test_accuracy >= 1.0 - tolerance, BENIGN, HARMFUL), NOT_OVERFITTING)


# --- The paper's convergence conditions on cumulative 𝔖 (docs/model.md §5; v1 Eq. 9 and Eq. 10) -----------------------
# Reading taken (the exact constants of v1 could not be checked here): Eq. 9 asks the clean samples' cumulative
# 𝔖 to dominate the noisy samples' one, measured as the ratio of totals against a threshold (default 1);
# Eq. 10 asks the per-class sums to stay within a constant ratio, the bound defaulting to 2.5 (the authors
# report ratios of about 0.5–2.5).


def clean_dominance(saturation_clean: jax.Array, saturation_noisy: jax.Array, threshold: float = 1.0):
    """Eq. 9 as a ratio: Σ_τ Σ_{i∈𝒞} 𝔖⁽ⁱ⁾(τ) / Σ_τ Σ_{j∈𝒩} 𝔖⁽ʲ⁾(τ), and whether it is >= ``threshold``.

    Args:
      saturation_clean, saturation_noisy: cumulative 𝔖 per class, (..., 2) (``Metrics`` fields).

    Returns:
      (ratio (...,), holds (...,) bool); the ratio is +inf when 𝒩 is empty or never saturates.
    """
    clean = jnp.sum(saturation_clean, axis=-1)
    noisy = jnp.sum(saturation_noisy, axis=-1)
    ratio = jnp.where(noisy > 0, clean / jnp.where(noisy > 0, noisy, 1.0), jnp.inf)
    return ratio, ratio >= threshold


def class_balance(saturation_clean: jax.Array, saturation_noisy: jax.Array, bound: float = 2.5):
    """Eq. 10 as ratios: class y = +1 over class y = −1 of the cumulative 𝔖, for 𝒞 and for 𝒩.

    Returns:
      (ratios (..., 2) for [clean, noisy], holds (...,) bool: every defined ratio in [1/bound, bound]).
      A group without samples of both classes gives NaN and is not counted against the condition.
    """
    sums = jnp.stack([saturation_clean, saturation_noisy], axis=-2)  # (..., 2 groups, 2 classes)
    positive, negative = sums[..., 0], sums[..., 1]
    defined = (positive > 0) & (negative > 0)
    ratios = jnp.where(defined, positive / jnp.where(defined, negative, 1.0), jnp.nan)
    inside = (ratios >= 1.0 / bound) & (ratios <= bound)
    return ratios, jnp.all(inside | ~defined, axis=-1)


# --- Attention gaps and the growth function (docs/model.md §5; v3) ----------------------------------------------------
# Reading taken: the attention gaps are gaps of attention logits a_t = x_tᵀWᵀp. Λ_{i,t} measures how far the
# relevant token leads token t (what clean samples need), Γ_{i,t} how far the first weakly-relevant
# opposite token u leads token t (what noisy samples need to be fitted).


def gap_rate(steps: jax.Array, gaps: jax.Array, T: int, x0: float = 0.0) -> tuple[jax.Array, jax.Array]:
    """Fit g(x(τ)) − g(x₀) = c·τ to measured gaps: (rate c, R² of the fit), each of shape gaps.shape[:-1].

    Args:
      steps: (L,) the steps τ of the measurements.
      gaps: (..., L) the gap at each step (e.g. ``Metrics.gap_clean`` histories).
      T: tokens per sample (g's log T); x0: the gap at τ = 0 (0 from p = 0).

    The growth-function reading (docs/model.md §7) predicts a straight line: R² near 1 where it applies.
    """
    steps = jnp.asarray(steps, jnp.float32)
    y = growth(gaps, T) - growth(jnp.asarray(x0, jnp.float32), T)
    rate = jnp.sum(y * steps, axis=-1) / jnp.sum(steps * steps)
    residual = jnp.sum((y - rate[..., None] * steps) ** 2, axis=-1)
    spread = jnp.sum((y - jnp.mean(y, axis=-1, keepdims=True)) ** 2, axis=-1)
    return rate, 1.0 - residual / spread


def growth(x: jax.Array, T: int | jax.Array) -> jax.Array:
    """g(x) = 2x + 2 sinh(x − log T), the paper's growth function (v3).

    It is the time integral of the softmax's vanishing update: for s(x) = eˣ/(eˣ + T), s(1 − s) = 1/g′(x),
    so a logit gap obeying dx/dτ = κ·s(1 − s) satisfies g(x(τ)) = g(x(0)) + κτ (``gap_time``).
    """
    return 2.0 * x + 2.0 * jnp.sinh(x - jnp.log(T))


def inverse_growth(y: jax.Array, T: int | jax.Array, iterations: int = 100) -> jax.Array:
    """x with g(x) = y (g is strictly increasing, g′ >= 4), by bisection on a bracket that always holds."""
    y = jnp.asarray(y, jnp.result_type(float))
    log_t = jnp.log(jnp.asarray(T, y.dtype))
    half_width = jnp.arcsinh(jnp.abs(y) / 2) + jnp.abs(y) / 2 + 1.0 + jnp.abs(log_t)
    low, high = log_t - half_width, log_t + half_width

    def bisect(_, bracket):
        low, high = bracket
        middle = (low + high) / 2
        above = growth(middle, T) > y
        return jnp.where(above, low, middle), jnp.where(above, middle, high)

    low, high = jax.lax.fori_loop(0, iterations, bisect, (low, high))
    return (low + high) / 2


def gap_time(x: jax.Array, x0: jax.Array, rate: jax.Array, T: int | jax.Array) -> jax.Array:
    """Time for a logit gap to grow from ``x0`` to ``x`` when dx/dτ = rate · s(1 − s): (g(x) − g(x0)) / rate.

    Exponential in x once x > log T: the origin of the paper's delayed (after the fit) generalisation.
    """
    return (growth(x, T) - growth(x0, T)) / rate


def first_time(values: jax.Array, steps: jax.Array, threshold: float) -> jax.Array:
    """First logged step from which ``values`` (..., L) stay >= ``threshold`` to the end; −1 if they never do.

    With train accuracy and threshold 1 this is the time to fit; with test accuracy and 1 − ε the time to
    generalise (both at the resolution of ``log_every``).
    """
    ok = values >= threshold
    stays = jnp.flip(jnp.cumprod(jnp.flip(ok, -1).astype(jnp.int32), axis=-1), -1).astype(bool)  # ok from here on
    index = jnp.argmax(stays, axis=-1)
    return jnp.where(jnp.any(stays, axis=-1), jnp.asarray(steps)[index], -1)


def signal_to_noise(signal_norm, sigma, d):
    """SNR = ‖μ‖ / (σ√d), v3's signal-to-noise ratio (docs/model.md §7, exact): harmful overfitting for
    SNR = o(d^(−1/4)), no overfitting for SNR = ω(n^(−1/2)), benign in between."""
    return signal_norm / (sigma * jnp.sqrt(d))


# --- High-probability facts the proofs rely on ("good event") -------------------------------------------------


def noise_vectors(dataset, config) -> jax.Array:
    """ε = x − m for every token of a d-dimensional (primal) data set: (n, T, width)."""
    means = config.signal_norm * signal_coefficients(dataset.roles, dataset.clean_labels, config.rho)
    return dataset.tokens.at[..., :2].add(-means)


def good_event(dataset, config, delta: float = 0.05) -> dict[str, tuple[jax.Array, jax.Array]]:
    """Which of the proofs' high-probability facts hold for a sampled (primal) data set.

    Each entry is (holds, worst) with worst = max over tokens of |statistic| / bound (<= 1 where it holds);
    each fact fails with probability at most ``delta`` under the model (so all three hold w.p. >= 1 − 3δ).
    With N = nT tokens:
      ``noise_norms``: |‖ε‖² − σ²d| <= σ²(2√(d·x) + 2x), x = log(2N/δ) (Laurent–Massart, both tails);
      ``noise_cross``: |⟨ε_t, ε_t′⟩| <= σ·max(‖ε_t‖, ‖ε_t′‖)·√(2 log(N²/δ)) for t ≠ t′ — the spec's
        "≲ σ²√(d log(n/δ))" with its constant;
      ``signal_noise``: |⟨ε_t, μ_c⟩| <= σ‖μ‖√(2 log(4N/δ)), c = 1, 2.
    """
    noise = noise_vectors(dataset, config).reshape(-1, dataset.tokens.shape[-1])
    count = noise.shape[0]
    d, sigma = config.d, config.sigma
    squared = jnp.sum(noise * noise, axis=-1)
    x = jnp.log(2 * count / delta)
    norm_ratio = jnp.abs(squared - sigma**2 * d) / (sigma**2 * (2 * jnp.sqrt(d * x) + 2 * x))
    gram = noise @ noise.T
    norms = jnp.sqrt(squared)
    cross_bound = sigma * jnp.maximum(norms[:, None], norms[None, :]) * jnp.sqrt(2 * jnp.log(count**2 / delta))
    off_diagonal = ~jnp.eye(count, dtype=bool)
    cross_ratio = jnp.where(off_diagonal, jnp.abs(gram) / cross_bound, 0.0)
    overlap = config.signal_norm * jnp.abs(noise[:, :2])  # ⟨ε, μ_c⟩ = ‖μ‖ ε_c
    overlap_ratio = overlap / (sigma * config.signal_norm * jnp.sqrt(2 * jnp.log(4 * count / delta)))
    facts = {"noise_norms": norm_ratio, "noise_cross": cross_ratio, "signal_noise": overlap_ratio}
    return {name: (jnp.max(ratio) <= 1.0, jnp.max(ratio)) for name, ratio in facts.items()}


# --- The existence construction (Theorem 4.1 in v1) ------------------------------------------------------------
# v1 builds p = (signal direction in span(μ₁, μ₂)) + Σ_{j∈𝒩} β_j ε_{u_j}, memorising for each noisy sample j the
# noise of a weakly-relevant-opposite token u_j. The proof's exact coefficients could not be checked here; the
# ones below are derived from the same mechanism so that every logit gap clears a margin m:
#   κ(1 − ρ) = log T + m        (clean samples: relevant tokens lead every other token by log T + m),
#   β_j = κ(1 − ρ) + log(T/ρ) + m  (noisy samples: u_j leads the relevant token by log(T/ρ) + m, so
#                                 s_u·ρ outweighs the relevant token's score).


def existence_coefficients(config, margin: float = 3.0) -> tuple[jax.Array, jax.Array]:
    """(κ, β) of the construction: signal scale κ and memorisation coefficient β (same for every j ∈ 𝒩)."""
    kappa = (jnp.log(config.T) + margin) / (1.0 - config.rho)
    beta = kappa * (1.0 - config.rho) + jnp.log(config.T / config.rho) + margin
    return kappa, beta


def existence_query(dataset, config, margin: float = 3.0) -> jax.Array:
    """p* = κ(μ₁ + μ₂)/‖μ‖² + Σ_{j∈𝒩} β ε_{u_j}/‖ε_{u_j}‖², (width,), for a primal training set.

    u_j is sample j's first weakly-relevant opposite token (the layout must have one).
    """
    kappa, beta = existence_coefficients(config, margin)
    width = dataset.tokens.shape[-1]
    opposite = jnp.argmax(dataset.roles == WEAK_OPPOSITE)
    memorised = noise_vectors(dataset, config)[:, opposite, :]  # (n, width)
    memorised = memorised / jnp.sum(memorised * memorised, axis=-1, keepdims=True)
    signal = jnp.zeros(width).at[0].set(1.0).at[1].set(1.0) * kappa / config.signal_norm  # κ(μ₁+μ₂)/‖μ‖²
    return signal + beta * jnp.sum(jnp.where(dataset.noisy_mask[:, None], memorised, 0.0), axis=0)


def existence_conditions(config, n_noisy: int, margin: float = 3.0, delta: float = 0.05) -> dict[str, jax.Array]:
    """Sufficient conditions (on the good event) for ``existence_query`` to fit every label and generalise.

    Each value is a ratio that must be < 1:
      ``score_noise``: token-score noise |νᵀε| <= σ z/‖μ‖·(1/√2)·√2 against the weak token's score ρ/√2
        (else a memorised token's score can have the wrong sign);
      ``crosstalk``: logit noise from memorisation, |𝒩|·β·z/√d, against m/2 (d must be large: noise
        vectors nearly orthogonal);
      ``signal_overlap``: logit noise of the signal part, κ√2·σz/‖μ‖, against m/2;
    with z = √(2 log(N²/δ)) and N = nT (training and test tokens alike).
    """
    kappa, beta = existence_coefficients(config, margin)
    count = config.n_train * config.T
    z = jnp.sqrt(2 * jnp.log(count**2 / delta))
    return {
        "score_noise": (config.sigma * z / config.signal_norm) / config.rho,
        "crosstalk": n_noisy * beta * z / jnp.sqrt(config.d) / (margin / 2),
        "signal_overlap": kappa * jnp.sqrt(2.0) * config.sigma * z / config.signal_norm / (margin / 2),
    }


# --- Training-loss plateaus (docs/model.md §7; derivation checked here) -----------------------------------------------
# With ν = (μ₁ − μ₂)/‖μ₁ − μ₂‖ · 1/‖μ‖, νᵀμ_y = y/√2. Once attention saturates on one token, f = γ of that token:
#   a clean sample on its relevant token x = μ_y + ε has margin y·νᵀx = 1/√2 + y·νᵀε;
#   a noisy sample (ỹ = −y) fitted through its weakly-relevant opposite token x = ρμ_{−y} + ε has margin
#   ỹ·νᵀx = ρ/√2 + ỹ·νᵀε;
#   a noisy sample left unfitted, on its relevant token, has margin −1/√2 − y·νᵀε.
# νᵀε ~ N(0, σ²/‖μ‖²) (‖ν‖ = 1/‖μ‖). Dropping it gives the spec's plateaus; keeping it to second order adds
# ½ ℓ″(z) σ²/‖μ‖² per sample (ℓ″ = sigmoid(z)(1 − sigmoid(z))), which ``loss_plateaus`` reports apart.


def noisy_fraction(config) -> float:
    """The expected fraction of flipped training labels: ``flips="balanced"`` flips 2⌊⌈ηn⌉/2⌋ of n exactly
    (the authors' rule, ``data.noisy_mask``), ``"random"`` flips each with probability η."""
    if config.flips == "random":
        return float(config.noise_rate)
    requested = math.ceil(round(config.noise_rate * config.n_train, 4))
    per_class = min(requested // 2, config.n_train // 2, config.n_train - config.n_train // 2)
    return 2 * per_class / config.n_train


def _logistic(z: float) -> float:
    return math.log1p(math.exp(-z)) if z > -30 else -z


def loss_plateau(config, noisy_fit):
    """The saturated training loss when a fraction ``noisy_fit`` of the noisy samples is fitted:
    (1 − q)ℓ(1/√2) + q[f ℓ(ρ/√2) + (1 − f) ℓ(−1/√2)], q = ``noisy_fraction(config)``, f = ``noisy_fit``.

    ``noisy_fit`` may be an array (e.g. ``SweepResult.final["noisy_fit"]``); f = 1 is the benign plateau and
    f = 0 the not-overfitting one of ``loss_plateaus``. Measured (docs/theory.md): runs at the edge of the
    not-overfitting region fit some of their noisy samples and sit on the intermediate level this gives.
    """
    q = noisy_fraction(config)
    root = math.sqrt(2.0)
    fitted, unfitted = _logistic(config.rho / root), _logistic(-1 / root)
    return (1 - q) * _logistic(1 / root) + q * (noisy_fit * fitted + (1 - noisy_fit) * unfitted)


def plateau_tolerance(config, runs: int = 1, z: float = 4.0) -> float:
    """How far a mean over ``runs`` runs' saturated losses may stray from ``loss_plateau`` by chance: z standard
    deviations of the token noise's effect on the head, max|ℓ′|·(σ/‖μ‖)/√(n·runs), plus the second-order
    term of ``loss_plateaus``."""
    spread = 0.67 * (config.sigma / config.signal_norm) / math.sqrt(config.n_train * runs)  # |ℓ′| <= 0.67 here
    return z * spread + loss_plateaus(config)["noise_correction"]


def loss_plateaus(config) -> dict[str, float]:
    """Asymptotic training losses of the saturated regimes (docs/model.md §7, derivation above), as Python floats.

    Returns:
      ``benign``: (1 − q)ℓ(1/√2) + qℓ(ρ/√2) — every noisy sample fitted through its weak-opposite token;
      ``not_overfitting``: (1 − q)ℓ(1/√2) + qℓ(−1/√2) — noisy samples left on their relevant token;
      ``noise_correction``: (each plateau's) second-order effect of the token noise on the head,
        ≈ ½ ℓ″ σ²/‖μ‖², to compare with the distance between a run's loss and its plateau;
      with q = ``noisy_fraction(config)`` and ℓ the logistic loss. At the defaults (η = 0.2, ρ = 0.1): 0.452 and
      0.542. They hold whatever d, T or the layout: only the selected token's head score matters.
    """
    q = noisy_fraction(config)
    root = math.sqrt(2.0)

    def curvature(z: float) -> float:
        s = 1.0 / (1.0 + math.exp(-z))
        return s * (1.0 - s)

    variance = (config.sigma / config.signal_norm) ** 2
    correction = (
        0.5 * variance * max((1 - q) * curvature(1 / root) + q * curvature(z) for z in (config.rho / root, -1 / root))
    )
    return {
        "benign": loss_plateau(config, 1.0),
        "not_overfitting": loss_plateau(config, 0.0),
        "noise_correction": correction,
    }
