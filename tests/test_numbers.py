"""Every engine's numbers are what ``scripts/record_numbers.py`` recorded: a refactor moves no number.

Bit for bit where the conditions match the recording (same CPU model, JAX version, XLA flags and device count;
CI on the recording machine); elsewhere XLA may compile other instruction sequences, so values agree to float32
rounding and decisions (accuracies, regimes) agree where no margin lies within rounding of 0.
"""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "numbers"


def recorder():
    spec = importlib.util.spec_from_file_location("record_numbers", ROOT / "scripts" / "record_numbers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # about 20 compiles; run it after any change that must not move a number
def test_every_recorded_number_is_reproduced():
    module = recorder()
    with np.load(FIXTURE.with_suffix(".npz")) as stored:
        expected = {name: stored[name] for name in stored.files}
    recorded = json.loads(FIXTURE.with_suffix(".json").read_text())["conditions"]
    now = module.conditions()
    exact = recorded == now
    got = module.numbers()
    # Both ways: a number no longer computed, or a new one (a new metric or case) nobody recorded, fails.
    missing, unrecorded = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    assert not missing, f"recorded arrays no longer computed: {missing[:5]}: rerun scripts/record_numbers.py"
    assert not unrecorded, f"computed arrays never recorded: {unrecorded[:5]}: rerun scripts/record_numbers.py"
    for name, value in expected.items():
        if exact:
            np.testing.assert_array_equal(got[name], value, err_msg=f"{name} moved (conditions as recorded)")
        else:
            np.testing.assert_allclose(got[name], value, rtol=2e-4, atol=2e-5, err_msg=f"{name} ({now} vs {recorded})")
