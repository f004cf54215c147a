"""Devices, merge, chunking, progress and checkpoint/resume of sweeps."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import jaxbo
from jaxbo import engines, sweep_module
from jaxbo.train import jit_config

CONFIG = jaxbo.Config(n_train=8, T=4, n_test=32, steps=30, log_every=10)
GRID = {"d": [40, 900, 10**5], "signal_norm": [3.0, 12.0]}


def same_numbers(a, b):
    assert a.dims == b.dims
    for name in a.final:
        np.testing.assert_array_equal(a.final[name], b.final[name], err_msg=name)
    for name in a.history:
        np.testing.assert_array_equal(a.history[name], b.history[name], err_msg=name)


@pytest.fixture(scope="module")
def reference():
    return jaxbo.sweep(GRID, seeds=3, config=CONFIG, chunk_size=4, histories=True, progress=False)


FOUR_DEVICE_SCRIPT = textwrap.dedent("""
    import jax, numpy as np, jaxbo
    assert jax.device_count() == 4, jax.devices()
    config = jaxbo.Config(n_train=8, T=4, n_test=32, steps=30, log_every=10)
    grid = {"d": [40, 60], "signal_norm": [3.0, 12.0]}
    for engine in ("reduced", "primal"):
        kw = dict(seeds=3, config=config, engine=engine, chunk_size=5, progress=False)
        sharded = jaxbo.sweep(grid, **kw)
        single = jaxbo.sweep(grid, devices=jax.devices()[:1], **kw)
        assert sharded.metadata["device_count"] == 4 and single.metadata["device_count"] == 1
        assert {g["chunk_size"] for g in sharded.metadata["plan"]["groups"]} == {8}  # 5 rounded up to 4k
        for name in sharded.final:
            np.testing.assert_allclose(sharded.final[name], single.final[name], rtol=1e-5, atol=1e-6, err_msg=name)
        for name in ("train_accuracy", "test_accuracy", "noisy_fit"):
            np.testing.assert_array_equal(sharded.final[name], single.final[name], err_msg=name)
    # Large chunks (>= 80 runs per device) once deadlocked: the χ² loop's all-reduce and a vmapped LAPACK QR.
    big = jaxbo.sweep({"d": [100, 2000], "signal_norm": np.linspace(3, 30, 40).tolist()}, seeds=4, config=config,
                      chunk_size=320, progress=False)
    assert big.metadata["plan"]["groups"][0]["chunk_size"] == 320 and np.isfinite(big.final["train_loss"]).all()
    print("four devices ok")
""")


@pytest.mark.slow
def test_four_cpu_devices_agree_with_one_and_large_chunks_finish():
    environment = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", FOUR_DEVICE_SCRIPT], env=environment, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "four devices ok" in done.stdout


def test_this_process_has_one_cpu_device_per_core():
    # conftest asks for one CPU device per core, as users' scripts do with jaxbo.use_cpu_cores().
    assert jax.device_count() == jaxbo.devices.cpu_cores()


@pytest.mark.parametrize(
    ("engine", "histories"),
    [
        ("reduced", False),
        pytest.param("reduced", True, marks=pytest.mark.slow),  # the inner loop reads one program per engine
        ("primal", True),
        pytest.param("primal", False, marks=pytest.mark.slow),
        ("kernel", False),
    ],
)
def test_compiled_chunk_holds_no_cross_device_communication(engine, histories):
    devices = tuple(jax.devices())
    if len(devices) < 2:
        pytest.skip("needs two devices: a 1-device program has no collectives to find")
    size = 4 * len(devices)
    engine = engines.lookup("attention", engine)
    config = CONFIG.replace(d=12, n_test=8, attention="trained" if engine.name == "kernel" else "identity")
    program = sweep_module.chunk_program(
        devices, width=engine.width(config), engine=engine, log_history=histories, optimizer=None, sub_chunks=2
    )
    sharding = NamedSharding(Mesh(np.array(devices), ("runs",)), PartitionSpec("runs"))
    values = {"d": np.full(size, 12, engine.d_dtype)}
    inputs = jax.device_put((np.zeros(size, np.int32), np.arange(size, dtype=np.int32), values), sharding)
    text = program.lower(jax.random.key(0), *inputs, jit_config(config, engine)).compile().as_text()
    found = {name: text.count(name) for name in sweep_module.COLLECTIVES if name in text}
    assert not found, f"collectives in a chunk of independent runs: {found}"


@pytest.mark.slow
def test_large_chunks_on_two_devices_finish_and_match_small_chunks():
    devices = jax.devices()[:2]
    grid = {"d": [100, 2000], "signal_norm": np.linspace(3, 30, 40).tolist()}
    kw = dict(seeds=2, config=CONFIG, progress=False, devices=devices)
    big = jaxbo.sweep(grid, chunk_size=160, **kw)  # 80 runs per device: deadlocked before
    small = jaxbo.sweep(grid, chunk_size=8, **kw)
    assert big.metadata["plan"]["groups"][0]["chunk_size"] == 160
    for name in big.final:  # another batch size: float32 rounding only (the documented statement)
        np.testing.assert_allclose(big.final[name], small.final[name], rtol=1e-5, atol=1e-6, err_msg=name)
    for name in ("train_accuracy", "test_accuracy", "noisy_fit"):
        np.testing.assert_array_equal(big.final[name], small.final[name], err_msg=name)


@pytest.mark.slow
def test_merge_of_slices_equals_the_whole_grid(reference):
    parts = [
        jaxbo.sweep(
            {"d": d, "signal_norm": GRID["signal_norm"]},
            seeds=3,
            config=CONFIG,
            chunk_size=4,
            histories=True,
            progress=False,
        )
        for d in ([10**5, 40], [900])
    ]
    merged = jaxbo.merge(parts)
    np.testing.assert_array_equal(merged.coords["d"], GRID["d"])
    same_numbers(merged, reference)
    assert len(merged.metadata["merged_from"]) == 2
    with pytest.raises(ValueError, match="overlap"):
        jaxbo.merge([parts[0], parts[0]])
    with pytest.raises(ValueError, match="overlap on d"):
        jaxbo.merge(
            [
                parts[0],
                jaxbo.sweep(
                    {"d": [40, 900], "signal_norm": GRID["signal_norm"]},
                    seeds=3,
                    config=CONFIG,
                    histories=True,
                    progress=False,
                ),
            ]
        )
    other = jaxbo.sweep({"d": [900], "signal_norm": [3.0, 12.0]}, seeds=2, config=CONFIG, progress=False)
    with pytest.raises(ValueError, match="seeds"):
        jaxbo.merge([parts[0], other])
    with pytest.raises(TypeError):
        jaxbo.merge([])


class Interrupt(Exception):
    pass


def counting_chunks(monkeypatch):
    """Count the chunks a sweep computes (loaded chunks never have their inputs built)."""
    calls = []
    original = sweep_module._chunk_inputs

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "_chunk_inputs", counted)
    return calls


def test_interrupted_sweep_resumes_to_the_same_numbers(reference, tmp_path, monkeypatch):
    arguments = dict(seeds=3, config=CONFIG, chunk_size=4, histories=True, progress=False, checkpoint=tmp_path)

    def stop_after_two(done):
        if done == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        jaxbo.sweep(GRID, _after_chunk=stop_after_two, **arguments)
    assert len(list(tmp_path.glob("chunk-*.npz"))) == 2 and not list(tmp_path.glob(".tmp-*"))
    calls = counting_chunks(monkeypatch)
    resumed = jaxbo.sweep(GRID, **arguments)
    total_chunks = sum(g["chunks"] for g in resumed.metadata["plan"]["groups"])
    assert len(calls) == total_chunks - 2 and resumed.metadata["checkpoint"]["chunks_loaded"] == 2
    same_numbers(resumed, reference)

    # A corrupted chunk is detected and recomputed, not trusted.
    victim = sorted(tmp_path.glob("chunk-*.npz"))[1]
    victim.write_bytes(victim.read_bytes()[: len(victim.read_bytes()) // 2])
    calls.clear()
    with pytest.warns(RuntimeWarning, match="corrupted"):
        again = jaxbo.sweep(GRID, **arguments)
    assert len(calls) == 1
    same_numbers(again, reference)


def test_checkpoint_of_another_sweep_is_refused(tmp_path):
    jaxbo.sweep({"d": [40]}, seeds=1, config=CONFIG, progress=False, checkpoint=tmp_path)
    with pytest.raises(ValueError, match=r"another sweep.*grid"):
        jaxbo.sweep({"d": [41]}, seeds=1, config=CONFIG, progress=False, checkpoint=tmp_path)
    with pytest.raises(ValueError, match="config"):
        jaxbo.sweep({"d": [40]}, seeds=1, config=CONFIG.replace(rho=0.2), progress=False, checkpoint=tmp_path)
    manifest = tmp_path / "manifest.json"
    values = json.loads(manifest.read_text())
    values["jaxbo"] = "0.0.1"
    manifest.write_text(json.dumps(values))
    with pytest.raises(ValueError, match=r"jaxbo: checkpoint '0\.0\.1'"):
        jaxbo.sweep({"d": [40]}, seeds=1, config=CONFIG, progress=False, checkpoint=tmp_path)


def test_copied_checkpoint_without_its_manifest_is_never_trusted(tmp_path):
    """A copy of another sweep's directory with its manifest deleted: its chunks prove they are not this
    sweep's, so nothing is loaded, and the refusal names exactly the files to delete (issue: key 7 once got
    the key-0 numbers)."""
    import shutil

    grid, arguments = {"d": [40, 60]}, dict(seeds=2, config=CONFIG, chunk_size=2, progress=False)
    first = tmp_path / "A"
    jaxbo.sweep(grid, checkpoint=first, **arguments)
    copy = tmp_path / "X"
    shutil.copytree(first, copy)
    (copy / "manifest.json").unlink()
    chunks = sorted(path.name for path in copy.glob("chunk-*.npz"))
    with pytest.raises(ValueError, match=r"no manifest\.json.*another sweep \(key: checkpoint") as refusal:
        jaxbo.sweep(grid, key=7, checkpoint=copy, **arguments)
    assert all(name in str(refusal.value) for name in chunks) and "none belongs to it" in str(refusal.value)
    assert not (copy / "manifest.json").exists()
    for name in chunks:  # what the message says to delete, and nothing else
        (copy / name).unlink()
    resumed = jaxbo.sweep(grid, key=7, checkpoint=copy, **arguments)
    assert resumed.metadata["checkpoint"]["chunks_loaded"] == 0
    same_numbers(resumed, jaxbo.sweep(grid, key=7, **arguments))


def test_lost_manifest_is_rebuilt_from_chunks_that_prove_they_belong(tmp_path, monkeypatch):
    grid, arguments = {"d": [40, 60]}, dict(seeds=2, config=CONFIG, chunk_size=2, progress=False)
    reference = jaxbo.sweep(grid, checkpoint=tmp_path, **arguments)
    (tmp_path / "manifest.json").write_text("{ truncated")
    calls = counting_chunks(monkeypatch)
    with pytest.warns(RuntimeWarning, match=r"unreadable manifest\.json.*rebuilt it from 2 chunk"):
        again = jaxbo.sweep(grid, checkpoint=tmp_path, **arguments)
    assert calls == [] and again.metadata["checkpoint"]["chunks_loaded"] == 2
    same_numbers(again, reference)
    assert json.loads((tmp_path / "manifest.json").read_text())["seeds"] == 2
    # One foreign chunk among good ones: only that file is named, the good one is kept.
    other = tmp_path / "other"
    jaxbo.sweep(grid, key=5, checkpoint=other, **arguments)
    victim = sorted(tmp_path.glob("chunk-*.npz"))[0]
    victim.write_bytes(sorted(other.glob("chunk-*.npz"))[0].read_bytes())
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(ValueError, match=rf"the other 1, which belong to this sweep, are kept\): {victim.name}\."):
        jaxbo.sweep(grid, checkpoint=tmp_path, **arguments)


def test_foreign_chunk_under_a_valid_manifest_is_recomputed(tmp_path, monkeypatch):
    grid, arguments = {"d": [40, 60]}, dict(seeds=2, config=CONFIG, chunk_size=2, progress=False)
    reference = jaxbo.sweep(grid, checkpoint=tmp_path / "mine", **arguments)
    jaxbo.sweep(grid, key=9, checkpoint=tmp_path / "theirs", **arguments)
    mine = sorted((tmp_path / "mine").glob("chunk-*.npz"))
    mine[1].write_bytes(sorted((tmp_path / "theirs").glob("chunk-*.npz"))[1].read_bytes())
    calls = counting_chunks(monkeypatch)
    with pytest.warns(RuntimeWarning, match=r"not used: it belongs to another sweep \(key: checkpoint"):
        again = jaxbo.sweep(grid, checkpoint=tmp_path / "mine", **arguments)
    assert len(calls) == 1
    same_numbers(again, reference)


def test_resume_notes_are_clean_lines_above_the_progress_bar(tmp_path, capsys):
    grid, arguments = {"d": [40, 60]}, dict(seeds=2, config=CONFIG, chunk_size=2)
    jaxbo.sweep(grid, checkpoint=tmp_path, progress=False, **arguments)
    victim = sorted(tmp_path.glob("chunk-*.npz"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    capsys.readouterr()
    jaxbo.sweep(grid, checkpoint=tmp_path, progress=True, **arguments)  # no warning: said on the bar's stderr
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    note = [line for line in lines if "is unreadable or corrupted" in line]
    assert len(note) == 1 and note[0].startswith("jaxbo.sweep: checkpoint chunk ") and "warn" not in note[0]


@pytest.mark.slow
def test_chunk_size_follows_the_memory_budget():
    budget = 50_000
    small = jaxbo.sweep(
        {"d": [40, 50]},
        seeds=4,
        config=CONFIG,
        engine="primal",
        memory_budget=budget,
        progress=False,
        devices=jax.devices()[:1],
    )
    group = small.metadata["plan"]["groups"][0]
    assert group["runs"] == 4 and budget // group["bytes_per_run"] < 4  # the budget, not the run count, binds
    assert group["chunk_size"] == max(1, budget // group["bytes_per_run"])


def test_progress_bar_on_stderr_with_compile_time_apart(capsys):
    sweep_module.chunk_program.cache_clear()  # so this sweep compiles
    result = jaxbo.sweep({"d": [40, 41]}, seeds=2, config=CONFIG, chunk_size=2, progress=True)
    err = capsys.readouterr().err
    assert "jaxbo.sweep" in err and "4/4" in err and "compile" in err and "run/s" in err
    assert result.metadata["compile_s"] > 0 and result.metadata["compile_s"] < result.metadata["elapsed_s"]
    jaxbo.sweep({"d": [40]}, seeds=2, config=CONFIG, progress=False)
    assert capsys.readouterr().err == ""
