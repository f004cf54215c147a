"""docs/architecture.md's one-way data flow and size rules, kept true.

No module imports one that sits after it; the ``engines`` package is one place in that order: its members
(the registered engines' files, found from ``REGISTRY``, and the helpers they share) import earlier modules
and one another without a cycle, and none imports its ``__init__`` (the registry). No function in ``jaxbo/``
is longer than 60 lines of code, docstrings, blank lines and comments aside.
"""

import ast
import graphlib
import importlib
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "jaxbo"
ORDER = [
    "_version",
    "deprecation",
    "config",
    "data",
    "reduced_form",
    "model",
    "loss",
    "kernel_form",
    "metrics",
    "limit",
    "causal_model",
    "evaluation",
    "causal_evaluation",
    "heads",
    "theory",
    "encoder_model",
    "memory",
    "engines",
    "train",
    "plan",
    "devices",
    "checkpoint",
    "results",
    "analysis",
    "sweep",
    "plot",
    "cli",
    "__main__",
]
MAX_FUNCTION_LINES = 60


def imported(path: pathlib.Path) -> set[str]:
    """Every ``jaxbo`` module ``path`` imports, lazily inside functions too, as dotted names below ``jaxbo``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxbo"):
            if node.module == "jaxbo":
                names.update(alias.name for alias in node.names)
            else:
                module = node.module.split(".", 1)[1]
                for alias in node.names:  # from jaxbo.engines import primal: the member, not the registry
                    member = f"{module}.{alias.name}"
                    names.add(member if (PACKAGE / f"{member.replace('.', '/')}.py").exists() else module)
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".", 1)[1] for alias in node.names if alias.name.startswith("jaxbo."))
    return names


def test_every_module_is_placed_and_imports_only_earlier_ones():
    modules = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")
    modules = sorted([*modules, "engines"])
    assert sorted(ORDER) == modules, "a new module needs its place in ORDER and in docs/architecture.md"
    architecture = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    for name in ORDER:
        if not name.startswith("_"):
            assert f"`{name}`" in architecture, f"{name} is missing from docs/architecture.md"
    for name in ORDER:
        if name == "engines":
            continue
        top_level = {module.split(".")[0] for module in imported(PACKAGE / f"{name}.py")}
        later = top_level - set(ORDER[: ORDER.index(name)])
        assert not later, f"jaxbo.{name} imports {sorted(later)}, which sit after it in the data flow"


def engine_members() -> dict[str, set[str]]:
    """Every file of ``jaxbo/engines`` but the registry, with the members it imports."""
    members = {path.stem for path in (PACKAGE / "engines").glob("*.py")} - {"__init__"}
    return {
        member: {name.split(".", 1)[1] for name in imported(PACKAGE / "engines" / f"{member}.py") if "." in name}
        & members
        for member in members
    }


def test_every_engine_file_is_registered_and_every_registered_engine_has_its_file():
    from jaxbo import engines

    graph = engine_members()
    registered = {engine.start.__module__.rsplit(".", 1)[1] for engine in engines.REGISTRY}
    assert registered <= set(graph), f"registered engines without their own file: {sorted(registered - set(graph))}"
    for member in graph:
        module = importlib.import_module(f"jaxbo.engines.{member}")
        if hasattr(module, "ENGINE"):
            assert module.ENGINE in engines.REGISTRY, f"jaxbo.engines.{member}.ENGINE is not in REGISTRY"
            assert member in registered


def test_the_engines_package_imports_only_earlier_modules_and_members():
    graph = engine_members()
    order = list(graphlib.TopologicalSorter(graph).static_order())  # CycleError: members import in a circle
    assert order, "no engine members found"
    earlier_modules = set(ORDER[: ORDER.index("engines")])
    for member in graph:
        found = imported(PACKAGE / "engines" / f"{member}.py")
        later = {name for name in found if name.split(".")[0] not in earlier_modules | {"engines"}}
        assert not later, f"jaxbo.engines.{member} imports {sorted(later)}, which sit after it"
        assert "engines" not in found, f"jaxbo.engines.{member} imports the registry, which imports it"


def function_lengths(text: str):
    """(lines of code, name, line) of every function in source ``text``: its body without the docstring, blank
    lines and comment-only lines."""
    lines = text.splitlines()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]
            code = [line for line in lines[body[0].lineno - 1 : node.end_lineno] if line.strip()]
            yield sum(1 for line in code if not line.strip().startswith("#")), node.name, node.lineno


def test_no_function_is_longer_than_a_screen():
    too_long = [
        f"{path.relative_to(PACKAGE.parent)}:{line} {name} ({count} lines)"
        for path in sorted(PACKAGE.rglob("*.py"))
        for count, name, line in function_lengths(path.read_text())
        if count > MAX_FUNCTION_LINES
    ]
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines of code: {too_long}"


def test_the_length_rule_counts_what_it_says():
    source = "def f():\n    '''doc\n\n    more doc'''\n    # a comment\n\n    x = 1\n    return x\n"
    assert list(function_lengths(source)) == [(2, "f", 1)]
    assert [count for count, _, _ in function_lengths("def g():\n" + "    x = 1\n" * 61)] == [61]


def test_every_subpackage_is_distributed():
    # setuptools installs only the packages pyproject.toml lists: a subpackage left out imports in a checkout
    # and fails in a user's install.
    import tomllib

    listed = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = sorted(".".join(path.parent.relative_to(PACKAGE.parent).parts) for path in PACKAGE.rglob("__init__.py"))
    assert sorted(listed) == found, f"pyproject.toml lists {sorted(listed)}; the packages are {found}"
