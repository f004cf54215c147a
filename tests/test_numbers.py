"""Every engine's numbers are what ``scripts/record_numbers.py`` recorded: a refactor moves no number.

Bit for bit where the conditions match the recording (same CPU model, JAX version, XLA flags and device count;
CI on the recording machine); elsewhere XLA may compile other instruction sequences, so values agree to float32
rounding and decisions (accuracies, regimes) agree where no margin lies within rounding of 0.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "numbers"
#: Tries of the recording process: a second only when the first was killed by a signal. XLA:CPU has crashed a
#: busy CI worker with a segmentation fault while compiling one of these programs (inside
#: ``backend_compile_and_load``; the same programs compiled and ran in every other run), and such a crash is no
#: verdict on the numbers. Any other failure, and a second crash, fails at once.
TRIES = 2


def record(out: pathlib.Path) -> dict:
    """Run ``scripts/record_numbers.py --out`` in a fresh process (as the recording was made) and read back what
    it wrote: ``{"arrays": {name: array}, "conditions": {...}}``."""
    command = [sys.executable, str(ROOT / "scripts" / "record_numbers.py"), "--out", str(out)]
    for attempt in range(TRIES):
        done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
        if done.returncode >= 0 or attempt == TRIES - 1:
            break
        print(f"record_numbers.py died of signal {-done.returncode}; trying once more:\n{done.stderr[-3000:]}")
    assert done.returncode == 0, f"record_numbers.py failed ({done.returncode}):\n{done.stderr[-3000:]}"
    with np.load(out.with_suffix(".npz")) as stored:
        arrays = {name: stored[name] for name in stored.files}
    return {"arrays": arrays, "conditions": json.loads(out.with_suffix(".json").read_text())["conditions"]}


@pytest.mark.slow  # about 20 compiles; run it after any change that must not move a number
def test_every_recorded_number_is_reproduced(tmp_path):
    with np.load(FIXTURE.with_suffix(".npz")) as stored:
        expected = {name: stored[name] for name in stored.files}
    recorded = json.loads(FIXTURE.with_suffix(".json").read_text())["conditions"]
    computed = record(tmp_path / "numbers")
    got, now = computed["arrays"], computed["conditions"]
    exact = recorded == now
    # Both ways: a number no longer computed, or a new one (a new metric or case) nobody recorded, fails.
    missing, unrecorded = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    assert not missing, f"recorded arrays no longer computed: {missing[:5]}: rerun scripts/record_numbers.py"
    assert not unrecorded, f"computed arrays never recorded: {unrecorded[:5]}: rerun scripts/record_numbers.py"
    for name, value in expected.items():
        if exact:
            np.testing.assert_array_equal(got[name], value, err_msg=f"{name} moved (conditions as recorded)")
        else:
            np.testing.assert_allclose(got[name], value, rtol=2e-4, atol=2e-5, err_msg=f"{name} ({now} vs {recorded})")
