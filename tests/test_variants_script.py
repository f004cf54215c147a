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
    for heading in (*headings, "## Not measured"):
        assert heading in done.stdout, heading
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "|---" not in line]
    assert len(rows) >= 3 + 5 + 6 + 4 + 4, rows  # every table, headers and rows
