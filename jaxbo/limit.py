"""The t → ∞ limit of a run: max-margin token selection (the attention SVM), solved and certified.

For the attention model with a fixed head ν and a fixed W (W = I in the paper's analysis), gradient descent on
the query p sends ‖p‖ → ∞, and p/‖p‖ converges to the solution of the attention SVM of a *locally optimal*
selection α (one token α_i per training sample): Tarzanagh, Li, Zhang & Oymak, *Max-Margin Token Selection in
Attention Mechanism* (NeurIPS 2023, arXiv 2306.13596; their Att-SVM, Definition 2 and Theorems 2–3),

    p_mm(α) = argmin ‖p‖  s.t.  (x_{i,α_i} − x_{i,t})ᵀ Wᵀ p ≥ 1   for every sample i and token t ≠ α_i

(in jaxbo's convention the logits are a_t = x_tᵀWᵀp). In the limit, attention is hard selection: training
sample i reads x_{i,α_i}, a test sample the token with the largest x_tᵀWᵀp_mm. Which α gradient descent picks
is not given by the theory; a run's own α̂ (the token each training sample attends most at the horizon) is.

**Locally optimal** (Tarzanagh et al., Definition 2, with their token scores Y_i·vᵀx_{it} read in jaxbo's
words): let the *support tokens* 𝒯_i of sample i be the t ≠ α_i whose constraint is active at p_mm(α),
(x_{i,α_i} − x_{i,t})ᵀWᵀp_mm = 1. α is locally optimal when every support token scores below the selected
token in label-signed score, ỹ_i νᵀx_{i,t} < ỹ_i νᵀx_{i,α_i} for all i and t ∈ 𝒯_i. A run whose α̂ fails it is
*unsettled*: moving toward p_mm(α̂) would raise its loss along some support token, so its selection will still
change, and its hard-selection metrics are not its limit.

**The dual in kernel coordinates.** With constraint vectors c_k = W(x_{i,α_i} − x_{i,t}) (k = (i, t), K =
n(T − 1) of them) the dual is min ½λᵀQλ − 1ᵀλ over λ ≥ 0 with Q_kl = c_kᵀc_l, and p_mm = Σ_k λ_k c_k. Q comes
from the Gram matrix of the rows Wx of the training tokens alone, so it is dimension-free: the reduced engine
solves it in its 2 + nT coordinates exactly as the primal engine does in d. KKT: margins m = Qλ, m ≥ 1, λ ≥ 0,
λ_k(m_k − 1) = 0; the natural residual max_k |min(λ_k Q_kk, m_k − 1)| is 0 exactly there (in margin units).

**Solver.** Accelerated projected gradient (FISTA) on the Jacobi-scaled dual (Q̂ = SQS, S = diag(Q)^−½),
with O'Donoghue–Candès gradient restarts, a step 1/L from a power-iteration estimate of Q̂'s largest
eigenvalue (capped by Gershgorin's bound), until the natural residual is below ``tolerance``. Written in plain
XLA operations, so it is jit-able and vmapped with the runs (a QP library would add a dependency for one
projected-gradient loop). Infeasible SVMs (possible when d < nT: the differences can span too little) make the
dual unbounded: λ then grows along a ray where λᵀQλ ≪ 1ᵀλ, while at the optimum λᵀQλ = 1ᵀλ; a run that does
not converge with λᵀQλ < ``INFEASIBLE_RATIO``·1ᵀλ is called infeasible, any other that does not converge
unsolved.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxbo.loss import accuracy_and_loss
from jaxbo.metrics import masked_mean
from jaxbo.model import PRECISION

#: A run's limit status, by code: settled (α̂ locally optimal, SVM solved), unsettled (certificate fails),
#: infeasible (no p separates α̂'s tokens), unsolved (the solver did not reach its tolerance).
LIMIT_STATUS = ("settled", "unsettled", "infeasible", "unsolved")
SETTLED, UNSETTLED, INFEASIBLE, UNSOLVED = range(len(LIMIT_STATUS))
#: Natural-residual tolerance of the dual, in margin units (the margins are 1 on the support).
TOLERANCE = 1e-4
#: A support token is one whose margin is within this of 1 (Tarzanagh et al.'s active constraints).
ACTIVE = 1e-3
MAX_ITERATIONS = 20_000
#: FISTA steps between two residual checks: a check costs one more product with Q, a step one.
CHECK_EVERY = 8
#: λᵀQλ / 1ᵀλ below which a dual that did not converge is unbounded (the SVM infeasible); 1 at the optimum.
INFEASIBLE_RATIO = 1e-2
#: 1ᵀλ · max Q_kk beyond which the dual is unbounded: at the optimum it is (c/δ)², c the longest constraint
#: vector and δ the margin, so this is a margin below 10⁻⁶ of the data's scale, past float32's resolution.
UNBOUNDED = 1e12


class DualSolution(NamedTuple):
    """The dual of one attention SVM: λ (K,), margins m = Qλ (K,), the natural residual, iterations and
    whether it converged and (if not) whether the dual looked unbounded (infeasible SVM)."""

    multipliers: jax.Array
    margins: jax.Array
    residual: jax.Array
    iterations: jax.Array
    converged: jax.Array
    infeasible: jax.Array


def natural_residual(multipliers: jax.Array, margins: jax.Array, diagonal: jax.Array) -> jax.Array:
    """max_k |min(λ_k Q_kk, m_k − 1)|: 0 exactly at the KKT point of min ½λᵀQλ − 1ᵀλ, λ ≥ 0 (margin units)."""
    return jnp.max(jnp.abs(jnp.minimum(multipliers * diagonal, margins - 1.0)))


def largest_eigenvalue(matrix: jax.Array, iterations: int = 50) -> jax.Array:
    """An upper estimate of a PSD matrix's largest eigenvalue: 1.2 × a power iteration's, capped by Gershgorin."""
    gershgorin = jnp.max(jnp.sum(jnp.abs(matrix), axis=-1))

    def power(vector, _):
        product = jnp.matmul(matrix, vector, precision=PRECISION)
        return product / jnp.maximum(jnp.linalg.norm(product), 1e-30), None

    start = jnp.ones(matrix.shape[-1], matrix.dtype) / jnp.sqrt(matrix.shape[-1])
    vector, _ = jax.lax.scan(power, start, length=iterations)
    rayleigh = vector @ jnp.matmul(matrix, vector, precision=PRECISION)
    return jnp.minimum(1.2 * rayleigh, gershgorin)


def solve_dual(gram: jax.Array, *, tolerance: float = TOLERANCE, max_iterations: int = MAX_ITERATIONS) -> DualSolution:
    """λ ≥ 0 minimising ½λᵀQλ − 1ᵀλ for Q = ``gram`` (K, K) PSD with a positive diagonal; jit-able.

    Jacobi-scaled FISTA with gradient restarts (module docstring), stopped when the natural residual, checked
    every ``CHECK_EVERY`` steps, is below ``tolerance``, or after ``max_iterations`` (static). ``converged`` is
    the loop's own verdict (a residual recomputed outside the loop may differ in float32 rounding).
    """
    diagonal = jnp.maximum(jnp.diagonal(gram), 1e-30)
    scale = 1.0 / jnp.sqrt(diagonal)
    scaled = gram * scale[:, None] * scale[None, :]  # unit diagonal
    step = 1.0 / largest_eigenvalue(scaled)

    def residual_of(mu):
        margins = jnp.matmul(gram, mu * scale, precision=PRECISION)
        return natural_residual(mu * scale, margins, diagonal), margins

    def fista(state, _):
        mu, previous, momentum, count = state
        extrapolated = mu + ((count - 1.0) / (count + 2.0)) * (mu - previous) * momentum
        gradient = jnp.matmul(scaled, extrapolated, precision=PRECISION) - scale
        updated = jnp.maximum(extrapolated - step * gradient, 0.0)
        # Restart the momentum when the step goes against the gradient (O'Donoghue & Candès, 2015).
        keep = jnp.where(jnp.vdot(gradient, updated - mu) > 0, 0.0, 1.0)
        return (updated, mu, keep, count + 1.0), None

    def body(state):
        inner, _ = jax.lax.scan(fista, state[:4], length=CHECK_EVERY)
        return (*inner, residual_of(inner[0])[0])

    def size(mu):
        return jnp.sum(mu * scale) * jnp.max(diagonal)

    def going(state):
        # Stop on convergence, on the cap, or once λ grows past any feasible problem's (before it overflows).
        return (state[4] > tolerance) & (state[3] < max_iterations) & (size(state[0]) <= UNBOUNDED)

    start = jnp.zeros_like(scale)
    mu, _, _, count, loop_residual = jax.lax.while_loop(
        going, body, (start, start, jnp.ones(()), jnp.zeros(()), jnp.inf)
    )
    residual, margins = residual_of(mu)
    multipliers = mu * scale
    total = jnp.sum(multipliers)
    converged = loop_residual <= tolerance
    unbounded = (size(mu) > UNBOUNDED) | (jnp.vdot(multipliers, margins) < INFEASIBLE_RATIO * total)
    return DualSolution(multipliers, margins, residual, count, converged, ~converged & unbounded)


def others(selected: jax.Array, T: int) -> jax.Array:
    """The T − 1 tokens t ≠ α_i of each sample, in order: (n, T − 1) int, for ``selected`` α (n,)."""
    base = jnp.arange(T - 1)
    return base[None, :] + (base[None, :] >= selected[:, None])


def constraint_gram(gram: jax.Array, selected: jax.Array, T: int) -> jax.Array:
    """Q_kl = (r_{iα_i} − r_{it})ᵀ(r_{jα_j} − r_{ju}) for k = (i, t), l = (j, u), from the Gram matrix of the
    training rows r (``gram``: (nT, nT), sample-major), (K, K) with K = n(T − 1)."""
    n = selected.shape[0]
    chosen = jnp.arange(n) * T + selected  # (n,) flat index of α_i
    rest = (jnp.arange(n)[:, None] * T + others(selected, T)).reshape(-1)  # (K,)
    owner = jnp.repeat(chosen, T - 1)  # (K,) the α of each constraint's sample
    return gram[owner][:, owner] - gram[owner][:, rest] - gram[rest][:, owner] + gram[rest][:, rest]


def row_coefficients(multipliers: jax.Array, selected: jax.Array, T: int) -> jax.Array:
    """β with p_mm = Σ_k λ_k (r_{iα_i} − r_{it}) = Σ_j β_j r_j: (nT,), for λ (K,)."""
    n = selected.shape[0]
    per_sample = multipliers.reshape(n, T - 1)
    coefficients = jnp.zeros((n, T), multipliers.dtype)
    coefficients = coefficients.at[jnp.arange(n)[:, None], others(selected, T)].set(-per_sample)
    coefficients = coefficients.at[jnp.arange(n), selected].set(jnp.sum(per_sample, axis=-1))
    return coefficients.reshape(-1)


def pair_gram(gram: jax.Array, winners: jax.Array, losers: jax.Array) -> jax.Array:
    """Q_kl = (r_{w_k} − r_{l_k})ᵀ(r_{w_l} − r_{l_l}) for constraints given as flat row indices (winner w, loser
    l), each (K,), from the Gram matrix of the training rows (``gram``: (nT, nT)): (K, K). ``constraint_gram``
    is the case of one winner per sample."""
    return gram[winners][:, winners] - gram[winners][:, losers] - gram[losers][:, winners] + gram[losers][:, losers]


def pair_coefficients(multipliers: jax.Array, winners: jax.Array, losers: jax.Array, size: int) -> jax.Array:
    """β with p_mm = Σ_k λ_k (r_{w_k} − r_{l_k}) = Σ_j β_j r_j: (size,), for λ, winners and losers (K,)."""
    coefficients = jnp.zeros(size, multipliers.dtype).at[winners].add(multipliers)
    return coefficients.at[losers].add(-multipliers)


def limit_status(solution: DualSolution, violations: jax.Array) -> jax.Array:
    """The ``LIMIT_STATUS`` code of a solved dual and its certificate's violations."""
    return jnp.where(
        solution.infeasible,
        INFEASIBLE,
        jnp.where(~solution.converged, UNSOLVED, jnp.where(violations > 0, UNSETTLED, SETTLED)),
    )


@dataclasses.dataclass(frozen=True)
class Limit:
    """The t → ∞ limit of one run (``simulate(..., limit=True)``; in a sweep, ``final["limit_<field>"]``).

    Attributes:
      status: ``LIMIT_STATUS`` code: 0 settled, 1 unsettled, 2 infeasible, 3 unsolved.
      train_accuracy, clean_accuracy, noisy_fit: under hard selection of α̂ (ỹ_i νᵀx_{i,α̂_i} > 0); NaN when
        infeasible.
      test_accuracy, test_loss: hard selection by p_mm on the run's own test draw (the engine's exact
        projected draw, extended by one coordinate along p_mm, where the run has no full test set); NaN when
        infeasible.
      correlation: cos(p, p_mm) of the horizon's p with the limit's direction (W = I: in the engine's
        coordinates, which preserve inner products); NaN when infeasible.
      violations: support tokens whose label-signed score is not below α̂'s (0 for a settled run).
      support: support tokens (active constraints, margin within ``ACTIVE`` of 1).
      margin: the SVM's margin 1/‖p_mm‖.
      residual: the dual's natural KKT residual (margin units).
      iterations: solver iterations.
      selection: α̂, the token each training sample attends most at the horizon, (n_train,) int32.
    """

    status: jax.Array
    train_accuracy: jax.Array
    clean_accuracy: jax.Array
    noisy_fit: jax.Array
    test_accuracy: jax.Array
    test_loss: jax.Array
    correlation: jax.Array
    violations: jax.Array
    support: jax.Array
    margin: jax.Array
    residual: jax.Array
    iterations: jax.Array
    selection: jax.Array


jax.tree_util.register_dataclass(Limit, data_fields=[f.name for f in dataclasses.fields(Limit)], meta_fields=[])


@dataclasses.dataclass(frozen=True)
class CausalLimit(Limit):
    """The ``Limit`` of a run of the causal model (``jaxbo.causal_model``): the shared fields read as its
    ``CausalMetrics`` do (``train_accuracy`` over every target, ``test_accuracy`` the worst position's),
    ``selection`` is the last prefix's α̂ (n,), and

    Attributes:
      attainable_fit: targets fitted under hard selection over Σ_i M_i (``causal_model.attainable``).
      position_accuracy: hard-selection test accuracy at each prefix τ = τ₀ … T, (P,).
    """

    attainable_fit: jax.Array
    position_accuracy: jax.Array


jax.tree_util.register_dataclass(
    CausalLimit, data_fields=[f.name for f in dataclasses.fields(CausalLimit)], meta_fields=[]
)


def certificate(selected: jax.Array, margins: jax.Array, signed_scores: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(violations, support) of Tarzanagh et al.'s local optimality for α̂ = ``selected`` (n,): support tokens
    (margins (n, T − 1) within ``ACTIVE`` of 1) whose label-signed score ỹνᵀx (``signed_scores`` (n, T)) is
    not below the selected token's."""
    T = signed_scores.shape[-1]
    rest = others(selected, T)
    mine = jnp.take_along_axis(signed_scores, selected[:, None], axis=-1)
    theirs = jnp.take_along_axis(signed_scores, rest, axis=-1)
    support = margins <= 1.0 + ACTIVE
    return jnp.sum(support & (theirs >= mine)), jnp.sum(support)


def limit_of(
    rows: jax.Array,
    p: jax.Array,
    query: jax.Array,
    train,
    train_gamma: jax.Array,
    test_logits_of,
    test_gamma: jax.Array,
    test_labels: jax.Array,
    to_query=None,
    *,
    max_iterations: int = MAX_ITERATIONS,
) -> Limit:
    """The ``Limit`` of a run of the attention model from its training set and final query.

    Args:
      rows: the training tokens as the SVM's p sees them, W x_{i,t}: (n, T, width_p) (the tokens for W = I).
      p: the horizon's p, (width_p,), for cos(p, p_mm).
      query: the horizon's query Wᵀp, (width,): α̂_i = argmax_t x_{i,t}ᵀ query.
      train: the training ``Dataset`` (tokens (n, T, width), observed labels ỹ, noisy mask).
      train_gamma: γ = Xν, (n, T).
      test_logits_of: ``q_mm -> (n_test, T)`` test logits x_tᵀq_mm on the run's test draw.
      test_gamma: test token scores γ, (n_test, T); test_labels: (n_test,).
      to_query: p → Wᵀp for a p of the rows' space (None: W = I).
      max_iterations: the dual solver's cap (static).
    """
    n, T = train_gamma.shape
    logits = jnp.einsum("ntd,d->nt", train.tokens, query, precision=PRECISION)
    selected = jnp.argmax(logits, axis=-1)
    flat = rows.reshape(n * T, -1)
    gram = jnp.matmul(flat, flat.T, precision=PRECISION)
    solution = solve_dual(constraint_gram(gram, selected, T), max_iterations=max_iterations)
    p_mm = jnp.matmul(row_coefficients(solution.multipliers, selected, T), flat, precision=PRECISION)
    q_mm = p_mm if to_query is None else to_query(p_mm)
    violations, support = certificate(selected, solution.margins.reshape(n, T - 1), train.labels[:, None] * train_gamma)
    status = limit_status(solution, violations)
    chosen = jnp.take_along_axis(train_gamma, selected[:, None], axis=-1)[:, 0]
    train_accuracy, _ = accuracy_and_loss(chosen, train.labels)
    fitted = train.labels * chosen > 0
    test_selected = jnp.argmax(test_logits_of(q_mm), axis=-1)
    test_chosen = jnp.take_along_axis(test_gamma, test_selected[:, None], axis=-1)[:, 0]
    test_accuracy, test_loss = accuracy_and_loss(test_chosen, test_labels)
    norm = jnp.linalg.norm(p_mm)
    correlation = jnp.vdot(p, p_mm) / jnp.maximum(jnp.linalg.norm(p) * norm, 1e-30)
    defined = status != INFEASIBLE
    value = lambda x: jnp.where(defined, x, jnp.nan)  # noqa: E731 - one rule for every metric of the limit
    return Limit(
        status=status.astype(jnp.int32),
        train_accuracy=value(train_accuracy),
        clean_accuracy=value(masked_mean(fitted, ~train.noisy_mask)),
        noisy_fit=value(masked_mean(fitted, train.noisy_mask)),
        test_accuracy=value(test_accuracy),
        test_loss=value(test_loss),
        correlation=value(correlation),
        violations=violations.astype(jnp.int32),
        support=support.astype(jnp.int32),
        margin=value(1.0 / jnp.maximum(norm, 1e-30)),
        residual=solution.residual,
        iterations=solution.iterations.astype(jnp.int32),
        selection=selected.astype(jnp.int32),
    )


def not_covered(config, optimizer, engine) -> list[str]:
    """Why ``limit=True`` does not apply to ``config`` run by ``engine`` (each reason names the field and
    value); ``[]`` when it does. The max-margin limit is gradient descent's on p alone, with ν and W fixed and
    one head from p = 0, for an engine that declares it (``Engine.limit``)."""
    reasons = []
    if not engine.limit:
        reasons.append(f"the {engine.name} engine of Config.model = {config.model!r} computes no limit")
    if config.model == "attention" and config.attention == "trained":
        reasons.append(
            "Config.attention = 'trained' (the attention SVM's limit holds for a fixed W: 'identity' or 'fixed')"
        )
    if config.model == "attention" and config.variant:
        reasons.append(
            f"Config.heads = {config.heads}, train_head = {config.train_head}, query_init_std = "
            f"{config.query_init_std} (the limit is the one-head model's with a fixed head from p = 0)"
        )
    if config.model in ("attention", "causal") and config.normaliser != "softmax":
        reasons.append(
            f"Config.normaliser = {config.normaliser!r} (the attention SVM is the softmax's limit: its selection "
            "of one token per sample is what the softmax's saturation does)"
        )
    if optimizer is not None:
        reasons.append(
            f"optimizer = {type(optimizer).__name__} (the max-margin limit is plain gradient descent's: "
            "pass no optimizer)"
        )
    return reasons


def check_covered(config, optimizer, engine) -> None:
    """``ValueError`` naming every reason of ``not_covered``, before anything is traced."""
    reasons = not_covered(config, optimizer, engine)
    if reasons:
        raise ValueError(f"limit=True is not covered here: {'; '.join(reasons)}")
