"""scripts/causal.py, the causal model's study, runs end to end (slow: about two minutes)."""

import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "causal.py"


@pytest.mark.slow
def test_quick_study_writes_every_section():
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    headings = ("## What the runs say", "## The paper's grid", "## Test accuracy along the sequence")
    headings += ("## The wide grid", "## The t → ∞ limit", "## The causal model (`scripts/causal.py`)")
    for heading in headings:
        assert heading in done.stdout, heading
    for finding in ("**Sequence-level noise (the control)**", "**Token-level noise**"):
        assert finding in done.stdout, finding
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "|---" not in line]
    assert len(rows) >= 4 + 3 + 4 + 4 + 4 + 4, rows  # every table's header and rows
    assert "nan%" not in done.stdout
