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


REPOSITORY = NOTEBOOK.parent.parent


def test_notebook_installs_from_the_repository_and_keeps_colab_jax():
    lines = [line for cell in json.loads(NOTEBOOK.read_text())["cells"] for line in cell["source"]]
    shell = [line for line in lines if line.lstrip().startswith("!") and "pip" in line]
    assert shell and all("$PIP_FLAGS" in line and "JAXBO_TARGET" in line for line in shell)
    assert not any("pip install jaxbo" in line for line in lines)
    assert 'PIP_FLAGS = "--no-deps" if "google.colab" in sys.modules else ""\n' in lines


def test_first_cell_is_the_one_setting_and_the_install_finds_the_clone_or_says_what_to_set(tmp_path, monkeypatch):
    first, install = code_cells()[:2]
    assert [line for line in first.splitlines() if not line.startswith("#")] == ['JAXBO_SOURCE = ""']
    namespace: dict = {}
    exec(compile(first, str(NOTEBOOK), "exec"), namespace)
    monkeypatch.chdir(REPOSITORY / "docs")  # plain Jupyter, opened from a clone: install that clone
    exec(compile(install, str(NOTEBOOK), "exec"), namespace)
    assert namespace["JAXBO_TARGET"] == str(REPOSITORY)
    # Outputs land in the clone's ignored results/, never in docs/; an editable install is not replaced.
    assert namespace["RESULTS"] == REPOSITORY / "results" / "notebook"
    import jaxbo

    from_here = REPOSITORY.resolve() in pathlib.Path(jaxbo.__file__).resolve().parents
    assert namespace["importable_from"](str(REPOSITORY)) == from_here
    assert not namespace["importable_from"](str(tmp_path))
    ignored = __import__("subprocess").run(
        ["git", "check-ignore", "-q", "results/notebook/phase_diagram.png"], cwd=REPOSITORY
    )
    assert ignored.returncode in (0, 128)  # ignored (128: not a git checkout)
    assert (
        namespace["jaxbo_install_target"]("https://example.org/me/jaxbo.git") == "git+https://example.org/me/jaxbo.git"
    )
    assert namespace["jaxbo_install_target"]("jaxbo.zip") == "jaxbo.zip"
    monkeypatch.chdir(tmp_path)  # Colab: no clone around and nothing set
    with pytest.raises(ValueError, match="set JAXBO_SOURCE"):
        exec(compile(install, str(NOTEBOOK), "exec"), namespace)


def test_the_device_cell_asks_for_every_core_before_listing_devices():
    cell = next(cell for cell in code_cells() if "jax.devices()" in cell)
    assert "jaxbo.use_cpu_cores()" in cell and cell.index("jaxbo.use_cpu_cores()") < cell.index("jax.devices()")


def test_notebook_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXBO_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("JAXBO_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.chdir(REPOSITORY)
    displayed = []
    monkeypatch.setattr("IPython.display.display", displayed.append)
    namespace: dict = {}
    for source in code_cells():
        exec(compile(source, str(NOTEBOOK), "exec"), namespace)
    for name in ("phase_diagram.npz", "phase_diagram.json", "phase_diagram.png"):
        assert (tmp_path / name).stat().st_size > 0
    # The figure is shown as an image (plain Jupyter would print a bare Figure's repr instead).
    assert [type(shown).__name__ for shown in displayed] == ["Image"]
    assert list((tmp_path / "checkpoint").glob("chunk-*.npz"))
    result = namespace["result"]
    assert result.final["test_accuracy"].shape == (2, 2, 2) and np.isfinite(result.final["train_loss"]).all()
    # Running the sweep cell again resumes from the checkpoint instead of recomputing.
    sweep_cell = next(cell for cell in code_cells() if "jaxbo.sweep(" in cell)
    exec(compile(sweep_cell, str(NOTEBOOK), "exec"), namespace)
    assert namespace["result"].metadata["checkpoint"]["chunks_loaded"] >= 1
