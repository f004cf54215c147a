"""0.4's names that 0.5 moved: each still works for one release, warns, and is the new name's object; and the
rule the moves serve (no model or form file shares its name with an engine's file) stays true."""

import importlib
import pathlib

import pytest

import jaxbo
from jaxbo import engines

PACKAGE = pathlib.Path(jaxbo.__file__).resolve().parent


def test_no_file_of_the_package_shares_its_name_with_an_engine_file():
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    members = {path.stem for path in (PACKAGE / "engines").glob("*.py")} - {"__init__", "base"}
    assert not modules & members
    # Not vacuous: the engines are there, and the model and form files they rest on.
    assert {"primal", "reduced", "kernel", "encoder"} <= members
    assert {"model", "reduced_form", "kernel_form", "encoder_model"} <= modules


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [("reduced", "reduced_form", "lift"), ("kernel", "kernel_form", "step"), ("encoder", "encoder_model", "forward")],
)
def test_the_04_module_names_import_and_warn(old, new, name):
    target = importlib.import_module(f"jaxbo.{new}")
    assert hasattr(target, name)
    for alias in (importlib.import_module(f"jaxbo.{old}"), getattr(jaxbo, old)):
        with pytest.warns(DeprecationWarning, match=rf"jaxbo\.{old} is now jaxbo\.{new}"):
            assert getattr(alias, name) is getattr(target, name)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        alias.no_such_name  # noqa: B018


@pytest.mark.parametrize(
    ("member", "old", "new"),
    [("reduced", "kernel_trainer", "gram_trainer"), ("encoder", "descent_trainer", "encoder_trainer")],
)
def test_the_04_trainer_names_warn_and_give_the_renamed_function(member, old, new):
    module = getattr(engines, member)
    with pytest.warns(DeprecationWarning, match=rf"{old} is now .*{new}"):
        assert getattr(module, old) is getattr(module, new)
    with pytest.raises(AttributeError, match="no attribute 'no_such_trainer'"):
        module.no_such_trainer  # noqa: B018
    # An alias, not a second function of the old name (the kernel engine's kernel_trainer is the only one now).
    assert old not in vars(module)


def test_the_engine_interface_holds_no_model_and_still_answers_its_04_names():
    from jaxbo import evaluation
    from jaxbo.engines import base

    # Model-neutral: what is the attention model's lives in jaxbo.evaluation, not in the interface.
    assert not [name for name in vars(base) if "attention" in name.lower()]
    for name in ("ATTENTION_SETTINGS", "attention_evaluate", "attention_limit", "attention_title"):
        with pytest.warns(DeprecationWarning, match=rf"engines\.base\.{name} is now jaxbo\.evaluation\.{name}"):
            assert getattr(base, name) is getattr(evaluation, name)
