"""Paired sweeps: the runs of one seed share every random draw across ‖μ‖ (common random numbers)."""

import importlib

import numpy as np
import pytest

import jaxbo
from jaxbo import data

sweep_module = importlib.import_module("jaxbo.sweep")
CONFIG = jaxbo.Config(n_train=8, T=4, n_test=64, steps=40, log_every=20)
GRID = {"d": [30, 300], "signal_norm": [2.0, 6.0, 20.0]}


@pytest.fixture(scope="module")
def paired():
    return jaxbo.sweep(GRID, seeds=2, config=CONFIG, key=4, paired=True, progress=False)


def test_runs_of_a_seed_share_noise_flips_and_roles_across_signal_norm():
    # Same key for every ‖μ‖: the training sets differ only by the signal means, which scale with ‖μ‖.
    sets = {}
    for signal_norm in (2.0, 20.0):
        key = sweep_module.run_key(4, 1, {"d": 300, "signal_norm": signal_norm}, paired=True)
        run = jaxbo.simulate(key, CONFIG.replace(d=300, signal_norm=signal_norm), engine="primal", keep_data=True)
        sets[signal_norm] = run.data[0]
    small, large = sets[2.0], sets[20.0]
    np.testing.assert_array_equal(small.noisy_mask, large.noisy_mask)
    np.testing.assert_array_equal(small.labels, large.labels)
    means = np.asarray(data.signal_coefficients(small.roles, small.clean_labels, CONFIG.rho))  # per unit ‖μ‖
    noise_small = np.asarray(small.tokens)[..., :2] - 2.0 * means
    noise_large = np.asarray(large.tokens)[..., :2] - 20.0 * means
    np.testing.assert_allclose(noise_small, noise_large, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(small.tokens)[..., 2:], np.asarray(large.tokens)[..., 2:])


def test_a_paired_cell_is_simulate_with_the_paired_key_and_pairing_is_recorded(paired):
    coordinates = {"d": 300, "signal_norm": 6.0}
    run = jaxbo.make_run(CONFIG.replace(**coordinates), log_history=False)  # final only, as a sweep's runs
    alone = run(sweep_module.run_key(4, 1, coordinates, paired=True))
    for name in ("train_loss", "test_loss", "p_norm", "test_accuracy"):
        np.testing.assert_allclose(paired.final[name][1, 1, 1], getattr(alone.final, name), rtol=1e-5, atol=1e-6)
    assert paired.metadata["paired"] is True and paired.metadata["plan"]["paired"] is True
    independent = jaxbo.sweep(GRID, seeds=2, config=CONFIG, key=4, progress=False)
    assert independent.metadata["paired"] is False
    # Different designs: not the same numbers (the keys differ), and merge refuses to mix them.
    assert not np.array_equal(paired.final["train_loss"], independent.final["train_loss"])
    other = jaxbo.sweep({"d": [3000], "signal_norm": GRID["signal_norm"]}, seeds=2, config=CONFIG, progress=False)
    with pytest.raises(ValueError, match="parts differ in paired"):
        jaxbo.merge([paired, other])


def test_paired_needs_a_signal_norm_axis_and_a_bool():
    with pytest.raises(ValueError, match=r"paired=True .* no 'signal_norm' axis \(its axes: \['d'\]\)"):
        jaxbo.sweep({"d": [30]}, config=CONFIG, paired=True, progress=False)
    with pytest.raises(TypeError, match="paired = 'yes' must be True or False"):
        jaxbo.sweep(GRID, config=CONFIG, paired="yes", progress=False)


@pytest.mark.slow
def test_each_cell_keeps_its_law_when_paired():
    # Welch's t over 48 seeds per cell and metric: pairing moves no cell's mean beyond seed noise.
    grid = {"d": [500], "signal_norm": [3.0, 10.0, 40.0]}
    config = CONFIG.replace(steps=200, log_every=200)
    runs = {
        paired: jaxbo.sweep(grid, seeds=48, config=config, key=paired + 10, paired=paired, progress=False)
        for paired in (False, True)
    }
    for name in ("train_loss", "test_loss", "test_accuracy", "p_norm"):
        a, b = (np.asarray(runs[paired].final[name], np.float64) for paired in (False, True))
        standard_error = np.sqrt(a.var(axis=-1, ddof=1) / a.shape[-1] + b.var(axis=-1, ddof=1) / b.shape[-1])
        gap = np.abs(a.mean(-1) - b.mean(-1))
        assert np.all(gap <= 4 * standard_error + 1e-7), (name, gap, standard_error)
