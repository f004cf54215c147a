"""Measured regime boundaries and their fits, on synthetic sweeps whose boundaries are known exactly."""

import dataclasses

import chex
import numpy as np
import pytest

import jaxbo
from jaxbo import analysis


def synthetic(c_h=2.0, c_no=3.0, n_train=20, seeds=64, width=0.0, seed=0):
    """A SweepResult over a geometric (d, ‖μ‖) grid: harmful below c_h·d^¼, not overfitting above c_no·√(d/n).

    ``width`` > 0 blurs each boundary into a logistic in log ‖μ‖ of that width, drawn per seed.
    """
    rng = np.random.default_rng(seed)
    d = np.unique(np.geomspace(100, 10**6, 13).round().astype(np.int64))
    mu = np.geomspace(1.0, 2000.0, 60)
    log_mu = np.log(mu)[None, :, None]
    log_h = np.log(c_h * d**0.25)[:, None, None]
    log_no = np.log(c_no * np.sqrt(d / n_train))[:, None, None]
    shape = (len(d), len(mu), seeds)
    if width:
        harmful = rng.random(shape) < 1 / (1 + np.exp((log_mu - log_h) / width))
        not_overfitting = rng.random(shape) < 1 / (1 + np.exp((log_no - log_mu) / width))
    else:
        harmful = np.broadcast_to(log_mu < log_h, shape)
        not_overfitting = np.broadcast_to(log_mu > log_no, shape)
    train = np.where(not_overfitting, 0.9, 1.0)
    test = np.where(harmful & ~not_overfitting, 0.9, 1.0)
    return jaxbo.SweepResult(
        dims=("d", "signal_norm", "seed"),
        coords={"d": d, "signal_norm": mu, "seed": np.arange(seeds)},
        final={"train_accuracy": train, "test_accuracy": test},
        history={},
        log_steps=np.zeros(0),
        config=jaxbo.Config(n_train=n_train),
        metadata={"engine": "synthetic"},
    )


def test_boundaries_are_interpolated_not_picked():
    measured = analysis.boundaries(synthetic(), bootstraps=0)
    step = np.log(2000.0) / 59  # one grid step in log ‖μ‖
    np.testing.assert_array_less(np.abs(np.log(measured.harmful / (2.0 * measured.d**0.25))), step)
    inside = np.isfinite(measured.not_overfitting)
    assert inside.sum() >= 10  # c_no √(d/n) leaves the grid only at the largest d
    truth = 3.0 * np.sqrt(measured.d[inside] / 20)
    np.testing.assert_array_less(np.abs(np.log(measured.not_overfitting[inside] / truth)), step)


def test_fits_recover_the_exponents_and_constants():
    fits = analysis.fit_boundaries(analysis.boundaries(synthetic(width=0.15), bootstraps=100))
    harmful, not_overfitting = fits["harmful"], fits["not_overfitting"]
    chex.assert_trees_all_close((harmful["slope"], not_overfitting["slope"]), (0.25, 0.5), atol=0.02)
    chex.assert_trees_all_close((harmful["constant"], not_overfitting["constant"]), (2.0, 3.0), rtol=0.05)
    for fit in (harmful, not_overfitting):
        low, high = fit["slope_ci"]
        assert low < fit["theory_slope"] < high and high - low < 0.1
        assert fit["constant_ci"][0] < fit["constant"] < fit["constant_ci"][1]


def test_n_exponent_recovers_minus_one_half():
    measured = [analysis.boundaries(synthetic(n_train=n, width=0.1, seed=n), bootstraps=50) for n in (10, 20, 40)]
    found = analysis.n_exponent(measured)
    assert found["slope"] == pytest.approx(-0.5, abs=0.05) and found["slope_ci"][0] < -0.5 < found["slope_ci"][1]
    with pytest.raises(ValueError, match="different n_train"):
        analysis.n_exponent(measured[:1])


def test_boundaries_need_the_two_axes():
    result = synthetic()
    with pytest.raises(ValueError, match="d and signal_norm"):
        analysis.boundaries(
            jaxbo.SweepResult(
                **{
                    **vars(result),
                    "dims": ("d", "rho", "seed"),
                    "coords": {
                        "d": result.coords["d"],
                        "rho": result.coords["signal_norm"],
                        "seed": result.coords["seed"],
                    },
                }
            )
        )


def test_phase_diagram_overlays_fits_on_log_axes_and_shows_loss_panels():
    result = synthetic(width=0.15)
    figure = jaxbo.plot.phase_diagram(result, metrics=("test_accuracy", "regime"), theory=True)
    panels = [axis for axis in figure.axes if axis.get_title()]
    assert len(panels) == 2 and all(axis.get_xscale() == "log" and axis.get_yscale() == "log" for axis in panels)
    (legend,) = figure.legends
    fits = [text.get_text() for text in legend.get_texts() if " fit ‖μ‖" in text.get_text()]
    assert len(fits) == 2 and "(theory 0.25)" in fits[0] and "(theory 0.5)" in fits[1]
    assert fits[0].startswith("harmful fit ‖μ‖ ∝ d^0.2") and fits[1].startswith("not overfitting fit ‖μ‖ ∝ d^0.5")
    assert any("SNR=" in text.get_text() for text in panels[0].texts)  # labelled SNR contours
    # The legend lies outside every panel (it never covers data).
    figure.canvas.draw()
    box = legend.get_window_extent()
    assert not any(box.overlaps(axis.get_window_extent()) for axis in figure.axes)
    with pytest.raises(ValueError, match="theory=True needs"):
        jaxbo.plot.phase_diagram(result, x="signal_norm", y="d", theory=True)
    assert not jaxbo.plot.is_geometric(np.array([250, 500, 750, 1000]))


def test_no_exponent_is_fitted_or_drawn_where_the_d_values_do_not_allow_one():
    result = synthetic(width=0.15)
    narrow = dataclasses.replace(
        result,
        coords={**result.coords, "d": result.coords["d"][:2]},
        final={name: values[:2] for name, values in result.final.items()},
    )
    span = float(narrow.coords["d"][-1] / narrow.coords["d"][0])
    assert span < analysis.MIN_D_SPAN
    fits = analysis.fit_boundaries(narrow, min_points=2)  # a SweepResult is accepted: boundaries located first
    assert np.isnan(fits["harmful"]["slope"]) and f"span ×{span:.2g}" in fits["harmful"]["reason"]
    figure = jaxbo.plot.phase_diagram(narrow, metrics=("regime",), theory=True)
    texts = [text.get_text() for text in figure.legends[0].get_texts()]
    assert not any(" fit ‖μ‖" in text for text in texts)
    assert sum("no exponent fit, a boundary at 2 value(s) of d (a fit needs >= 3)" in text for text in texts) == 2
    assert analysis.fit_boundaries(result)["harmful"]["reason"] == ""
    with pytest.raises(TypeError, match=r"boundaries\(result\) or a SweepResult, got dict"):
        analysis.fit_boundaries({"harmful": [1.0]})


@pytest.mark.slow
def test_measured_exponents_at_1000_steps_are_pinned():
    # docs/theory.md's 1000-step row, on its own grid (13 d × 28 ‖μ‖ geometric, 8 seeds; ~6 s): the
    # not-overfitting boundary grows like d^0.25 [0.25, 0.26] and the harmful one is nearly flat, 0.06
    # [0.05, 0.12] (theory ½ and ¼). The bounds hold each 95 % interval with room, and exclude the theory's
    # values, which the intervals exclude by several widths. A coarser grid is not a substitute: with 7 values
    # of d the staircase of grid cells moves the not-overfitting slope to 0.41.
    grid = {
        "d": np.unique(np.geomspace(100, 10**6, 13).round()).astype(int).tolist(),
        "signal_norm": np.geomspace(1.0, 3000.0, 28).tolist(),
    }
    result = jaxbo.sweep(grid, seeds=8, config=jaxbo.Config(n_test=500), progress=False)
    fits = analysis.fit_boundaries(analysis.boundaries(result))
    not_overfitting, harmful = fits["not_overfitting"], fits["harmful"]
    assert 0.2 < not_overfitting["slope_ci"][0] <= not_overfitting["slope_ci"][1] < 0.32
    assert -0.05 < harmful["slope_ci"][0] <= harmful["slope_ci"][1] < 0.18
    assert 0.5 < harmful["constant"] < 1.5  # harmful below ‖μ‖ ≈ c_h σ d^¼ with c_h ≈ 0.87 (‖μ‖ ≈ 10σ at d = 10⁴)
