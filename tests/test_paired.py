"""Paired sweeps: the runs of one seed share every random draw across ‖μ‖ (common random numbers), and the
reduced engine steps them together with one shared Gram matrix (``engines.reduced_paired``)."""

import dataclasses
import importlib

import numpy as np
import optax
import pytest

import jaxbo
from jaxbo import data, engines, plan
from jaxbo.sweep import SweepInterrupted

sweep_module = importlib.import_module("jaxbo.sweep")
REDUCED = engines.lookup("attention", "reduced")
#: The reduced engine without its shared step: a paired sweep then trains each run alone, from the same key.
ALONE = dataclasses.replace(REDUCED, shared_step=None)
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
    # Welch's t over 48 seeds per cell and metric: pairing (here with the reduced engine's shared step) moves no
    # cell's mean beyond seed noise.
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


# --- the shared step --------------------------------------------------------------------------------------------

#: ‖μ‖ first and a third axis, so the plan must gather each key's runs from across the run table; 18 keys in
#: chunks of 8 keys (24 runs) leave a short last chunk to pad with whole keys.
SHARED_GRID = {"signal_norm": [2.0, 6.0, 20.0], "d": [30, 300], "rho": [0.3, 0.6, 0.9]}


def assert_same_runs(shared, alone, part: str, rtol: float = 2e-5, atol: float = 2e-6):
    assert set(getattr(shared, part)) == set(getattr(alone, part)) and getattr(shared, part)
    for name, values in getattr(shared, part).items():
        np.testing.assert_allclose(values, getattr(alone, part)[name], rtol=rtol, atol=atol, err_msg=f"{part}/{name}")


@pytest.mark.parametrize("histories", [False, True])
def test_the_shared_step_trains_every_run_as_it_trains_alone(histories):
    # Same keys, so the same draws: one Gram matrix per key against one per run, summed in another order, so
    # float32 rounding apart. d = 30 < n·T = 32 takes the Gaussian block, d = 300 the Bartlett factor.
    arguments = dict(seeds=3, config=CONFIG, key=7, paired=True, histories=histories, chunk_size=24, progress=False)
    shared = jaxbo.sweep(SHARED_GRID, **arguments)
    alone = jaxbo.sweep(SHARED_GRID, engine=ALONE, **arguments)
    described = shared.metadata["plan"]
    assert described["shared_step"] is True and described["groups"][0]["pair_size"] == 3
    assert [group["chunks"] for group in described["groups"]] == [3]  # 8 + 8 + 2 keys, the last padded
    assert alone.metadata["plan"]["shared_step"] is False
    assert alone.metadata["plan"]["unshared"] == ["the reduced engine has no shared step for paired runs"]
    assert_same_runs(shared, alone, "final")
    if histories:
        assert_same_runs(shared, alone, "history")
    # Not vacuous: the runs differ across ‖μ‖ (ν ∝ 1/‖μ‖ and the signal both move every metric).
    assert np.ptp(shared.final["train_loss"], axis=0).min() > 1e-3


def test_run_paired_is_make_run_at_each_signal_norm():
    config = CONFIG.replace(d=300)
    key = sweep_module.run_key(4, 1, {"d": 300, "signal_norm": 6.0}, paired=True)
    norms = np.array([2.0, 6.0, 20.0], np.float32)
    traced = jaxbo.train.jit_config(config, REDUCED)
    final, history = jaxbo.train.run_paired(key, traced, norms, width=REDUCED.width(config), engine=REDUCED)
    assert history is None and final.train_loss.shape == (3,) and final.attention_test.shape == (3, 4)
    for m, norm in enumerate(norms):
        alone = jaxbo.make_run(config.replace(signal_norm=float(norm)), log_history=False)(key).final
        for name, value in vars(alone).items():
            np.testing.assert_allclose(getattr(final, name)[m], value, rtol=2e-5, atol=2e-6, err_msg=name)


def test_paired_order_gathers_each_keys_runs_in_grid_order():
    axes = {name: np.asarray(values) for name, values in SHARED_GRID.items()}
    _, seed_index, ids = plan.run_table(axes, 2, paired=True)
    order = plan.paired_order(np.arange(len(ids)), axes, 2)
    np.testing.assert_array_equal(np.sort(order), np.arange(len(ids)))  # a permutation of the runs
    values, _, _ = plan.run_table(axes, 2)
    for block in order.reshape(-1, 3):
        assert len(set(ids[block])) == 1 and len(set(seed_index[block])) == 1  # one key
        np.testing.assert_array_equal(values["signal_norm"][block], SHARED_GRID["signal_norm"])
        assert len({(values["d"][row], values["rho"][row]) for row in block}) == 1


def test_a_paired_cpu_plan_chunks_whole_keys_at_least_two_a_batch():
    grid = {"d": [250 + 125 * i for i in range(39)], "signal_norm": list(range(5, 44))}  # the paper's shape
    axes = plan.validate_grid(grid, jaxbo.Config())
    backend = plan.Backend("cpu", 2, 24 << 30)
    made = plan.make_plan(axes, jaxbo.Config(), seeds=10, engine=REDUCED, histories=False, backend=backend, paired=True)
    (group,) = made.groups
    assert group.pair_size == 39 and group.chunk_size % (39 * 2 * group.sub_chunks) == 0
    assert group.chunk_size // (39 * 2 * group.sub_chunks) >= 2  # keys per device and batch
    unshared = plan.make_plan(
        axes, jaxbo.Config(), seeds=10, engine=REDUCED, histories=False, backend=backend, paired=True,
        unshared=["a reason"],
    )  # fmt: skip
    assert unshared.groups[0].pair_size == 1 and unshared.describe()["unshared"] == ["a reason"]
    single = plan.validate_grid({"d": [250, 500], "signal_norm": [5.0]}, jaxbo.Config())
    alone = plan.make_plan(
        single, jaxbo.Config(), seeds=2, engine=REDUCED, histories=False, backend=backend, paired=True
    )
    assert alone.groups[0].pair_size == 1 and alone.describe()["shared_step"] is False
    assert alone.describe()["unshared"] == ["one value of signal_norm: each key has one run"]
    primal = plan.make_plan(
        axes, jaxbo.Config(), seeds=1, engine="primal", histories=False, backend=backend, paired=True
    )
    assert primal.groups[0].pair_size == 1  # no shared step: the engine's own reason, by default
    assert primal.describe()["unshared"] == ["the primal engine has no shared step for paired runs"]


def test_what_keeps_runs_apart_is_named():
    config = jaxbo.Config()
    momentum = optax.sgd(0.005, momentum=0.9)  # rotation-equivariant: the reduced engine stays exact
    assert REDUCED.unshared(config, None) == []
    assert REDUCED.unshared(config, momentum) == ["a custom optimizer (the shared step is plain gradient descent)"]
    assert "Config.gradient = 'autodiff'" in REDUCED.unshared(config.replace(gradient="autodiff"), None)[0]
    assert "Config.heads = 2" in REDUCED.unshared(config.replace(heads=2), None)[0]
    for name in ("primal", "kernel"):
        reasons = engines.lookup("attention", name).unshared(config, None)
        assert reasons == [f"the {name} engine has no shared step for paired runs"]
    # Such a sweep is still paired, by its keys: the metadata says so and why its runs step alone.
    result = jaxbo.sweep(GRID, seeds=1, config=CONFIG, paired=True, optimizer=momentum, progress=False)
    assert result.metadata["paired"] is True and result.metadata["plan"]["shared_step"] is False
    assert result.metadata["plan"]["unshared"] == ["a custom optimizer (the shared step is plain gradient descent)"]


def test_a_shared_step_sweep_resumes_to_the_same_numbers(tmp_path):
    arguments = dict(seeds=3, config=CONFIG, key=7, paired=True, chunk_size=24, progress=False)

    def stop_after_one(done: int) -> None:
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(SweepInterrupted, match=r"1 of 3 chunks \(24 of 54 runs\) saved"):
        jaxbo.sweep(SHARED_GRID, checkpoint=tmp_path, _after_chunk=stop_after_one, **arguments)
    resumed = jaxbo.sweep(SHARED_GRID, checkpoint=tmp_path, **arguments)
    whole = jaxbo.sweep(SHARED_GRID, **arguments)
    assert resumed.metadata["checkpoint"]["chunks_loaded"] == 1
    for name, values in whole.final.items():
        np.testing.assert_array_equal(resumed.final[name], values, err_msg=name)
