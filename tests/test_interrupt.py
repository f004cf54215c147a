"""Ctrl-C during a sweep: one message saying what was saved, a clean exit from the command line, and a resume
that says what it loaded."""

import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import jax
import numpy as np
import pytest

import jaxbo
from jaxbo import cli
from jaxbo.sweep import SweepInterrupted

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")

sweep_module = importlib.import_module("jaxbo.sweep")

CONFIG = jaxbo.Config(n_train=6, T=4, n_test=16, steps=20, log_every=10)
GRID = {"d": [40, 41, 42], "signal_norm": [5.0, 50.0]}


def interrupt_after(chunks: int):
    def after_chunk(done: int) -> None:
        if done == chunks:
            raise KeyboardInterrupt

    return after_chunk


def test_interrupt_says_what_was_saved_and_the_rerun_says_what_it_loaded(tmp_path, capsys):
    arguments = dict(seeds=2, config=CONFIG, chunk_size=2, checkpoint=tmp_path)
    with pytest.raises(SweepInterrupted) as interrupted:
        jaxbo.sweep(GRID, progress=False, _after_chunk=interrupt_after(2), **arguments)
    assert isinstance(interrupted.value, KeyboardInterrupt)  # code that stops on Ctrl-C still stops
    assert str(interrupted.value) == (
        f"jaxbo.sweep interrupted: 2 of 6 chunks (4 of 12 runs) saved in {tmp_path}; "
        "run the same call again to resume from there"
    )
    capsys.readouterr()
    resumed = jaxbo.sweep(GRID, progress=True, **arguments)
    err = capsys.readouterr().err
    assert f"resuming from {tmp_path}: 2 of 6 chunks (4 of 12 runs) loaded, 4 to compute" in err
    assert resumed.metadata["checkpoint"]["chunks_loaded"] == 2


def test_interrupt_without_a_checkpoint_says_nothing_was_saved_and_how_to_keep_it():
    with pytest.raises(SweepInterrupted, match=r"after 1 of 6 chunks .* nothing was saved: pass checkpoint=DIR"):
        jaxbo.sweep(GRID, seeds=2, config=CONFIG, chunk_size=2, progress=False, _after_chunk=interrupt_after(1))


def test_command_line_prints_the_message_not_a_traceback(monkeypatch, tmp_path, capsys):
    def interrupted(*args, **kwargs):
        raise SweepInterrupted("jaxbo.sweep interrupted: 3 of 9 chunks (…) saved in DIR; run the same call again")

    monkeypatch.setattr(sweep_module, "sweep", interrupted)
    status = cli.main(["sweep", "--d", "40", "--out", str(tmp_path), "--checkpoint", str(tmp_path / "ck")])
    err = capsys.readouterr().err
    assert status == 130
    assert err.strip() == "jaxbo.sweep interrupted: 3 of 9 chunks (…) saved in DIR; run the same call again"


@pytest.mark.slow
def test_a_real_ctrl_c_on_the_command_line_then_the_same_command_resumes(tmp_path):
    checkpoint = tmp_path / "checkpoint"
    command = [
        sys.executable, "-m", "jaxbo", "sweep", "--d", "250:5000:20", "--signal-norm", "5:100:20", "--seeds", "10",
        "--chunk-size", "16", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    environment = {**os.environ, "JAXBO_CACHE_DIR": ""}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    deadline = time.monotonic() + 240
    while not list(checkpoint.glob("chunk-*.npz")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    saved = len(list(checkpoint.glob("chunk-*.npz")))
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in err and out == ""
    assert "of 250 chunks (" in err and f"saved in {checkpoint}; run the same call again to resume" in err
    assert 1 <= saved < 250
    again = subprocess.run([*command, "--quiet"], capture_output=True, text=True, env=environment, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "out" / "phase_diagram.npz").exists()
    assert jaxbo.load(tmp_path / "out" / "phase_diagram").metadata["checkpoint"]["chunks_loaded"] == saved


def test_command_line_says_a_corrupted_chunk_in_one_line_even_when_quiet(tmp_path, capsys):
    small = ["--set", "n_train=6", "--set", "T=4", "--set", "n_test=16", "--set", "steps=20", "--quiet"]
    command = ["sweep", "--d", "40,60", "--signal-norm", "5", "--seeds", "2", "--chunk-size", "2", *small]
    command += ["--out", str(tmp_path), "--checkpoint", str(tmp_path / "A")]
    assert cli.main(command) == 0
    victim = sorted((tmp_path / "A").glob("chunk-*.npz"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    capsys.readouterr()
    with warnings.catch_warnings():  # a user's process shows warnings; the suite's filters make them errors
        warnings.simplefilter("default")
        assert cli.main(command) == 0
    err = capsys.readouterr().err.splitlines()
    notes = [line for line in err if "unreadable or corrupted" in line]
    assert len(notes) == 1 and " sweep: warning: checkpoint chunk " in notes[0], err
    assert not any("warnings.warn" in line or "RuntimeWarning" in line for line in err), err


def test_command_line_refuses_a_copied_checkpoint_without_its_manifest(tmp_path, capsys):
    import shutil

    small = ["--set", "n_train=6", "--set", "T=4", "--set", "n_test=16", "--set", "steps=20", "--quiet"]
    command = ["sweep", "--d", "40,60", "--signal-norm", "5", "--seeds", "2", "--chunk-size", "2", *small]
    assert cli.main([*command, "--out", str(tmp_path / "a"), "--checkpoint", str(tmp_path / "A")]) == 0
    shutil.copytree(tmp_path / "A", tmp_path / "X")
    (tmp_path / "X" / "manifest.json").unlink()
    capsys.readouterr()
    status = cli.main([*command, "--key", "7", "--out", str(tmp_path / "x"), "--checkpoint", str(tmp_path / "X")])
    err = capsys.readouterr().err
    assert status == 2 and "no manifest.json" in err and "key: checkpoint" in err
    assert all(path.name in err for path in (tmp_path / "X").glob("chunk-*.npz"))
    assert not (tmp_path / "x" / "phase_diagram.npz").exists()


def test_a_store_written_by_0_4_0_resumes_after_fields_were_added(tmp_path):
    # tests/data/store_0_4_0 was written by jaxbo 0.4.0 (commit 1960886), before Config.weight_init and
    # Config.normaliser existed: a sweep that leaves them at their defaults loads every chunk and trains nothing.

    store = tmp_path / "store"
    shutil.copytree(os.path.join(DATA, "store_0_4_0"), store)
    config = jaxbo.Config(n_train=4, T=3, d=20, n_test=16, steps=20, log_every=10, signal_norm=2.0)
    grid = {"d": [20, 30], "signal_norm": [2.0, 4.0]}
    arguments = dict(seeds=2, config=config, chunk_size=2, devices=jax.devices()[:1], progress=False)
    resumed = jaxbo.sweep(grid, checkpoint=store, **arguments)
    assert resumed.metadata["checkpoint"]["chunks_loaded"] == 4  # all of them: nothing trained again
    recorded = np.load(os.path.join(DATA, "store_0_4_0_test_accuracy.npy"))
    np.testing.assert_array_equal(resumed.final["test_accuracy"], recorded)
    with pytest.raises(ValueError, match=r"belongs to another sweep \(config: "):
        jaxbo.sweep(grid, checkpoint=store, **{**arguments, "config": config.replace(normaliser="sigmoid")})
