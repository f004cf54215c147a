"""The Colab notebook's code cells run on CPU with a tiny grid, so the notebook cannot silently rot."""

import json
import pathlib

import numpy as np
import pytest

NOTEBOOK = pathlib.Path(__file__).resolve().parent.parent / "docs" / "colab.ipynb"


def code_cells() -> list[str]:
    notebook = json.loads(NOTEBOOK.read_text())
    cells = ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]
    # Shell (!) and magic (%) lines are Colab's business: pip install is tested by the README's commands.
    return ["\n".join(line for line in cell.splitlines() if not line.lstrip().startswith(("!", "%"))) for cell in cells]


def test_notebook_installs_from_git_without_touching_jax():
    install = [line for cell in json.loads(NOTEBOOK.read_text())["cells"] for line in cell["source"] if "pip" in line]
    assert install and all("--no-deps" in line and "JAXBO_GIT" in line for line in install if line.startswith("!"))
    assert not any("pip install jaxbo" in line for line in install)


def test_first_cell_is_the_one_setting_and_the_install_refuses_the_placeholder():
    first, install = code_cells()[:2]
    assert [line for line in first.splitlines() if not line.startswith("#")] == [
        'JAXBO_REPOSITORY = "https://github.com/OWNER/REPOSITORY.git"'
    ]
    namespace: dict = {}
    exec(compile(first, str(NOTEBOOK), "exec"), namespace)
    with pytest.raises(ValueError, match="set JAXBO_REPOSITORY"):
        exec(compile(install, str(NOTEBOOK), "exec"), namespace)


def test_notebook_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXBO_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("JAXBO_NOTEBOOK_OUT", str(tmp_path))
    namespace: dict = {}
    for index, source in enumerate(code_cells()):
        if index == 0:  # the user's one setting: a real clone URL
            source = 'JAXBO_REPOSITORY = "https://example.org/jaxbo.git"'
        exec(compile(source, str(NOTEBOOK), "exec"), namespace)
    for name in ("phase_diagram.npz", "phase_diagram.json", "phase_diagram.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert list((tmp_path / "checkpoint").glob("chunk-*.npz"))
    result = namespace["result"]
    assert result.final["test_accuracy"].shape == (2, 2, 2) and np.isfinite(result.final["train_loss"]).all()
    # Running the sweep cell again resumes from the checkpoint instead of recomputing.
    exec(compile(code_cells()[4], str(NOTEBOOK), "exec"), namespace)
    assert namespace["result"].metadata["checkpoint"]["chunks_loaded"] >= 1
