"""docs/scaling.md's multi-host recipe with two real processes under ``jax.distributed`` (CPU backend, a
coordinator on a loopback port): the merged result equals one sweep over the whole grid, value for value."""

import importlib.util
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import jaxbo

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "multihost_example.py")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_sweep_their_slices_and_the_merge_equals_one_sweep(tmp_path):
    out = tmp_path / "multihost"
    coordinator = f"127.0.0.1:{free_port()}"
    environment = {key: value for key, value in os.environ.items() if key not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    environment["JAX_PLATFORMS"] = "cpu"
    command = [sys.executable, SCRIPT, "--coordinator", coordinator, "--processes", "2", "--out", str(out),
               "--grid", "tiny", "--seeds", "3", "--chunk-size", "4", "--wait", "240"]  # fmt: skip
    processes = [
        subprocess.Popen(
            [*command, "--process-id", str(index)],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in (1, 0)
    ]
    outputs = [process.communicate(timeout=400) for process in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    parts = [jaxbo.load(out / f"part-{index}") for index in (0, 1)]
    assert [part.coords["d"].tolist() for part in parts] == [[40, 80], [60, 100]]  # every 2nd d, from 0 and 1
    assert all(part.metadata["device_count"] == jaxbo.devices.cpu_cores() for part in parts)
    merged = jaxbo.load(out / "phase_diagram")
    assert (out / "phase_diagram.png").stat().st_size > 0
    spec = importlib.util.spec_from_file_location("multihost_example", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)  # its grid, not a copy of it
    whole = jaxbo.sweep(script.TINY, seeds=3, chunk_size=4, progress=False)
    assert merged.dims == whole.dims and merged.seeds == 3
    np.testing.assert_array_equal(merged.coords["d"], whole.coords["d"])
    for name in whole.final:
        np.testing.assert_array_equal(merged.final[name], whole.final[name], err_msg=name)
