"""Devices, merge, chunking, progress and checkpoint/resume of sweeps."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import jaxbo
from jaxbo import sweep_module

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


def test_sharded_over_four_cpu_devices_equals_one_device():
    script = textwrap.dedent("""
        import jax, numpy as np, jaxbo
        assert jax.device_count() == 4, jax.devices()
        config = jaxbo.Config(n_train=8, T=4, n_test=32, steps=30, log_every=10)
        for engine in ("reduced", "primal"):
            grid = {"d": [40, 60], "signal_norm": [3.0, 12.0]}
            kw = dict(seeds=3, config=config, engine=engine, chunk_size=5, progress=False)
            sharded = jaxbo.sweep(grid, **kw)
            single = jaxbo.sweep(grid, devices=jax.devices()[:1], **kw)
            assert sharded.metadata["device_count"] == 4 and single.metadata["device_count"] == 1
            assert {g["chunk_size"] for g in sharded.metadata["plan"]["groups"]} == {8}  # 5 rounded up to 4k
            for name in sharded.final:
                np.testing.assert_allclose(sharded.final[name], single.final[name], rtol=1e-6, atol=1e-7, err_msg=name)
        print("sharded == single")
    """)
    environment = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sharded == single" in done.stdout


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
    calls = []
    original = sweep_module._run_chunk_jit

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "_run_chunk_jit", counted)
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


def test_chunk_size_follows_the_memory_budget():
    budget = 50_000
    small = jaxbo.sweep(
        {"d": [40, 50]},
        seeds=4,
        config=CONFIG,
        engine="primal",
        memory_budget=budget,
        progress=False,
        devices=jaxbo.sweep_module.jax.devices()[:1],
    )
    group = small.metadata["plan"]["groups"][0]
    assert group["runs"] == 4 and budget // group["bytes_per_run"] < 4  # the budget, not the run count, binds
    assert group["chunk_size"] == max(1, budget // group["bytes_per_run"])


def test_progress_lines_go_to_stderr_between_chunks(capsys):
    tracker = sweep_module._Progress(total_runs=100, total_chunks=3, enabled=True, after=0.0, every=0.0)
    for chunk in (1, 2, 3):
        tracker.update(chunk, chunk * 33)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and "chunk 3/3" in lines[-1] and "runs/s" in lines[0] and "ETA" in lines[0]
    jaxbo.sweep({"d": [40]}, seeds=2, config=CONFIG, progress=False)
    assert capsys.readouterr().err == ""
