"""Every shipped example uses every CPU core as written: ``use_cpu_cores()`` comes before the first JAX call.

JAX fixes its CPU device count when it starts, so an example that computes anything first runs every later
sweep on one core. These tests read the examples (README's Python blocks, the notebook, the scripts) and check
the order; ``tests/test_devices.py`` checks what the call itself does in fresh processes.
"""

import ast
import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
#: Calls that start JAX (or run a computation) when an example reaches them.
STARTS_JAX = re.compile(r"jax\.random\.|jax\.devices\(|jax\.jit\(|jaxbo\.(simulate|sweep|make_run)\(|jnp\.")


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)


def first_index(source: str, pattern: re.Pattern) -> int:
    match = pattern.search(source)
    return match.start() if match else len(source)


def asks_first(source: str) -> bool:
    """Whether ``source`` calls ``use_cpu_cores()`` before anything that starts JAX."""
    ask = source.find("use_cpu_cores(")
    return ask >= 0 and ask < first_index(source, STARTS_JAX)


def test_readme_python_asks_for_every_core_before_computing():
    blocks = readme_python_blocks()
    assert blocks, "README.md has no ```python block"
    assert asks_first(blocks[0]), blocks[0][:400]


def test_notebook_asks_for_every_core_before_computing():
    notebook = json.loads((ROOT / "docs" / "colab.ipynb").read_text())
    code = "\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
    assert asks_first(code)


SCRIPTS = sorted(path for path in (ROOT / "scripts").glob("*.py") if not path.name.startswith("_"))


def without_docstring(source: str) -> str:
    """The module's code after its docstring (a docstring's usage text is not a computation)."""
    tree = ast.parse(source)
    first = tree.body[0] if tree.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return "\n".join(source.splitlines()[first.end_lineno :])
    return source


@pytest.mark.parametrize("path", SCRIPTS, ids=[path.name for path in SCRIPTS])
def test_every_script_asks_for_every_core_before_computing(path):
    source = path.read_text()
    assert asks_first(without_docstring(source)), f"{path.name} computes with JAX before calling use_cpu_cores()"
    # The call must run at import of the script (module level), not only inside a function called later.
    tree = ast.parse(source)
    top_level = [node for node in tree.body if "use_cpu_cores(" in ast.get_source_segment(source, node)]
    assert any(not isinstance(node, ast.FunctionDef | ast.ClassDef) for node in top_level), path.name
