"""scripts/variants.py, the study of the paper's open questions, runs end to end (slow: about a minute)."""

import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "variants.py"


@pytest.mark.slow
def test_quick_study_writes_every_section():
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    headings = ("## A trained head", "## Several heads", "## A random start", "## Cost", "## Deeper encoders")
    headings += ("## Sigmoid attention",)
    for heading in (*headings, "## Not measured"):
        assert heading in done.stdout, heading
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "|---" not in line]
    assert len(rows) >= 3 + 5 + 6 + 4 + 4, rows  # every table, headers and rows
    assert done.stdout.count("of them decided at 95 %") == 4  # the base model, sigmoid φ, heads, starts
    assert "margin from the head's noise part" in done.stdout


def test_a_majority_is_decided_only_when_more_seeds_would_keep_it(monkeypatch):
    import importlib.util

    import numpy as np

    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # the script imports its helper module _bench
    spec = importlib.util.spec_from_file_location("variants", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Wilson's 95 % lower bound (closed form checked against its textbook values): 5 of 5 clears ½, 4 of 5 not.
    np.testing.assert_allclose(module.wilson_low(np.array([5.0, 4.0]), 5), [0.566, 0.376], atol=2e-3)
    assert module.wilson_low(np.array(30.0), 40) > 0.5 > module.wilson_low(np.array(3.0), 5)
