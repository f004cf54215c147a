"""The t → ∞ limit (``jaxbo.limit``): the attention SVM's dual against float64 scipy, its algebra against
explicit token differences, the certificate against its definition, both engines' coordinates, refusals, and
(slow) that the limit is where gradient descent goes."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.optimize import minimize
from test_reduced import exact_reduction

import jaxbo
from jaxbo import cli, limit
from jaxbo.results import INFEASIBLE_REGIME, LIMIT_REGIME_NAMES, UNSETTLED_REGIME

SMALL = jaxbo.Config(n_train=10, T=5, d=80, n_test=200, steps=300, log_every=100, signal_norm=6.0)


def differences(tokens: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """The constraint vectors x_{i,α_i} − x_{i,t}, t ≠ α_i in order, (n(T − 1), width), written out."""
    n, T = tokens.shape[:2]
    return np.stack([tokens[i, selected[i]] - tokens[i, t] for i in range(n) for t in range(T) if t != selected[i]])


def scipy_svm(rows: np.ndarray) -> np.ndarray:
    """min ‖p‖ s.t. rows·p ≥ 1 in float64, by another method than jaxbo's: scipy's L-BFGS-B on the bound-
    constrained dual min ½λᵀQλ − 1ᵀλ, λ ≥ 0, Q = rows rowsᵀ, then p = rowsᵀλ."""
    Q = rows @ rows.T
    found = minimize(
        lambda lam: (0.5 * lam @ Q @ lam - lam.sum(), Q @ lam - 1.0),
        np.zeros(len(Q)),
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, None)] * len(Q),
        options={"maxiter": 100_000, "ftol": 1e-16, "gtol": 1e-12, "maxcor": 50},
    )
    p = rows.T @ found.x
    assert (rows @ p).min() > 1 - 1e-6, (found.message, (rows @ p).min())
    return p


def random_instance(seed: int, n=12, T=6, d=90, signal=8.0):
    rng = np.random.default_rng(seed)
    tokens = rng.normal(size=(n, T, d))
    labels = np.where(np.arange(n) < n // 2, 1.0, -1.0)
    tokens[:, 0, 0] += signal * (labels > 0)
    tokens[:, 0, 1] += signal * (labels < 0)
    return tokens, rng.integers(0, T, n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_dual_meets_kkt_and_matches_a_float64_solver(seed):
    tokens, selected = random_instance(seed)
    n, T, d = tokens.shape
    flat = tokens.reshape(n * T, d)
    gram = jnp.asarray(flat @ flat.T, jnp.float32)
    solution = jax.jit(limit.solve_dual)(limit.constraint_gram(gram, jnp.asarray(selected), T))
    assert bool(solution.converged) and not bool(solution.infeasible)
    multipliers = np.asarray(solution.multipliers, np.float64)
    p_mm = np.asarray(limit.row_coefficients(jnp.asarray(multipliers), jnp.asarray(selected), T)) @ flat
    rows = differences(tokens, selected)
    margins = rows @ p_mm
    assert margins.min() > 1 - 1e-3  # primal feasibility
    assert np.all(multipliers >= 0)  # dual feasibility
    assert np.max(np.abs(multipliers * (margins - 1))) * np.max(np.diag(rows @ rows.T)) < 1e-2  # slackness
    reference = scipy_svm(rows)
    assert np.linalg.norm(p_mm - reference) / np.linalg.norm(reference) < 1e-3


def test_constraint_gram_and_coefficients_are_the_explicit_differences():
    tokens, selected = random_instance(3, n=4, T=5, d=7)
    n, T, d = tokens.shape
    flat = tokens.reshape(n * T, d)
    rows = differences(tokens, selected)
    Q = np.asarray(limit.constraint_gram(jnp.asarray(flat @ flat.T), jnp.asarray(selected), T))
    np.testing.assert_allclose(Q, rows @ rows.T, rtol=1e-5, atol=1e-4)
    multipliers = np.random.default_rng(0).uniform(size=n * (T - 1))
    beta = np.asarray(limit.row_coefficients(jnp.asarray(multipliers), jnp.asarray(selected), T))
    np.testing.assert_allclose(beta @ flat, rows.T @ multipliers, rtol=1e-5, atol=1e-5)


def test_an_infeasible_svm_is_called_infeasible():
    # Two samples whose differences cancel: x₁ − x₀ in one and x₀ − x₁ in the other cannot both reach 1.
    tokens = np.zeros((2, 3, 4))
    tokens[0, 0], tokens[0, 1], tokens[0, 2] = [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]
    tokens[1] = tokens[0][[1, 0, 2]]
    selected = np.array([0, 0])
    flat = tokens.reshape(6, 4)
    solution = limit.solve_dual(limit.constraint_gram(jnp.asarray(flat @ flat.T), jnp.asarray(selected), 3))
    assert not bool(solution.converged) and bool(solution.infeasible)


@pytest.fixture(scope="module")
def primal_run():
    return jaxbo.simulate(3, SMALL, engine="primal", keep_data=True, limit=True)


def test_the_certificate_is_tarzanagh_et_al_s_local_optimality(primal_run):
    """Recomputed from the run's data: the float64 SVM of α̂, its active constraints, and which of them have a
    label-signed score not below the selected token's."""
    train = primal_run.data[0]
    tokens, labels = np.asarray(train.tokens, np.float64), np.asarray(train.labels, np.float64)
    p = np.asarray(primal_run.params.p, np.float64)
    selected = np.argmax(tokens @ p, axis=-1)
    np.testing.assert_array_equal(primal_run.limit.selection, selected)
    rows = differences(tokens, selected)
    p_mm = scipy_svm(rows)
    active = rows @ p_mm <= 1 + limit.ACTIVE
    scores = labels[:, None] * (tokens @ np.asarray(primal_run.params.nu, np.float64))
    T = tokens.shape[1]
    mine = np.repeat(scores[np.arange(len(selected)), selected], T - 1)
    theirs = np.array([scores[i, t] for i in range(len(selected)) for t in range(T) if t != selected[i]])
    assert int(primal_run.limit.support) == int(active.sum())
    assert int(primal_run.limit.violations) == int(np.sum(active & (theirs >= mine)))
    expected = limit.SETTLED if not np.any(active & (theirs >= mine)) else limit.UNSETTLED
    assert int(primal_run.limit.status) == expected
    np.testing.assert_allclose(float(primal_run.limit.margin), 1 / np.linalg.norm(p_mm), rtol=1e-3)
    cosine = p @ p_mm / (np.linalg.norm(p) * np.linalg.norm(p_mm))
    np.testing.assert_allclose(float(primal_run.limit.correlation), cosine, rtol=1e-3)
    # Hard selection: the selected token's score decides each training sample.
    chosen = (tokens @ np.asarray(primal_run.params.nu, np.float64))[np.arange(len(selected)), selected]
    np.testing.assert_allclose(float(primal_run.limit.train_accuracy), np.mean(labels * chosen > 0))


def test_primal_and_reduced_coordinates_give_the_same_limit():
    """One data set in R^d and in its exact 2 + nT coordinates, one p: the same limit, test metrics included."""
    config = SMALL.replace(d=60)
    (primal_train, primal_test), (reduced_train, reduced_test) = exact_reduction(config, jax.random.key(5))
    rng = np.random.default_rng(1)
    weights = rng.normal(size=primal_train.tokens.shape[:2])
    p = jnp.einsum("nt,ntd->d", jnp.asarray(weights, jnp.float32), primal_train.tokens)  # p in the tokens' span
    noise = np.asarray(primal_train.tokens[..., 2:], np.float64).reshape(-1, config.d - 2)
    basis, _ = np.linalg.qr(noise.T)
    p_reduced = jnp.asarray(np.concatenate([np.asarray(p[:2]), basis.T @ np.asarray(p[2:])]), jnp.float32)
    nu_primal, nu_reduced = jaxbo.model.head(config, config.d), jaxbo.model.head(config, p_reduced.shape[0])

    def of(train, test, query, nu):
        gamma, test_gamma = jnp.einsum("ntd,d->nt", train.tokens, nu), jnp.einsum("ntd,d->nt", test.tokens, nu)
        return limit.limit_of(
            train.tokens, query, query, train, gamma,
            lambda q: jnp.einsum("ntd,d->nt", test.tokens, q), test_gamma, test.labels,
        )  # fmt: skip

    primal = of(primal_train, primal_test, p, nu_primal)
    reduced = of(reduced_train, reduced_test, p_reduced, nu_reduced)
    for name in ("status", "selection", "support", "violations", "train_accuracy", "noisy_fit"):
        np.testing.assert_array_equal(getattr(reduced, name), getattr(primal, name), err_msg=name)
    for name in ("margin", "correlation", "test_loss"):
        np.testing.assert_allclose(getattr(reduced, name), getattr(primal, name), rtol=2e-3, err_msg=name)
    np.testing.assert_allclose(reduced.test_accuracy, primal.test_accuracy, atol=1 / config.n_test + 1e-9)


def test_a_fixed_w_gives_the_same_limit_in_the_kernel_and_the_primal_engine():
    """W fixed random: the SVM's rows are Wx, its query Wᵀp_mm; both engines hold the same W₀ and data."""
    config = SMALL.replace(attention="fixed", d=50)
    kernel = jaxbo.simulate(2, config, engine="kernel", limit=True).limit
    primal = jaxbo.simulate(2, config, engine="primal", limit=True).limit
    for name in ("status", "selection", "support", "violations", "train_accuracy", "test_accuracy"):
        np.testing.assert_array_equal(getattr(kernel, name), getattr(primal, name), err_msg=name)
    for name in ("margin", "correlation", "test_loss"):
        np.testing.assert_allclose(getattr(kernel, name), getattr(primal, name), rtol=2e-3, err_msg=name)
    assert int(kernel.status) != limit.INFEASIBLE and np.isfinite(kernel.margin)


@pytest.mark.slow  # statistical, 48 runs; the same draw's algebra is exact in the primal = reduced test above
def test_the_reduced_engine_draws_the_limits_test_samples_exactly():
    """The reduced engine's final-only limit (a projected test draw gaining one coordinate along q_mm) against
    its full test set: the same law, tested on 24 seeds' limit test accuracy (settled runs)."""
    config = SMALL.replace(n_test=400)
    keys = jax.random.split(jax.random.key(11), 24)
    final_only = jax.jit(jax.vmap(jaxbo.make_run(config, log_history=False, limit=True)))(keys).limit
    full = jax.jit(jax.vmap(jaxbo.make_run(config, log_history=True, limit=True)))(keys).limit
    np.testing.assert_array_equal(final_only.selection, full.selection)  # the same training, the same α̂
    np.testing.assert_array_equal(final_only.status, full.status)
    a, b = np.asarray(final_only.test_accuracy), np.asarray(full.test_accuracy)
    difference = a - b
    error = np.sqrt(np.var(difference, ddof=1) / len(difference)) + 1e-9
    assert abs(np.mean(difference)) < 4 * error + 0.01, (a.mean(), b.mean())


@pytest.mark.parametrize(
    ("changes", "optimizer", "words"),
    [
        ({"attention": "trained"}, None, "Config.attention = 'trained'"),
        ({"heads": 2}, None, "Config.heads = 2"),
        ({"train_head": True}, None, "train_head = True"),
        ({"query_init_std": 0.1}, None, "query_init_std = 0.1"),
        ({"model": "encoder", "mlp_width": 8, "d": 12}, None, "engine of Config.model = 'encoder' computes no limit"),
        ({}, optax.adam(1e-2), "optimizer = GradientTransformationExtraArgs"),
    ],
)
def test_limit_is_refused_before_compiling_where_it_does_not_apply(changes, optimizer, words):
    config = SMALL.replace(**changes)
    with pytest.raises(ValueError, match=r"limit=True is not covered here: .*") as refused:
        jaxbo.simulate(0, config, optimizer, limit=True)
    assert words in str(refused.value)
    with pytest.raises(ValueError, match="limit=True is not covered"):
        jaxbo.sweep({"d": [40]}, seeds=1, config=config, optimizer=optimizer, limit=True, progress=False)
    with pytest.raises(TypeError, match="limit = 'yes' must be True or False"):
        jaxbo.simulate(0, SMALL, limit="yes")


GRID = {"d": [40, 400], "signal_norm": [2.0, 20.0]}


@pytest.fixture(scope="module")
def limit_sweep():
    return jaxbo.sweep(GRID, seeds=3, config=SMALL, limit=True, progress=False)


def test_a_sweep_carries_every_limit_field_through_save_load_and_merge(limit_sweep, tmp_path):
    for field in ("status", "test_accuracy", "correlation", "violations", "margin", "residual"):
        assert limit_sweep.final[f"limit_{field}"].shape == (2, 2, 3)
    assert limit_sweep.final["limit_selection"].shape == (2, 2, 3, SMALL.n_train)
    assert limit_sweep.metadata["limit"] is True and "t → ∞ limit (cells)" in repr(limit_sweep)
    assert set(np.unique(limit_sweep.limit_regime)) <= set(range(len(LIMIT_REGIME_NAMES)))
    loaded = jaxbo.load(limit_sweep.save(tmp_path / "limit")[0])
    np.testing.assert_array_equal(loaded.limit_regime, limit_sweep.limit_regime)
    parts = [jaxbo.sweep({"d": [d], "signal_norm": GRID["signal_norm"]}, seeds=3, config=SMALL, limit=True,
                         progress=False) for d in GRID["d"]]  # fmt: skip
    merged = jaxbo.merge(parts)
    np.testing.assert_array_equal(merged.final["limit_status"], limit_sweep.final["limit_status"])
    # The same runs without the limit: the horizon's numbers do not move when the limit is computed.
    plain = jaxbo.sweep(GRID, seeds=3, config=SMALL, progress=False)
    for name in plain.final:
        np.testing.assert_array_equal(plain.final[name], limit_sweep.final[name], err_msg=name)


def test_a_limit_sweep_resumes_and_refuses_a_store_without_its_limit(limit_sweep, tmp_path):
    arguments = dict(seeds=3, config=SMALL, progress=False, chunk_size=2)
    jaxbo.sweep(GRID, checkpoint=tmp_path, **arguments)
    with pytest.raises(ValueError, match=r"another sweep \(limit: checkpoint None vs now True\)"):
        jaxbo.sweep(GRID, checkpoint=tmp_path, limit=True, **arguments)
    first = jaxbo.sweep(GRID, checkpoint=tmp_path / "limit", limit=True, **arguments)
    again = jaxbo.sweep(GRID, checkpoint=tmp_path / "limit", limit=True, **arguments)
    assert again.metadata["checkpoint"]["chunks_loaded"] == sum(g["chunks"] for g in again.metadata["plan"]["groups"])
    for name in first.final:
        np.testing.assert_array_equal(again.final[name], first.final[name], err_msg=name)
    paired = jaxbo.sweep(GRID, paired=True, limit=True, **arguments)
    assert any("limit=True" in reason for reason in paired.metadata["plan"]["unshared"])


def test_limit_regimes_count_unsettled_and_infeasible_runs_apart():
    status = np.array([[limit.SETTLED] * 4 + [limit.UNSETTLED], [limit.INFEASIBLE] * 3 + [limit.SETTLED] * 2])
    final = {
        "train_accuracy": np.ones((2, 5)),
        "test_accuracy": np.ones((2, 5)),
        "limit_status": status,
        "limit_train_accuracy": np.ones((2, 5)),
        "limit_test_accuracy": np.array([[1.0, 1.0, 1.0, 0.9, 1.0], [np.nan] * 3 + [1.0, 1.0]]),
    }
    result = jaxbo.SweepResult(
        dims=("d", "seed"), coords={"d": np.array([100, 200]), "seed": np.arange(5)}, final=final, history={},
        log_steps=np.zeros(0, np.int64), config=jaxbo.Config(), metadata={"engine": "reduced"},
    )  # fmt: skip
    np.testing.assert_array_equal(result.limit_regime[0], [0, 0, 0, 1, UNSETTLED_REGIME])
    np.testing.assert_array_equal(result.limit_regime[1], [INFEASIBLE_REGIME] * 3 + [0, 0])
    np.testing.assert_array_equal(result.majority_regime(limit=True), [0, INFEASIBLE_REGIME])
    counts = result.regime_counts(limit=True)
    assert counts == {"benign": 1, "harmful": 0, "not overfitting": 0, "unsettled": 0, "infeasible": 1, "tied": 0}
    np.testing.assert_allclose(result.settled_fraction(), [0.8, 0.4])
    np.testing.assert_allclose(result.limit_mean("limit_test_accuracy"), [np.mean([1.0, 1.0, 1.0, 0.9]), 1.0])
    assert result.regime_counts() == {"benign": 2, "harmful": 0, "not overfitting": 0, "tied": 0}  # the horizon's


def test_the_command_line_computes_and_draws_the_limit(tmp_path, capsys):
    small = ["--set", "n_train=6", "--set", "T=4", "--set", "n_test=16", "--set", "steps=20", "--set", "log_every=10"]
    assert cli.main(["run", "--limit", "--out", str(tmp_path), *small]) == 0
    assert "t → ∞ limit: " in capsys.readouterr().out
    argv = ["sweep", "--d", "40,400", "--signal-norm", "2,20", "--seeds", "2", "--limit", "--out", str(tmp_path)]
    assert cli.main([*argv, *small]) == 0
    out = capsys.readouterr().out
    assert "t → ∞ limit: cells benign" in out and "limit majority" in out
    saved = json.loads((tmp_path / "phase_diagram.json").read_text())
    assert saved["metadata"]["limit"] is True
    figure = jaxbo.plot.phase_diagram(jaxbo.load(tmp_path / "phase_diagram"), limit=True, theory=False)
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert any(title.startswith("regime (t → ∞ limit") for title in titles)
    assert any(title.startswith("t → ∞ limit: test accuracy") for title in titles)


def hard_selection_accuracy(runs) -> np.ndarray:
    """Test accuracy of each run under hard selection by its own p (the token with the largest x·p), (runs,)."""
    test = runs.data[1]
    chosen = jnp.argmax(jnp.einsum("sntd,sd->snt", test.tokens, runs.params.p), axis=-1)
    scores = jnp.einsum("sntd,sd->snt", test.tokens, runs.params.nu)
    picked = jnp.take_along_axis(scores, chosen[..., None], axis=-1)[..., 0]
    return np.asarray(jnp.mean(test.labels * picked > 0, axis=-1))


@pytest.mark.slow
def test_the_limit_is_where_gradient_descent_goes():
    """Settled runs: corr(p, p_mm) rises with the horizon, α̂ and the limit's metrics do not depend on the
    horizon it was read at, and a 10⁶-step run's hard-selection accuracies are the limit's (read at 10³). Its
    soft attention's test accuracy is not: at a harmful cell it stays far above (docs/theory.md measures it)."""
    config = jaxbo.Config(signal_norm=5.0, d=4500, n_test=500)
    keys = jax.random.split(jax.random.key(21), 8)

    def at(steps):
        c = config.replace(steps=steps, log_every=steps)
        engine = jaxbo.train.checked_engine(c, None, "auto", log_history=True, limit=True)
        traced = jaxbo.train.jit_config(c, engine)

        def one(key):
            return jaxbo.train.run(
                key, traced, width=engine.width(c), engine=engine, log_history=True, keep_data=True, limit=True
            )

        return jax.jit(jax.vmap(one))(keys)

    early, late = at(1_000), at(100_000)
    settled = (np.asarray(early.limit.status) == limit.SETTLED) & (np.asarray(late.limit.status) == limit.SETTLED)
    assert settled.sum() >= 4
    assert np.all(np.asarray(late.limit.correlation)[settled] > np.asarray(early.limit.correlation)[settled])
    np.testing.assert_array_equal(np.asarray(late.limit.selection)[settled], np.asarray(early.limit.selection)[settled])
    for name in ("test_accuracy", "train_accuracy", "noisy_fit"):
        np.testing.assert_allclose(
            np.asarray(getattr(late.limit, name))[settled], np.asarray(getattr(early.limit, name))[settled], atol=1e-6
        )
    longest = at(1_000_000)
    both = settled & (np.asarray(longest.limit.status) == limit.SETTLED)
    assert both.sum() >= 4 and np.all(np.asarray(longest.limit.correlation)[both] > 0.99)
    hard = hard_selection_accuracy(longest)[both]
    assert np.max(np.abs(hard - np.asarray(early.limit.test_accuracy)[both])) <= 0.03  # 15 of 500 test samples
    soft = np.asarray(longest.final.test_accuracy)[both]
    assert np.all(soft > hard + 0.1)  # the soft model at 10⁶ steps is not yet at its limit
    train_set = longest.data[0]
    chosen = np.asarray(longest.limit.selection)
    scores = np.einsum("sntd,sd->snt", np.asarray(train_set.tokens), np.asarray(longest.params.nu))
    picked = np.take_along_axis(scores, chosen[..., None], axis=-1)[..., 0]
    hard_train = np.mean(np.asarray(train_set.labels) * picked > 0, axis=-1)
    np.testing.assert_array_equal(hard_train[both], np.asarray(early.limit.train_accuracy)[both])


@pytest.mark.slow
def test_an_unsettled_run_changes_its_selection_later():
    config = jaxbo.Config(signal_norm=20.0, d=2000)
    keys = jax.random.split(jax.random.key(1), 8)

    def at(steps):
        run = jaxbo.make_run(config.replace(steps=steps, log_every=steps), log_history=False, limit=True)
        return jax.jit(jax.vmap(run))(keys).limit

    early, late = at(1_000), at(100_000)
    unsettled = np.asarray(early.status) == limit.UNSETTLED
    assert unsettled.any(), "pinned: seed key 1 at (2000, 20) has unsettled runs at 10³ steps"
    moved = np.any(np.asarray(early.selection) != np.asarray(late.selection), axis=-1)
    became_settled = unsettled & (np.asarray(late.status) == limit.SETTLED)
    assert became_settled.any() and np.all(moved[became_settled])
