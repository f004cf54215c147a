"""scripts/accelerator_check.py at tiny sizes on the CPU, so the one command a lent GPU or TPU runs cannot rot."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_dry_run_passes_its_checks_and_writes_one_row_per_benchmark(tmp_path):
    spec = importlib.util.spec_from_file_location("accelerator_check", ROOT / "scripts" / "accelerator_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    page = tmp_path / "benchmarks.md"
    assert module.main(["--tiny", "--page", str(page)]) == 0
    text = page.read_text()
    assert "<!-- accelerator_check:start -->" in text and "Checks, all passed: kernel = primal" in text
    assert "HIGHEST precision" in text and "analytic = autodiff gradient" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    labels = ["| reduced, W = I", "| reduced, paired (one Gram matrix per key)", "| kernel, W and p trained (Figure 5)"]
    assert [row.split(" | ")[0] for row in rows] == [*labels, "| encoder slice"]
    assert [row.split(" | ")[2] for row in rows] == ["reduced", "reduced", "kernel", "encoder"]
