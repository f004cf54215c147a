"""The repository stands alone: its docs point only at files a clone has, and they name no file outside it."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "docs" / "colab.ipynb"])
SOURCES = sorted([*(ROOT / "jaxbo").glob("*.py"), *(ROOT / "scripts").glob("*.py"), *(ROOT / "tests").glob("*.py")])
#: What a clone does not have: the development workspace's spec and reference pages.
OUTSIDE = re.compile(r"\.\./shared|shared/(paper_spec|reference_numbers|STYLE)|\bspec §|paper_spec\.md")


@pytest.mark.parametrize("path", DOCUMENTS + SOURCES, ids=lambda path: str(path.relative_to(ROOT)))
def test_nothing_points_outside_the_repository(path):
    text = path.read_text()
    if path.name == "test_docs.py":
        text = text.replace(OUTSIDE.pattern, "")
    found = OUTSIDE.findall(text)
    assert not OUTSIDE.search(text), f"{path.name} points outside the repository: {found}"


@pytest.mark.parametrize("path", [p for p in DOCUMENTS if p.suffix == ".md"], ids=lambda path: path.name)
def test_every_relative_link_and_named_repository_file_exists(path):
    text = path.read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    named = re.findall(r"`((?:docs|scripts|tests|jaxbo)/[\w./-]+\.(?:md|py|png|ipynb|json|npz))`", text)
    for target in links:
        if re.match(r"[a-z]+://", target):
            continue
        assert (path.parent / target).exists(), f"{path.name} links to {target}, which is not in the repository"
    for target in named:
        assert (ROOT / target).exists(), f"{path.name} names {target}, which is not in the repository"
