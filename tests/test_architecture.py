"""docs/architecture.md's one-way data flow, kept true: no module imports one that sits after it."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "jaxbo"
ORDER = [
    "_version",
    "config",
    "data",
    "reduced",
    "model",
    "loss",
    "kernel",
    "theory",
    "encoder",
    "memory",
    "train",
    "plan",
    "devices",
    "checkpoint",
    "results",
    "sweep",
    "plot",
    "cli",
    "__main__",
]


def imported_modules(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):  # lazy imports inside functions count too
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxbo"):
            if node.module == "jaxbo":
                names.update(alias.name for alias in node.names)
            else:
                names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("jaxbo."))
    return names


def test_every_module_is_placed_and_imports_only_earlier_ones():
    modules = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")
    assert sorted(ORDER) == modules, "a new module needs its place in ORDER and in docs/architecture.md"
    architecture = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    for name in ORDER:
        if not name.startswith("_"):
            assert f"`{name}`" in architecture, f"{name} is missing from docs/architecture.md"
    for name in ORDER:
        later = imported_modules(PACKAGE / f"{name}.py") - set(ORDER[: ORDER.index(name)])
        assert not later, f"jaxbo.{name} imports {sorted(later)}, which sit after it in the data flow"
