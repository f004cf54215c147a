"""The causal model (the paper's third limit): gradient, attainability, engines, the paper's model as a special
case, refusals, and the tools a sweep reaches."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_limit import scipy_svm
from test_reduced import exact_reduction

import jaxbo
from jaxbo import causal_evaluation, causal_model, cli, data, engines, evaluation, model, train
from jaxbo.engines import causal

CAUSAL = jaxbo.Config(
    model="causal", n_train=6, T=5, d=60, n_test=64, steps=120, log_every=40, signal_norm=3.0, noise_rate=0.34
)


def targets_of(config, key):
    """A training set in R^d with its targets, in float64."""
    dataset = causal_model.with_targets(key, config, data.sample(key, config, config.n_train, flip=True))
    return jnp.asarray(dataset.tokens, jnp.float64), jnp.asarray(dataset.labels, jnp.float64)


@pytest.mark.parametrize(("normaliser", "noise"), [("softmax", "sequence"), ("softmax", "token"), ("sigmoid", "token")])
def test_the_analytic_gradient_equals_jax_grad_and_finite_differences_in_float64(normaliser, noise):
    with jax.enable_x64(True):
        config = CAUSAL.replace(d=12, normaliser=normaliser, target_noise=noise)
        tokens, targets = targets_of(config, jax.random.key(1))
        nu = jnp.asarray(model.head(config, config.d), jnp.float64)
        params = model.Params(p=0.6 * jax.random.normal(jax.random.key(3), (config.d,), jnp.float64), nu=nu)
        mask = causal_model.prefix_mask(config)
        _, attention = causal_model.forward(params, tokens, mask, normaliser)
        gamma = model.token_scores(params, tokens)
        analytic = causal_model.analytic_grad(targets, attention, gamma, tokens, normaliser)["p"]
        autodiff = causal_model.autodiff_grad(params, tokens, targets, mask, normaliser)["p"]
        assert analytic.dtype == jnp.float64
        np.testing.assert_allclose(analytic, autodiff, rtol=1e-10, atol=1e-13)
        direction = jax.random.normal(jax.random.key(5), (config.d,), jnp.float64)
        step = 1e-6

        def loss_at(p):
            return causal_model.empirical_loss(dataclasses.replace(params, p=p), tokens, targets, mask, normaliser)

        difference = (loss_at(params.p + step * direction) - loss_at(params.p - step * direction)) / (2 * step)
        np.testing.assert_allclose(jnp.vdot(analytic, direction), difference, rtol=1e-6)


def brute_force_attainable(targets: np.ndarray, gamma: np.ndarray, start: int) -> int:
    """The most targets one selection fits, over every order of the logits (T! orders)."""
    T = len(gamma)
    best = 0
    for order in itertools.permutations(range(T)):  # order[t]: token t's rank among the logits
        fitted = 0
        for k, target in enumerate(targets):
            prefix = start + k
            selected = max(range(prefix), key=lambda t: order[t])
            fitted += target * gamma[selected] > 0
        best = max(best, fitted)
    return best


def test_the_attainability_programme_equals_brute_force_over_every_selection():
    rng = np.random.default_rng(0)
    for T, start in ((4, 2), (6, 3), (6, 1)):
        count = T - start + 1
        gamma = rng.normal(size=(60, T)).astype(np.float32)
        gamma[:5] = np.abs(gamma[:5])  # sequences whose every token scores +: targets −1 never attainable
        targets = rng.choice([-1.0, 1.0], size=(60, count)).astype(np.float32)
        fast = np.asarray(causal_model.attainable(jnp.asarray(targets), jnp.asarray(gamma), start))
        slow = np.array([brute_force_attainable(t, g, start) for t, g in zip(targets, gamma, strict=True)])
        np.testing.assert_array_equal(fast, slow)
        assert np.any(fast < count)  # the check reaches sequences with unattainable targets


def test_token_level_noise_flips_a_balanced_share_of_the_targets():
    config = CAUSAL.replace(n_train=20, T=8, target_noise="token", noise_rate=0.2)
    labels = jnp.asarray(data.balanced_labels(config.n_train))
    flips = np.asarray(causal_model.token_flips(jax.random.key(0), config, labels))
    count = causal_model.positions(config)
    per_class = np.floor(np.ceil(0.2 * config.n_train * count) / 2)
    assert flips.shape == (config.n_train, count)
    assert flips[:10].sum() == flips[10:].sum() == per_class
    other = np.asarray(causal_model.token_flips(jax.random.key(1), config, labels))
    assert not np.array_equal(flips, other)
    assert len({tuple(row) for row in flips}) > 3  # spread over sequences, not whole sequences flipped


def test_the_reduced_engine_equals_the_causal_engine_on_the_exact_reduction_of_the_same_data():
    config = CAUSAL.replace(target_noise="token")
    (primal_train, primal_test), (reduced_train, reduced_test) = exact_reduction(config, jax.random.key(4))
    key = jax.random.key(7)
    finals = []
    for train_set, test_set, width in ((primal_train, primal_test, config.d), (reduced_train, reduced_test, None)):
        width = width or reduced_train.tokens.shape[-1]
        train_set = causal_model.with_targets(key, config, train_set)
        keys = engines.RunKeys(*data.run_keys(jax.random.key(0)))
        trainer = causal.causal_trainer(
            config, keys, model.init_params(keys.weights, config, width), train_set, test_set, None
        )
        finals.append(
            jax.jit(lambda trainer=trainer, train_set=train_set: train.train_from(config, trainer, train_set))()
        )
    (p_primal, history_primal, _), (p_reduced, history_reduced, _) = finals
    for name in ("train_accuracy", "test_accuracy", "position_accuracy", "attainable_fit", "unattainable"):
        np.testing.assert_array_equal(getattr(history_primal, name), getattr(history_reduced, name), err_msg=name)
    for name in ("train_loss", "test_loss", "p_norm", "cos_mu1", "attention_clean", "saturation_clean"):
        np.testing.assert_allclose(
            getattr(history_primal, name), getattr(history_reduced, name), rtol=2e-5, atol=1e-6, err_msg=name
        )
    np.testing.assert_allclose(p_primal.p[:2], p_reduced.p[:2], rtol=1e-5, atol=1e-7)


def test_with_three_tokens_and_sequence_noise_it_is_the_papers_model():
    # T = 3: one prediction, after the whole sequence, with the sequence's label: the same loss as the paper's.
    config = CAUSAL.replace(T=3, steps=200, log_every=50)
    causal_run = jaxbo.simulate(jax.random.key(2), config, engine="causal")
    paper_run = jaxbo.simulate(jax.random.key(2), config.replace(model="attention"), engine="primal")
    np.testing.assert_allclose(causal_run.params.p, paper_run.params.p, rtol=2e-5, atol=1e-7)
    for name in ("train_accuracy", "test_accuracy", "noisy_fit"):
        np.testing.assert_array_equal(getattr(causal_run.history, name), getattr(paper_run.history, name))
    np.testing.assert_allclose(causal_run.history.train_loss, paper_run.history.train_loss, rtol=1e-6)
    np.testing.assert_array_equal(causal_run.history.position_accuracy[:, 0], paper_run.history.test_accuracy)


def test_auto_picks_the_reduced_engine_and_bad_input_is_refused_naming_the_field():
    assert engines.resolve(CAUSAL, None, "auto").name == "causal_reduced"
    assert engines.resolve(CAUSAL.replace(normaliser="sigmoid", target_noise="token"), None, "auto").name == (
        "causal_reduced"
    )
    with pytest.raises(ValueError, match=r"Config.target_noise = 'word' is unknown"):
        CAUSAL.replace(target_noise="word")
    with pytest.raises(ValueError, match=r"Config.target_noise = 'token' .*model='causal'"):
        jaxbo.Config(target_noise="token")
    with pytest.raises(ValueError, match=r"Config.attention = 'trained' with model='causal'"):
        CAUSAL.replace(attention="trained")
    with pytest.raises(ValueError, match=r"Config.model = 'causal' with heads = 2"):
        CAUSAL.replace(heads=2)
    with pytest.raises(ValueError, match=r"Config.T = 2 is out of range"):
        CAUSAL.replace(T=2)
    with pytest.raises(ValueError, match=r"engine = 'reduced' does not exist for Config.model = 'causal'"):
        jaxbo.simulate(jax.random.key(0), CAUSAL, engine="reduced")
    with pytest.raises(ValueError, match=r"limit=True is not covered here: Config.normaliser = 'sigmoid'"):
        jaxbo.sweep({"d": [60]}, config=CAUSAL.replace(normaliser="sigmoid"), limit=True, progress=False)


def test_a_sweep_reads_regimes_per_position_and_fits_no_more_than_any_selection_can(tmp_path):
    config = CAUSAL.replace(target_noise="token", steps=300, log_every=300, lr=0.5)
    grid = {"d": [40, 400], "signal_norm": [1.0, 8.0]}
    result = jaxbo.sweep(grid, seeds=3, config=config, progress=False)
    final = result.final
    assert final["position_accuracy"].shape == (2, 2, 3, causal_model.positions(config))
    assert np.all(final["attainable_fit"] <= 1.0)  # soft attention fits no target a selection cannot
    np.testing.assert_array_equal(final["test_accuracy"], final["position_accuracy"].min(axis=-1))
    fitted = final["attainable_fit"] >= 1.0
    np.testing.assert_array_equal(result.regime == jaxbo.theory.NOT_OVERFITTING, ~fitted)
    assert result.position_regime().shape == final["position_accuracy"].shape
    assert set(np.unique(result.regime)) <= {0, 1, 2}
    assert result.metadata["engine"] == "causal_reduced"
    assert "causal attention model" in jaxbo.plot.model_name(result.config)
    jaxbo.plot.phase_diagram(result)  # draws from the regimes the result reads
    store = tmp_path / "store"
    first = jaxbo.sweep(grid, seeds=3, config=config, progress=False, checkpoint=store)
    resumed = jaxbo.sweep(grid, seeds=3, config=config, progress=False, checkpoint=store)
    assert first.metadata["checkpoint"]["chunks_loaded"] == 0 < resumed.metadata["checkpoint"]["chunks_loaded"]
    np.testing.assert_array_equal(resumed.final["position_accuracy"], result.final["position_accuracy"])


def test_the_command_line_runs_it(tmp_path, capsys):
    out = tmp_path / "causal"
    arguments = ["sweep", "--set", "model=causal", "--set", "target_noise=token", "--set", "n_train=6", "--set", "T=5"]
    arguments += ["--set", "steps=40", "--set", "log_every=20", "--d", "30,60", "--signal-norm", "2,8", "--seeds", "2"]
    assert cli.main([*arguments, "--out", str(out), "--quiet"]) == 0
    loaded = jaxbo.load(out / "phase_diagram")
    assert loaded.config.target_noise == "token" and "position_accuracy" in loaded.final
    run = ["run", "--set", "model=causal", "--set", "n_train=6", "--set", "T=5", "--set", "d=40", "--set", "steps=40"]
    assert cli.main([*run, "--set", "log_every=20", "--out", str(tmp_path / "one"), "--limit"]) == 0
    printed = capsys.readouterr().out
    assert "test acc by position" in printed and "t → ∞ limit" in printed


def limit_inputs(config, p):
    """A training and a full test set in R^d with targets, the model's parameters at query ``p``, and run keys."""
    keys = engines.RunKeys(*data.run_keys(jax.random.key(3)))
    train_set, test_set = data.sample_train_test(jax.random.key(3), config)
    params = dataclasses.replace(model.init_params(keys.weights, config), p=p)
    return keys, train_set, test_set, params


def test_with_one_selection_for_every_prefix_the_limit_is_the_papers():
    # Sequence-level noise and a query whose every prefix selects the relevant token x₁: the causal SVM's
    # constraints are the paper's (α̂_i, t), t ≠ α̂_i, so its limit is the paper model's on the same data.
    config = CAUSAL.replace(signal_norm=10.0)
    p = jnp.zeros(config.d).at[:2].set(3.0)
    keys, train_set, test_set, params = limit_inputs(config, p)
    targets = causal_model.with_targets(keys.train, config, train_set)
    selection = causal_model.running_selection(
        model.scores_along(train_set.tokens, p), causal_model.prefix_mask(config)
    )
    assert np.all(np.asarray(selection) == 0)
    causal_limit = causal_evaluation.causal_limit(config, keys, targets, test_set, params, lambda v: v)(params)
    paper = config.replace(model="attention")
    paper_limit = evaluation.attention_limit(paper, keys, train_set, test_set, params, lambda v: (v, None))(params)
    for name in ("status", "margin", "correlation", "support", "violations", "iterations", "residual"):
        np.testing.assert_array_equal(getattr(causal_limit, name), getattr(paper_limit, name), err_msg=name)
    np.testing.assert_array_equal(causal_limit.position_accuracy[-1], paper_limit.test_accuracy)


def test_the_limit_of_a_changing_selection_is_the_svm_of_every_prefixs_constraints():
    # A query under which selections change along the prefix: the one-constraint-per-token SVM against scipy's
    # float64 solution of the full set (every prefix's selection against every other token of the prefix).
    config = CAUSAL.replace(target_noise="token", signal_norm=2.0)
    p = 0.8 * jax.random.normal(jax.random.key(9), (config.d,))
    keys, train_set, test_set, params = limit_inputs(config, p)
    targets = causal_model.with_targets(keys.train, config, train_set)
    mask = causal_model.prefix_mask(config)
    tokens = np.asarray(train_set.tokens, np.float64)
    selection = np.asarray(causal_model.running_selection(model.scores_along(train_set.tokens, p), mask))
    assert np.any(selection[:, 0] != selection[:, -1])  # the check reaches changing selections
    rows = np.stack([
        tokens[i, selection[i, k]] - tokens[i, t]
        for i in range(config.n_train) for k in range(mask.shape[0]) for t in np.flatnonzero(mask[k])
        if t != selection[i, k]
    ])  # fmt: skip
    reference = scipy_svm(rows)
    found = causal_evaluation.causal_limit(config, keys, targets, test_set, params, lambda v: v)(params)
    assert int(found.status) in (0, 1)  # solved (settled or not)
    np.testing.assert_allclose(float(found.margin), 1.0 / np.linalg.norm(reference), rtol=2e-3)
    cosine = float(np.asarray(p, np.float64) @ reference / (np.linalg.norm(p) * np.linalg.norm(reference)))
    np.testing.assert_allclose(float(found.correlation), cosine, atol=2e-3)


def test_a_sweep_computes_the_causal_limit_and_its_regimes():
    config = CAUSAL.replace(steps=200, log_every=200, lr=0.5)
    result = jaxbo.sweep({"d": [100], "signal_norm": [2.0, 8.0]}, seeds=3, config=config, limit=True, progress=False)
    final = result.final
    assert final["limit_position_accuracy"].shape == (1, 2, 3, causal_model.positions(config))
    settled = final["limit_status"] == 0
    assert settled.any()
    np.testing.assert_array_equal(final["limit_test_accuracy"], final["limit_position_accuracy"].min(axis=-1))
    assert np.all(final["limit_attainable_fit"][settled] <= 1.0)
    assert set(np.unique(result.limit_regime)) <= set(range(5))
