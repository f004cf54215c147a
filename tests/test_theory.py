"""The paper's quantities, checked on real runs and against independent derivations."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbo
from jaxbo import data, loss, model, reduced_form, theory


def test_growth_function_is_the_time_integral_of_the_vanishing_update():
    T, rate = 8, 0.7
    # Integrate dx/dτ = rate · s(1 − s), s = eˣ/(eˣ + T), with small Euler steps: independent of g.
    x, tau, dt, hits = -1.0, 0.0, 1e-3, {}
    targets = [0.0, 2.0, 4.0, 6.0]
    while x < targets[-1]:
        s = np.exp(x) / (np.exp(x) + T)
        x += dt * rate * s * (1 - s)
        tau += dt
        for target in targets:
            if target not in hits and x >= target:
                hits[target] = tau
    for target, measured in hits.items():
        np.testing.assert_allclose(theory.gap_time(target, -1.0, rate, T), measured, rtol=2e-3)
    xs = jnp.linspace(-20.0, 30.0, 101)
    with jax.enable_x64(True):
        xs64 = jnp.asarray(xs, jnp.float64)
        np.testing.assert_allclose(theory.inverse_growth(theory.growth(xs64, T), T), xs64, rtol=1e-9, atol=1e-9)
    # Exponential delay: the time to grow a gap by 2 beyond log T grows like e^x.
    late = theory.gap_time(12.0, 10.0, 1.0, T) / theory.gap_time(8.0, 6.0, 1.0, T)
    assert late > np.exp(4.0) * 0.9


def test_per_token_gradient_decomposition_matches_jax_grad():
    with jax.enable_x64(True):
        config = jaxbo.Config(n_train=9, T=5, d=30)
        dataset = data.sample(jax.random.key(4), config, 9, flip=True)
        X = jnp.asarray(dataset.tokens, jnp.float64)
        y = jnp.asarray(dataset.labels, jnp.float64)
        params = model.init_params(jax.random.key(0), config)
        params = model.Params(
            p=jax.random.normal(jax.random.key(1), (30,), jnp.float64), nu=jnp.asarray(params.nu, jnp.float64)
        )
        _, s = model.forward(params, X)
        w = loss.token_weights(y, s, model.token_scores(params, X))  # ∇ₚL = Σ_{i,t} w_{i,t} x_{i,t}
        decomposed = jnp.einsum("nt,ntd->d", w, X)
        autodiff = jax.grad(lambda p: loss.empirical_loss(model.Params(p, params.nu), X, y))(params.p)
        chex.assert_trees_all_close(decomposed, autodiff, rtol=1e-10, atol=1e-14)


@pytest.fixture(scope="module")
def benign_runs():
    """8 primal seeds at the paper's benign setting (layout (2, 2, 2)), histories kept."""
    config = jaxbo.Config(d=2000, signal_norm=20.0, layout=(2, 2, 2), n_test=200)
    keys = jax.random.split(jax.random.key(21), 8)
    runs = jax.jit(jax.vmap(jaxbo.make_run(config, engine="primal")))(keys)
    return config, keys, runs


def test_benign_runs_follow_the_mechanism(benign_runs):
    config, _, runs = benign_runs
    final = runs.final
    chex.assert_shape(final.attention_clean, (8, 4))
    chex.assert_tree_all_finite((final.attention_clean, final.attention_noisy, final.saturation_clean))
    assert np.all(np.asarray(final.train_accuracy) == 1.0) and np.all(np.asarray(final.test_accuracy) >= 0.99)
    # Clean samples select their relevant tokens ...
    chex.assert_trees_all_close(final.attention_clean[:, 0], jnp.ones(8), atol=0.05)
    # ... noisy samples move their attention to the weakly-relevant opposite tokens (from 2/T at p = 0).
    start = 2 / config.T
    assert np.all(np.asarray(final.attention_noisy[:, 2]) > 2 * start)
    assert np.all(np.asarray(final.attention_noisy[:, 2]) > 10 * np.asarray(final.attention_noisy[:, 0]))
    # Eq. 9 (clean-dominance of cumulative 𝔖) and Eq. 10 (class balance within 2.5×) hold where it is benign.
    ratio, holds = theory.clean_dominance(final.saturation_clean, final.saturation_noisy)
    assert np.all(np.asarray(holds)) and np.all(np.asarray(ratio) > 1)
    ratios, balanced = theory.class_balance(final.saturation_clean, final.saturation_noisy)
    chex.assert_shape(ratios, (8, 2))
    assert np.all(np.asarray(balanced))


def test_eq9_and_eq10_fail_where_their_sums_say_so():
    # Known answers: clean 𝔖 totals 2 against noisy 4 (ratio 0.5) fails Eq. 9; a class ratio of 3 > 2.5 fails
    # Eq. 10, while 2 passes; a group without one class is undefined and not counted against it.
    ratio, holds = theory.clean_dominance(jnp.array([[1.0, 1.0], [3.0, 3.0]]), jnp.array([[2.0, 2.0], [1.0, 1.0]]))
    np.testing.assert_allclose(ratio, [0.5, 3.0])
    np.testing.assert_array_equal(holds, [False, True])
    ratios, holds = theory.class_balance(jnp.array([[3.0, 1.0], [2.0, 1.0]]), jnp.array([[1.0, 1.0], [0.0, 1.0]]))
    np.testing.assert_allclose(ratios, [[3.0, 1.0], [2.0, np.nan]])
    np.testing.assert_array_equal(holds, [False, True])


def test_eq10_fails_in_runs_whose_noisy_labels_come_mostly_from_one_class():
    # With Bernoulli flips the noisy samples' classes can be far from balanced; the per-class cumulative 𝔖 of
    # 𝒩 follows the counts, so Eq. 10 (ratio within 2.5×) fails where one class has >= 3× the other's noisy
    # samples and holds where they are balanced.
    config = jaxbo.Config(n_train=20, T=8, d=2000, noise_rate=0.3, flips="random", steps=200, log_every=200)
    keys = jax.random.split(jax.random.key(5), 24)
    final = jax.jit(jax.vmap(jaxbo.make_run(config, log_history=False)))(keys).final
    _, balanced = theory.class_balance(final.saturation_clean, final.saturation_noisy)
    # The runs' own training sets (the reduced engine's, drawn from the same keys as the runs drew them).
    train_sets = jax.jit(jax.vmap(lambda key: reduced_form.sample_train(data.run_keys(key)[0], config)))(keys)
    noisy, clean_labels = np.asarray(train_sets.noisy_mask), np.asarray(train_sets.clean_labels)
    counts = np.stack([(noisy & (clean_labels > 0)).sum(1), (noisy & (clean_labels < 0)).sum(1)], axis=1)
    lopsided = (np.minimum(*counts.T) > 0) & (np.maximum(*counts.T) >= 3 * np.minimum(*counts.T))
    even = counts[:, 0] == counts[:, 1]
    assert lopsided.any() and even.any(), counts
    assert not np.asarray(balanced)[lopsided].any(), (counts[lopsided], np.asarray(balanced)[lopsided])
    assert np.asarray(balanced)[even].all()


def test_p_stays_in_the_span_of_the_training_tokens(benign_runs):
    config, keys, runs = benign_runs
    train_set, _ = data.sample_train_test(keys[0], config)
    X = np.asarray(train_set.tokens, np.float64).reshape(-1, config.d)  # (nT, d)
    p = np.asarray(runs.params.p[0], np.float64)
    coefficients, *_ = np.linalg.lstsq(X.T, p, rcond=None)
    residual = np.linalg.norm(X.T @ coefficients - p) / np.linalg.norm(p)
    assert residual < 1e-4  # a random vector would leave ≈ √(1 − nT/d) ≈ 0.96


def test_benign_runs_generalise_before_they_fit_every_label(benign_runs):
    # docs/theory.md: "no run generalises after it fits" (the order is generalise, then memorise).
    _, _, runs = benign_runs
    steps = runs.log_steps[0]
    fit = np.asarray(theory.first_time(runs.history.train_accuracy, steps, 1.0))
    generalise = np.asarray(theory.first_time(runs.history.test_accuracy, steps, 0.995))
    assert np.all(fit > 0) and np.all(generalise > 0), (fit, generalise)  # every seed does both
    assert np.all(generalise < fit), f"time to generalise {generalise} is not before time to fit {fit}"


def test_first_time_is_the_first_logged_step_from_which_a_threshold_holds():
    np.testing.assert_array_equal(theory.first_time(jnp.array([0.5, 1.0, 0.9, 1.0, 1.0]), jnp.arange(5), 1.0), 3)
    np.testing.assert_array_equal(theory.first_time(jnp.array([0.5, 0.9]), jnp.arange(2), 1.0), -1)


@pytest.mark.slow
@pytest.mark.parametrize("d", [1000, 20000])
def test_good_event_holds_in_distribution_and_detects_violations(d):
    config = jaxbo.Config(d=d)
    keys = jax.random.split(jax.random.key(3), 20)
    facts = jax.vmap(lambda k: theory.good_event(data.sample(k, config, 20, flip=True), config, delta=0.05))(keys)
    for name, (holds, worst) in facts.items():
        # Each fact fails w.p. <= δ = 0.05 per data set: at most a few of 20 seeds may fail.
        assert np.asarray(holds).sum() >= 17, (name, np.asarray(worst))
    # Noise twice as large as the config says breaks the norm fact every time.
    loud = data.sample(jax.random.key(0), config.replace(sigma=2.0), 20, flip=True)
    holds, worst = theory.good_event(loud, config)["noise_norms"]
    assert not bool(holds) and float(worst) > 10


def existence(config, seeds=4):
    """Train / test accuracy of p*, on data in the exact reduced representation (p* only uses inner products)."""
    keys = jax.random.split(jax.random.key(8), seeds)

    def one(key):
        train_set, test_set = reduced_form.sample_train_test(key, config)
        params = model.Params(
            p=theory.existence_query(train_set, config), nu=model.head(config, reduced_form.width(config))
        )
        train_f, _ = model.forward(params, train_set.tokens)
        test_f, _ = model.forward(params, test_set.tokens)
        return jnp.mean(train_set.labels * train_f > 0), jnp.mean(test_set.labels * test_f > 0)

    return jax.vmap(one)(keys)


@pytest.mark.slow
def test_existence_construction_interpolates_and_generalises_when_its_conditions_hold():
    config = jaxbo.Config(d=100_000, signal_norm=60.0, n_test=300)
    conditions = theory.existence_conditions(config, n_noisy=4)
    assert all(float(value) < 1 for value in conditions.values()), conditions
    train_accuracy, test_accuracy = existence(config)
    np.testing.assert_array_equal(train_accuracy, 1.0)  # noisy labels included
    assert np.all(np.asarray(test_accuracy) >= 0.99)


@pytest.mark.slow
def test_existence_construction_fails_when_a_condition_fails():
    # Weak signal: token-score noise σ/‖μ‖ swamps the weakly-relevant token's score ρ/√2.
    weak = jaxbo.Config(d=100_000, signal_norm=1.0, n_test=300)
    assert float(theory.existence_conditions(weak, n_noisy=4)["score_noise"]) > 1
    train_accuracy, _ = existence(weak)
    assert np.all(np.asarray(train_accuracy) < 1.0)
    # Small d: memorised noise is not nearly orthogonal to the test tokens' noise, test attention scrambles.
    small = jaxbo.Config(d=40, signal_norm=60.0, n_test=300)
    assert float(theory.existence_conditions(small, n_noisy=4)["crosstalk"]) > 1
    _, test_accuracy = existence(small)
    assert np.mean(np.asarray(test_accuracy)) < 0.97


def test_snr():
    np.testing.assert_allclose(theory.signal_to_noise(20.0, 1.0, 400), 1.0)


@pytest.fixture(scope="module")
def saturated():
    """Long runs (20,000 steps) deep inside the benign and not-overfitting regimes, and at their edge."""
    config = jaxbo.Config(steps=20_000, log_every=20_000, n_test=100)
    grid = {"d": [250, 20_000], "signal_norm": [100.0, 200.0]}
    return jaxbo.sweep(grid, seeds=8, config=config, progress=False)


def test_plateaus_follow_the_derivation():
    plateaus = theory.loss_plateaus(jaxbo.Config())
    chex.assert_trees_all_close(
        (plateaus["benign"], plateaus["not_overfitting"]), (0.4524, 0.5423), atol=1e-4
    )  # docs/model.md §7: ≈ 0.452 and ≈ 0.542 at η = 0.2, ρ = 0.1
    assert theory.noisy_fraction(jaxbo.Config(n_train=20, noise_rate=0.15)) == 0.1  # ⌈3⌉ = 3 → 1 per class
    assert theory.loss_plateau(jaxbo.Config(noise_rate=0.0), 0.0) == pytest.approx(np.log1p(np.exp(-(2**-0.5))))


@pytest.mark.slow  # 20,000 steps × 32 runs: a long statistical check
def test_saturated_losses_sit_on_the_plateaus(saturated):
    config = saturated.config
    deep_benign = {name: value[1, 0] for name, value in saturated.final.items()}  # d = 20,000, ‖μ‖ = 100
    deep_not = {name: value[0, 1] for name, value in saturated.final.items()}  # d = 250, ‖μ‖ = 200
    assert (deep_benign["noisy_fit"] == 1).all() and (deep_benign["train_accuracy"] == 1).all()
    assert (deep_not["noisy_fit"] == 0).all()
    benign_config, not_config = config.replace(signal_norm=100.0), config.replace(signal_norm=200.0)
    chex.assert_trees_all_close(
        deep_benign["train_loss"].mean(),
        theory.loss_plateaus(benign_config)["benign"],
        atol=theory.plateau_tolerance(benign_config, runs=8),
    )
    chex.assert_trees_all_close(
        deep_not["train_loss"].mean(),
        theory.loss_plateaus(not_config)["not_overfitting"],
        atol=theory.plateau_tolerance(not_config, runs=8),
    )
    # Every saturated run, the edge cells included, sits on the level of its own noisy-fit fraction.
    for d_index in range(2):
        for mu_index, signal_norm in enumerate(saturated.coords["signal_norm"]):
            cell = config.replace(signal_norm=float(signal_norm))
            chex.assert_trees_all_close(
                saturated.final["train_loss"][d_index, mu_index],
                theory.loss_plateau(cell, saturated.final["noisy_fit"][d_index, mu_index]),
                atol=theory.plateau_tolerance(cell, runs=1),
            )


@pytest.mark.slow  # 5,000 logged steps × 12 runs: a long statistical check
def test_clean_gaps_follow_the_growth_function_in_benign_and_harmful_runs():
    # g(Λ̄(τ)) − g(0) = c·τ: the vanishing softmax update integrated (docs/model.md §7's reading). It holds for the
    # relevant token's lead in benign and harmful runs; docs/theory.md shows where it does not (noisy
    # samples' Γ̄, signal-dominated runs).
    config = jaxbo.Config(steps=5000, log_every=50, n_test=100)
    result = jaxbo.sweep(
        {"d": [2000, 5000], "signal_norm": [5.0, 20.0]}, seeds=3, config=config, histories=True, progress=False
    )
    rate, r2 = theory.gap_rate(result.log_steps, result.history["gap_clean"], config.T)
    chex.assert_shape(rate, (2, 2, 3))
    assert (np.asarray(rate) > 0).all()
    chex.assert_trees_all_close(np.asarray(r2), np.ones((2, 2, 3)), atol=0.01)
    assert np.all(np.diff(result.history["gap_clean"], axis=-1) > 0)  # the lead only grows


@pytest.mark.slow
def test_selected_tokens_draws_train_and_test_per_run():
    config = jaxbo.Config(n_train=10, T=5, d=300, n_test=64, steps=200, log_every=100, signal_norm=10.0)
    runs = [jaxbo.simulate(seed, config, keep_data=True) for seed in (0, 1)]
    train, test = runs[0].data
    assert train.tokens.shape == (10, 5, 52) and test.tokens.shape == (64, 5, 52)
    figure = jaxbo.plot.selected_tokens(runs, titles=["a", "b"])
    titles = [axis.get_title() for axis in figure.axes]
    assert titles[0].startswith("a\ntrain (accuracy") and titles[-1].startswith("b\ntest (accuracy")
    with pytest.raises(ValueError, match="keep_data=True"):
        jaxbo.plot.selected_tokens(jaxbo.simulate(0, config))
