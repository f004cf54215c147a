"""Names a release moved, kept for one more: a stand-in module for a renamed one, and a module ``__getattr__``
(PEP 562) for renamed or moved functions. Each old name warns (``DeprecationWarning``) and gives the new object.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any

#: The release that removes the names kept here.
REMOVED_IN = "0.6"


def moved_module(old: str, new: types.ModuleType, why: str) -> types.ModuleType:
    """A stand-in for the module ``old`` (dotted) that a release renamed to ``new``: ``import old`` and ``from
    package import <last part>`` still work, and each name read through it warns and is ``new``'s."""
    alias = types.ModuleType(old, f"Deprecated: renamed {new.__name__}; removed in {REMOVED_IN}.")

    def __getattr__(name: str):
        if name.startswith("__") or not hasattr(new, name):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(
            f"{old} is now {new.__name__} ({why}); the old name goes in {REMOVED_IN}", DeprecationWarning, stacklevel=2
        )
        return getattr(new, name)

    alias.__getattr__ = __getattr__  # PEP 562: a module's __getattr__ answers names it does not hold
    sys.modules[old] = alias
    return alias


def moved_names(module: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module's ``__getattr__`` answering the names a release renamed or moved out of it: ``names`` maps each
    old name to the new one's dotted path (``"jaxbo.evaluation.attention_title"``), imported when first read."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        where, _, new = names[name].rpartition(".")
        warnings.warn(
            f"{module}.{name} is now {where}.{new}; the old name goes in {REMOVED_IN}", DeprecationWarning, stacklevel=2
        )
        return getattr(importlib.import_module(where), new)

    return __getattr__
