"""Quantities the paper reasons with (docs/model.md §5), computed from attention scores and data.

Every function is pure and shape-polymorphic over leading batch axes unless its docstring says otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from jaxbo.data import RELEVANT, ROLE_NAMES, WEAK_OPPOSITE, signal_coefficients


def role_attention(attention: jax.Array, roles: jax.Array) -> jax.Array:
    """Attention mass on each token role, (n, 4) for attention s (n, T) and roles (T,).

    Columns follow ``data.ROLE_NAMES``: relevant, weakly-relevant aligned, weakly-relevant opposite,
    irrelevant. Rows sum to 1.
    """
    one_hot = (roles[:, None] == jnp.arange(len(ROLE_NAMES))).astype(attention.dtype)  # (T, 4)
    return attention @ one_hot


def relevant_attention(attention: jax.Array, roles: jax.Array) -> jax.Array:
    """Σ_{t∈R} s_t: attention on the relevant tokens, (n,) for attention (n, T) and roles (T,)."""
    return jnp.sum(jnp.where(roles == RELEVANT, attention, 0.0), axis=-1)


def saturation(attention: jax.Array, roles: jax.Array) -> jax.Array:
    """𝔖⁽ⁱ⁾ = (Σ_{t∈R} s_t)(1 − Σ_{t∈R} s_t), (n,): the softmax's vanishing update factor on relevant tokens."""
    relevant = relevant_attention(attention, roles)
    return relevant * (1.0 - relevant)


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of ``values`` (n, …) over the rows where ``mask`` (n,) holds, (…); NaN when none does."""
    mask = mask.reshape(mask.shape + (1,) * (values.ndim - 1))
    return jnp.sum(jnp.where(mask, values, 0.0), axis=0) / jnp.sum(mask, axis=0)


def saturation_by_group(values: jax.Array, clean_labels: jax.Array, noisy_mask: jax.Array) -> jax.Array:
    """Sums of a per-sample quantity by (class, group), (2, 2).

    Rows: clean class y = +1, y = −1; columns: clean samples (𝒞), noisy samples (𝒩).

    Args:
      values: per-sample values, e.g. 𝔖⁽ⁱ⁾, (n,).
      clean_labels: y, (n,).
      noisy_mask: (n,) bool.
    """
    in_class = jnp.stack([clean_labels > 0, clean_labels < 0])  # (2, n)
    in_group = jnp.stack([~noisy_mask, noisy_mask])  # (2, n)
    members = in_class[:, None, :] & in_group[None, :, :]  # (2, 2, n)
    return jnp.sum(jnp.where(members, values, 0.0), axis=-1)


BENIGN, HARMFUL, NOT_OVERFITTING = 0, 1, 2
REGIME_NAMES = ("benign", "harmful", "not overfitting")


def regime(train_accuracy: jax.Array, test_accuracy: jax.Array, tolerance: float = 0.005) -> jax.Array:
    """The paper's three regimes as int codes (``REGIME_NAMES`` order), elementwise.

    benign: every training label fitted (noisy ones included) and test accuracy >= 1 − ``tolerance``;
    harmful: every training label fitted and test accuracy < 1 − ``tolerance``;
    not overfitting: some training label (in practice a noisy one) not fitted.
    """
    fitted = train_accuracy >= 1.0
    return jnp.where(fitted, jnp.where(test_accuracy >= 1.0 - tolerance, BENIGN, HARMFUL), NOT_OVERFITTING)


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


def attention_gaps(logits: jax.Array, roles: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Λ_{i,t} = a_{i,r} − a_{i,t} and Γ_{i,t} = a_{i,u} − a_{i,t}, each (n, T), for logits a (n, T).

    r is the first relevant token and u the first weakly-relevant opposite token (``roles``: (T,)); if the
    layout has no opposite token, Γ is NaN.
    """
    relevant = jnp.argmax(roles == RELEVANT)
    has_opposite = jnp.any(roles == WEAK_OPPOSITE)
    opposite = jnp.argmax(roles == WEAK_OPPOSITE)
    lam = logits[..., relevant, None] - logits
    gamma = jnp.where(has_opposite, logits[..., opposite, None] - logits, jnp.nan)
    return lam, gamma


def mean_gaps(logits: jax.Array, roles: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Λ̄_i = a_{i,r} − mean_{t≠r} a_{i,t} and Γ̄_i = a_{i,u} − mean_{t≠u} a_{i,t}, each (n,), for logits (n, T).

    Sample i's relevant token r (first weak-opposite token u) ahead of the mean of its other tokens: the x of
    the growth function's model, where one token leads the others by x. Γ̄ is NaN without an opposite token.
    """
    lam, gamma = attention_gaps(logits, roles)
    others = logits.shape[-1] - 1
    return jnp.sum(lam, axis=-1) / others, jnp.sum(gamma, axis=-1) / others


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


# --- Measured regime boundaries and their exponents (docs/model.md §7: SNR = ‖μ‖/(σ√d)) -------------------------------
# [exact] v3: harmful for SNR = o(d^(−1/4)), not overfitting for SNR = ω(n^(−1/2)). [reading] In the (d, ‖μ‖)
# plane: harmful below ‖μ‖ ≈ c_h σ d^(1/4) (slope ¼ in log–log), not overfitting above ‖μ‖ ≈ c_no σ √(d/n)
# (slope ½). The constants are not in the paper's recoverable text: they are estimated here from runs.

THEORY_SLOPES = {"harmful": 0.25, "not_overfitting": 0.5}


@dataclasses.dataclass(frozen=True)
class Boundaries:
    """Measured regime boundaries of a (d, ‖μ‖) sweep, one per d.

    Attributes:
      d: (D,) the sweep's d values.
      harmful: (D,) ‖μ‖ where the majority regime switches from harmful to benign (NaN: no switch on the grid).
      not_overfitting: (D,) ‖μ‖ where it switches from benign to not overfitting (NaN: none).
      harmful_error, not_overfitting_error: (D,) bootstrap standard deviations (over seeds) of the above.
      harmful_replicates, not_overfitting_replicates: (B, D) the bootstrap replicates (for fits).
      n_train, sigma: the sweep's n and σ (the boundaries' scale).
    """

    d: np.ndarray
    harmful: np.ndarray
    not_overfitting: np.ndarray
    harmful_error: np.ndarray
    not_overfitting_error: np.ndarray
    harmful_replicates: np.ndarray
    not_overfitting_replicates: np.ndarray
    n_train: int
    sigma: float


def _switch(lower: np.ndarray, upper: np.ndarray, signal_norms: np.ndarray, *, last: bool) -> np.ndarray:
    """‖μ‖ where ``upper − lower`` (seed fractions, (..., M) over increasing ‖μ‖) turns from < 0 to >= 0,
    interpolated linearly in log ‖μ‖; the first such turn (``last=False``) or the last one. NaN where there is
    none. Boundaries are searched from the side of their own region (the harmful one from small ‖μ‖, the
    not-overfitting one from large ‖μ‖), so a stray seed on the far side of the grid cannot move them."""
    difference = upper - lower
    below = difference < 0
    crossing = below[..., :-1] & ~below[..., 1:]
    found = crossing.any(axis=-1)
    if last:
        j = crossing.shape[-1] - 1 - np.argmax(crossing[..., ::-1], axis=-1)
    else:
        j = np.argmax(crossing, axis=-1)
    x = np.log(signal_norms)
    left = np.take_along_axis(difference, j[..., None], -1)[..., 0]
    right = np.take_along_axis(difference, j[..., None] + 1, -1)[..., 0]
    share = np.where(right != left, -left / np.where(right != left, right - left, 1.0), 0.0)
    position = np.where(found, x[j] + share * (x[j + 1] - x[j]), np.nan)
    return np.exp(position)


def boundaries(result, *, select: dict | None = None, bootstraps: int = 200, seed: int = 0) -> Boundaries:
    """The ‖μ‖ of each regime switch at every d of a ``SweepResult`` over (d, ‖μ‖) × seeds.

    At each d, the seed fractions of the three regimes are taken along increasing ‖μ‖; the harmful boundary is
    where the harmful fraction falls below the benign one, the not-overfitting boundary where the
    not-overfitting fraction rises to the benign one — each interpolated between grid points (in log ‖μ‖),
    not picked as a cell. Uncertainty: resampling seeds with replacement ``bootstraps`` times.

    Args:
      result: a sweep with axes ``d`` and ``signal_norm``; any other axis must be fixed by ``select``.
      select: values of further axes, e.g. ``{"noise_rate": 0.2}``.
      bootstraps: bootstrap replicates (0: no uncertainty, errors NaN).
      seed: the bootstrap's numpy seed.
    """
    codes = _plane_codes(result, select)  # (D, M, S), ‖μ‖ increasing
    signal_norms = np.sort(np.asarray(result.coords["signal_norm"], np.float64))
    rng = np.random.default_rng(seed)
    seeds = codes.shape[-1]
    draws = [np.arange(seeds)] + [rng.integers(0, seeds, seeds) for _ in range(bootstraps)]
    estimates = []
    for draw in draws:
        fractions = [np.mean(codes[..., draw] == code, axis=-1) for code in (BENIGN, HARMFUL, NOT_OVERFITTING)]
        benign, harmful, not_overfitting = fractions
        estimates.append(
            (
                _switch(harmful, benign, signal_norms, last=False),
                _switch(benign, not_overfitting, signal_norms, last=True),
            )
        )
    harmful_all = np.stack([e[0] for e in estimates])
    not_all = np.stack([e[1] for e in estimates])

    def spread(replicates: np.ndarray) -> np.ndarray:
        if bootstraps == 0:
            return np.full(replicates.shape[1:], np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a d without any switch stays NaN
            return np.nanstd(replicates, axis=0)

    return Boundaries(
        d=np.asarray(result.coords["d"]),
        harmful=harmful_all[0],
        not_overfitting=not_all[0],
        harmful_error=spread(harmful_all[1:]),
        not_overfitting_error=spread(not_all[1:]),
        harmful_replicates=harmful_all[1:],
        not_overfitting_replicates=not_all[1:],
        n_train=int(result.config.n_train),
        sigma=float(result.config.sigma),
    )


def _plane_codes(result, select) -> np.ndarray:
    """Regime codes (D, M, S) on the (d, ‖μ‖) plane, ‖μ‖ sorted increasing; other axes fixed by ``select``."""
    dims = list(result.dims[:-1])
    for name in ("d", "signal_norm"):
        if name not in dims:
            raise ValueError(f"boundaries need a sweep over d and signal_norm; its axes are {dims}")
    select = dict(select or {})
    index = []
    for name in dims:
        if name in ("d", "signal_norm"):
            index.append(slice(None))
        elif name in select:
            matches = np.flatnonzero(np.isclose(result.coords[name], select[name]))
            if not matches.size:
                raise ValueError(f"select[{name!r}] = {select[name]!r} is not a grid value: {result.coords[name]}")
            index.append(int(matches[0]))
        elif len(result.coords[name]) == 1:
            index.append(0)
        else:
            raise ValueError(
                f"axis {name!r} has {len(result.coords[name])} values: fix one with select={{{name!r}: v}}"
            )
    codes = np.asarray(result.regime)[tuple(index)]
    if dims.index("d") > dims.index("signal_norm"):
        codes = np.swapaxes(codes, 0, 1)
    order = np.argsort(np.asarray(result.coords["signal_norm"]))
    return codes[:, order]


def _line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


#: A boundary's exponent is fitted only over d values spanning at least this factor (largest / smallest):
#: over a narrower span, log d barely varies and the slope is set by the seed noise of a few points.
MIN_D_SPAN = 4.0


def fit_boundaries(measured, *, min_points: int = 3, min_span: float = MIN_D_SPAN) -> dict[str, dict]:
    """Fit log ‖μ‖ = a + b·log d to each measured boundary; b against the theory's ¼ (harmful) and ½ (not
    overfitting), and the constants c_h = ‖μ‖/(σ d^(1/4)), c_no = ‖μ‖/(σ√(d/n)) (geometric means over d).

    Confidence intervals (95 %, percentile) come from refitting every bootstrap replicate of ``boundaries``.

    Args:
      measured: ``Boundaries`` from ``boundaries(result)``, or a ``SweepResult`` over (d, ‖μ‖) (its boundaries
        are located first, with ``boundaries``' defaults).
      min_points: fewest d values with a boundary for a fit.
      min_span: smallest ratio of the largest to the smallest of those d values for a fit.

    Returns:
      {"harmful": {...}, "not_overfitting": {...}}, each with ``slope``, ``slope_ci``, ``theory_slope``,
      ``intercept``, ``constant`` (c_h or c_no), ``constant_ci``, ``d`` (the d values used), ``points`` and
      ``reason``: ``""`` for a fit, else why there is none (``slope`` and the rest NaN): fewer than
      ``min_points`` d values with a boundary, or a span of d below ``min_span``.
    """
    if not isinstance(measured, Boundaries):
        if not (hasattr(measured, "coords") and hasattr(measured, "final")):
            raise TypeError(
                f"fit_boundaries takes theory.boundaries(result) or a SweepResult, got {type(measured).__name__}"
            )
        measured = boundaries(measured)
    fits = {}
    for kind, theory_slope in THEORY_SLOPES.items():
        values = getattr(measured, kind)
        replicates = getattr(measured, f"{kind}_replicates")
        scale = measured.sigma * (
            np.sqrt(measured.d / measured.n_train) if kind == "not_overfitting" else measured.d**0.25
        )
        used = np.isfinite(values)
        span = float(measured.d[used].max() / measured.d[used].min()) if used.any() else 1.0
        reason = ""
        if used.sum() < min_points:
            reason = f"a boundary at {int(used.sum())} value(s) of d (a fit needs >= {min_points})"
        elif span < min_span:
            reason = f"d values with a boundary span ×{span:.2g} (a fit needs >= ×{min_span:g})"
        fit = {"theory_slope": theory_slope, "d": measured.d[used].tolist(), "points": int(used.sum())}
        fit["reason"] = reason
        if reason:
            fits[kind] = {
                **fit,
                "slope": np.nan,
                "slope_ci": (np.nan, np.nan),
                "intercept": np.nan,
                "constant": np.nan,
                "constant_ci": (np.nan, np.nan),
            }
            continue
        x = np.log(measured.d[used].astype(np.float64))
        slope, intercept = _line_fit(x, np.log(values[used]))
        slopes, constants = [], []
        for replicate in replicates:
            inside = used & np.isfinite(replicate)
            if inside.sum() >= min_points:
                slopes.append(_line_fit(np.log(measured.d[inside].astype(np.float64)), np.log(replicate[inside]))[0])
                constants.append(np.exp(np.mean(np.log(replicate[inside] / scale[inside]))))
        fits[kind] = {
            **fit,
            "slope": slope,
            "slope_ci": tuple(np.percentile(slopes, [2.5, 97.5]).tolist()) if slopes else (np.nan, np.nan),
            "intercept": intercept,
            "constant": float(np.exp(np.mean(np.log(values[used] / scale[used])))),
            "constant_ci": tuple(np.percentile(constants, [2.5, 97.5]).tolist()) if constants else (np.nan, np.nan),
        }
    return fits


def n_exponent(measured: list[Boundaries], *, min_points: int = 2) -> dict:
    """How the not-overfitting boundary moves with n at fixed d: the slope b of log ‖μ‖ = a_d + b·log n (one
    intercept per d, pooled over the d values every sweep shares), against the theory's −½.

    Args:
      measured: ``boundaries`` of sweeps that differ in ``n_train`` (n fixes shapes, so one sweep per n).

    Returns:
      {"slope", "slope_ci" (bootstrap 95 %), "theory_slope": −0.5, "n": [...], "d": [...]}.
    """
    if len(measured) < min_points or len({m.n_train for m in measured}) < min_points:
        raise ValueError(f"n_exponent needs boundaries of >= {min_points} sweeps with different n_train")
    common = sorted(set.intersection(*(set(m.d.tolist()) for m in measured)))

    def pooled(rows: list[np.ndarray]) -> float:
        xs, ys = [], []
        logs = np.log([m.n_train for m in measured])
        for column in range(len(common)):
            values = np.array([row[column] for row in rows])
            ok = np.isfinite(values)
            if ok.sum() >= min_points:
                xs.append(logs[ok] - logs[ok].mean())
                ys.append(np.log(values[ok]) - np.log(values[ok]).mean())
        if not xs:
            return np.nan
        x, y = np.concatenate(xs), np.concatenate(ys)
        return float(np.sum(x * y) / np.sum(x * x))

    def at_common(m: Boundaries, values: np.ndarray) -> np.ndarray:
        return np.array([values[list(m.d).index(d)] for d in common])

    slope = pooled([at_common(m, m.not_overfitting) for m in measured])
    count = min(len(m.not_overfitting_replicates) for m in measured)
    slopes = [pooled([at_common(m, m.not_overfitting_replicates[b]) for m in measured]) for b in range(count)]
    slopes = [s for s in slopes if np.isfinite(s)]
    return {
        "slope": slope,
        "slope_ci": tuple(np.percentile(slopes, [2.5, 97.5]).tolist()) if slopes else (np.nan, np.nan),
        "theory_slope": -0.5,
        "n": [m.n_train for m in measured],
        "d": common,
    }
