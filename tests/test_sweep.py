import dataclasses
import importlib
import json
import pathlib

import chex
import numpy as np
import pytest

import jaxbo
from jaxbo.theory import BENIGN, HARMFUL, NOT_OVERFITTING

sweep_module = importlib.import_module("jaxbo.sweep")
CONFIG = jaxbo.Config(n_train=10, T=5, n_test=64, steps=40, log_every=10)


@pytest.fixture(scope="module")
def primal_result():
    return jaxbo.sweep(
        {"d": [30, 34, 60], "signal_norm": [4.0, 8.0]},
        seeds=2,
        config=CONFIG,
        engine="primal",
        histories=True,
        chunk_size=2,
        max_buckets=2,
        progress=False,
    )


def test_result_shapes_and_plan(primal_result):
    result = primal_result
    assert result.dims == ("d", "signal_norm", "seed") and result.grid_shape == (3, 2) and result.seeds == 2
    assert result.final["test_accuracy"].shape == (3, 2, 2)
    assert result.final["attention_clean"].shape == (3, 2, 2, 4)
    assert result.history["train_loss"].shape == (3, 2, 2, CONFIG.n_logs)
    np.testing.assert_array_equal(result.log_steps, [10, 20, 30, 40])
    assert result.mean("test_accuracy").shape == (3, 2) and result.std("attention_clean").shape == (3, 2, 4)
    plan = result.metadata["plan"]
    assert [group["width"] for group in plan["groups"]] == [34, 60]  # 30 and 34 share a bucket
    assert plan["total_runs"] == 12 and result.metadata["engine"] == "primal"
    # Regimes agree with metrics computed apart from them: not overfitting exactly where a label is unfitted
    # (a clean one, or a noisy one); benign where every label is fitted and the test accuracy is high.
    unfitted = (result.final["clean_accuracy"] < 1) | (result.final["noisy_fit"] < 1)
    np.testing.assert_array_equal(result.regime == NOT_OVERFITTING, unfitted)
    assert np.all(result.final["test_accuracy"][result.regime == BENIGN] >= 0.995)
    assert np.all(result.final["test_accuracy"][result.regime == HARMFUL] < 0.995)


def test_padded_sweep_run_equals_unpadded_simulate(primal_result):
    # d = 30 ran padded to width 34; simulate runs it at width 30 from the same key.
    config = CONFIG.replace(d=30, signal_norm=8.0)
    run = jaxbo.simulate(sweep_module.run_key(0, 1, {"d": 30, "signal_norm": 8.0}), config, engine="primal")
    for name in ("train_accuracy", "test_accuracy", "train_loss", "test_loss", "p_norm", "cos_mu1"):
        np.testing.assert_allclose(primal_result.final[name][0, 1, 1], getattr(run.final, name), rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(primal_result.history["test_loss"][0, 1, 1], run.history.test_loss, rtol=2e-5)


def test_compiles_once_per_bucket_and_runs_do_not_depend_on_the_grid(monkeypatch):
    # A run is traced once per compiled program; fail if the second sweep of the same shapes traces again.
    sweep_module.chunk_program.cache_clear()
    monkeypatch.setattr(sweep_module, "run", chex.assert_max_traces(sweep_module.run, n=1))
    small = jaxbo.sweep(
        {"d": [50, 5000, 10**6], "signal_norm": [5.0, 20.0]}, seeds=3, config=CONFIG, chunk_size=4, progress=False
    )  # reduced: 18 runs, 5 chunks, one trace
    assert small.metadata["plan"]["compiles"] == 1
    big = jaxbo.sweep(
        {"d": [50, 700, 10**6], "signal_norm": [5.0, 11.0, 20.0]}, seeds=3, config=CONFIG, chunk_size=4, progress=False
    )  # same shapes: still the one trace
    for name in ("train_loss", "test_accuracy", "p_norm"):
        np.testing.assert_array_equal(small.final[name][0, 0], big.final[name][0, 0])
        np.testing.assert_array_equal(small.final[name][2, 1], big.final[name][2, 2])


@pytest.mark.slow
def test_regimes_on_a_tiny_grid():
    result = jaxbo.sweep(
        {"d": [300, 4000], "signal_norm": [5.0, 100.0]}, seeds=6, config=jaxbo.Config(n_test=300), progress=False
    )
    regimes = result.majority_regime()
    assert regimes[1, 0] == HARMFUL  # large d, weak signal: fits noise, test drops
    assert regimes[0, 1] == NOT_OVERFITTING  # small d, strong signal: noisy labels not fitted
    assert result.regime_fractions().sum(-1) == pytest.approx(1.0)


BAD_GRIDS = [
    ({"T": [4, 8]}, ValueError, "grid key 'T' cannot be swept"),
    ({"dimension": [4]}, ValueError, "allowed keys"),
    ({"d": []}, ValueError, "non-empty"),
    ({"d": [100.5]}, ValueError, "whole numbers"),
    ({"d": [1]}, ValueError, r"Config\.d = 1"),
    ({"noise_rate": [0.1, 0.6]}, ValueError, r"Config\.noise_rate = 0\.6 .*\[0, 0\.5\)"),
    ({"rho": [0.0]}, ValueError, r"Config\.rho"),
    ({"signal_norm": [float("nan")]}, ValueError, "finite"),
    ({"signal_norm": "5:10"}, TypeError, "1-D sequence"),
    ({"signal_norm": [[1.0, 2.0]]}, ValueError, "1-D"),
    ({"d": [100, 100]}, ValueError, "repeats"),
    ([("d", [1])], TypeError, "mapping"),
]


@pytest.mark.parametrize(("grid", "error", "message"), BAD_GRIDS)
def test_bad_grids_fail_before_compiling(monkeypatch, grid, error, message):
    def never(*args, **kwargs):
        raise AssertionError("compiled despite a bad grid")

    monkeypatch.setattr(sweep_module, "chunk_program", never)
    with pytest.raises(error, match=message):
        jaxbo.sweep(grid, config=CONFIG, progress=False)


def test_bad_arguments_fail_before_compiling(monkeypatch):
    monkeypatch.setattr(sweep_module, "chunk_program", None)
    with pytest.raises(ValueError, match="seeds = 0"):
        jaxbo.sweep({"d": [50]}, seeds=0, config=CONFIG)
    with pytest.raises(ValueError, match="chunk_size = -1"):
        jaxbo.sweep({"d": [50]}, chunk_size=-1, config=CONFIG)
    with pytest.raises(ValueError, match="engine"):
        jaxbo.sweep({"d": [50]}, engine="fast", config=CONFIG)
    with pytest.raises(ValueError, match="not exact"):
        jaxbo.sweep({"d": [50]}, engine="reduced", config=CONFIG.replace(attention="trained"))
    with pytest.raises(ValueError, match=r"Config\.d = 3000000000 is too large for the primal engine"):
        jaxbo.sweep({"d": [3 * 10**9]}, engine="primal", config=CONFIG)


def test_any_d_a_float_represents_runs_in_the_reduced_engine():
    # d >= 2^31 once wrapped to a negative int32 and silently dropped the noise; now d is a float count.
    grid = {"d": [3 * 10**9], "signal_norm": [4.0]}
    result = jaxbo.sweep(grid, seeds=2, config=CONFIG, progress=False)
    assert result.coords["d"].tolist() == [3 * 10**9] and result.metadata["engine"] == "reduced"
    run = jaxbo.simulate(
        sweep_module.run_key(0, 1, {"d": 3 * 10**9, "signal_norm": 4.0}),
        CONFIG.replace(**{"d": 3 * 10**9, "signal_norm": 4.0}),
    )
    np.testing.assert_allclose(result.final["train_loss"][0, 0, 1], run.final.train_loss, rtol=1e-5)
    # Memorising noise of norm σ√d ≫ ‖μ‖ fits every label (noisy ones too) and generalises badly.
    assert (result.final["noisy_fit"] == 1.0).all() and (result.final["test_accuracy"] < 0.9).all()


def test_save_creates_missing_folders_and_reprs_are_short(primal_result, tmp_path):
    npz, _ = primal_result.save(tmp_path / "new" / "deeper" / "result")
    assert jaxbo.load(npz).dims == primal_result.dims
    text = repr(primal_result)
    assert len(text) < 1000 and "d: 3 [30, 34, 60]" in text and "12 runs" in text and "majority regime" in text


def test_save_load_round_trip(primal_result, tmp_path):
    npz, json_path = primal_result.save(tmp_path / "result")
    loaded = jaxbo.load(json_path)
    assert loaded.dims == primal_result.dims and loaded.config == primal_result.config
    for name in primal_result.final:
        np.testing.assert_array_equal(loaded.final[name], primal_result.final[name])
        np.testing.assert_array_equal(loaded.history[name], primal_result.history[name])
    np.testing.assert_array_equal(loaded.regime, primal_result.regime)
    assert loaded.metadata["plan"] == primal_result.metadata["plan"]
    with np.load(npz, allow_pickle=False) as arrays:  # plain arrays only: nothing to unpickle
        assert all(arrays[name].dtype != object for name in arrays.files)


def test_load_says_what_is_wrong_with_a_foreign_or_newer_file(primal_result, tmp_path):
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    with pytest.raises(FileNotFoundError, match=r"foreign\.json is missing: a sweep result is .*foreign\.npz with its"):
        jaxbo.load(tmp_path / "foreign.npz")
    npz, json_path = primal_result.save(tmp_path / "mine")
    np.savez(npz, x=np.zeros(3))  # the data of something else beside a result's .json
    with pytest.raises(ValueError, match=r"mine\.npz lacks the arrays \['log_steps', 'coord/d'"):
        jaxbo.load(json_path)
    meta = json.loads(pathlib.Path(json_path).read_text())
    pathlib.Path(json_path).write_text(json.dumps({**meta, "format": "jaxbo.SweepResult/2"}))
    with pytest.raises(
        ValueError, match=r"written by a newer jaxbo \(format jaxbo\.SweepResult/2\); this one .* reads"
    ):
        jaxbo.load(json_path)
    pathlib.Path(json_path).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match=r"not a jaxbo sweep result \(its format is 'something else'"):
        jaxbo.load(json_path)


def synthetic_result(train: np.ndarray, test: np.ndarray) -> jaxbo.SweepResult:
    """A result over d × seeds with the given final accuracies (noisy fit follows train accuracy)."""
    grid = {"d": np.array([100, 200])}
    return jaxbo.SweepResult(
        dims=("d", "seed"),
        coords={**grid, "seed": np.arange(train.shape[-1])},
        final={"train_accuracy": train, "test_accuracy": test, "noisy_fit": np.where(train >= 1, 1.0, 0.5)},
        history={},
        log_steps=np.zeros(0, np.int64),
        config=CONFIG,
        metadata={"engine": "reduced"},
    )


def test_ties_are_told_apart_from_majorities_in_counts_and_the_cell_table():
    # d = 100: 2 benign + 2 harmful seeds (a tie); d = 200: 3 not overfitting + 1 benign.
    train = np.array([[1.0, 1.0, 1.0, 1.0], [0.9, 0.9, 0.9, 1.0]])
    test = np.array([[1.0, 1.0, 0.9, 0.9], [1.0, 1.0, 1.0, 1.0]])
    result = synthetic_result(train, test)
    assert result.tied().tolist() == [True, False]
    assert result.regime_counts() == {"benign": 0, "harmful": 0, "not overfitting": 1, "tied": 1}
    lines = result.cell_table().splitlines()
    assert lines[0].split() == [
        "d",
        "train",
        "acc",
        "test",
        "acc",
        "noisy",
        "fit",
        "regimes",
        "over",
        "seeds",
        "majority",
    ]
    assert lines[1].split() == ["100", "1.000", "0.950", "1.000", "benign", "2,", "harmful", "2", "tie"]
    assert lines[2].split() == ["200", "0.925", "1.000", "0.625", "benign", "1,", "not", "overfitting", "3", "not",
                                "overfitting"]  # fmt: skip
    assert "tied 1" in repr(result)


def test_cli_summary_prints_a_cell_table_for_small_grids_only():
    from jaxbo.cli import CELL_TABLE_LIMIT, _summary

    small = synthetic_result(np.ones((2, 3)), np.ones((2, 3)))
    small = dataclasses.replace(small, metadata={"engine": "reduced", "plan": {"total_runs": 6}, "elapsed_s": 1.0,
                                                  "compile_s": 0.5, "device_count": 2})  # fmt: skip
    text = _summary(small)
    assert "cells benign 2, harmful 0, not overfitting 0" in text and "tied" not in text
    assert len(text.splitlines()) == 1 + 1 + 2  # summary, table header, one line per cell
    cells = CELL_TABLE_LIMIT + 1
    large = dataclasses.replace(
        small,
        coords={"d": np.arange(cells), "seed": np.arange(3)},
        final={name: np.ones((cells, 3)) for name in small.final},
    )
    assert len(_summary(large).splitlines()) == 1


def test_to_xarray_names_every_axis_and_keeps_the_values(primal_result):
    dataset = primal_result.to_xarray()
    assert tuple(dataset["test_accuracy"].dims) == ("d", "signal_norm", "seed")
    assert tuple(dataset["attention_clean"].dims) == ("d", "signal_norm", "seed", "attention_clean_dim0")
    np.testing.assert_array_equal(dataset["d"].values, [30, 34, 60])
    np.testing.assert_array_equal(dataset["test_accuracy"].values, primal_result.final["test_accuracy"])
    np.testing.assert_array_equal(dataset["regime"].values, primal_result.regime)
    selected = dataset["train_loss"].sel(d=34, signal_norm=8.0).values
    np.testing.assert_array_equal(selected, primal_result.final["train_loss"][1, 1])
    assert jaxbo.results.config_from_json(json.loads(dataset.attrs["config"])) == primal_result.config
