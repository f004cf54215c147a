"""jaxbo: benign overfitting in token selection of attention (Sakamoto & Sato, ICML 2025), in JAX."""

import sys
import types
import warnings

from jaxbo import (
    analysis,
    checkpoint,
    data,
    devices,
    encoder_model,
    engines,
    kernel_form,
    limit,
    loss,
    metrics,
    model,
    plan,
    plot,
    reduced_form,
    results,
    theory,
)
from jaxbo import sweep as sweep_module
from jaxbo._version import __version__
from jaxbo.config import Config
from jaxbo.data import Dataset
from jaxbo.devices import use_cpu_cores
from jaxbo.encoder_model import EncoderParams
from jaxbo.metrics import Metrics
from jaxbo.model import Params, forward
from jaxbo.results import SweepResult, load, merge
from jaxbo.sweep import sweep
from jaxbo.train import Run, make_run, simulate

__all__ = [
    "Config",
    "Dataset",
    "EncoderParams",
    "Metrics",
    "Params",
    "Run",
    "SweepResult",
    "__version__",
    "analysis",
    "checkpoint",
    "data",
    "devices",
    "encoder_model",
    "engines",
    "forward",
    "heads",
    "kernel_form",
    "limit",
    "load",
    "loss",
    "make_run",
    "merge",
    "metrics",
    "model",
    "plan",
    "plot",
    "reduced_form",
    "results",
    "simulate",
    "sweep",
    "sweep_module",
    "theory",
    "use_cpu_cores",
]


def _moved(old: str, new: types.ModuleType) -> types.ModuleType:
    """A stand-in for the module ``jaxbo.<old>`` that 0.5 renamed to ``new``: ``import jaxbo.<old>`` and
    ``from jaxbo import <old>`` still work, and each name read through it warns once per call site
    (``DeprecationWarning``) and is ``new``'s. Removed in 0.6."""
    alias = types.ModuleType(f"jaxbo.{old}", f"Deprecated: renamed {new.__name__} in jaxbo 0.5; removed in 0.6.")

    def __getattr__(name: str):
        if name.startswith("__") or not hasattr(new, name):
            raise AttributeError(f"module {alias.__name__!r} has no attribute {name!r}")
        warnings.warn(
            f"jaxbo.{old} is now {new.__name__} (its model file no longer shares a name with an engine's); "
            "the old name goes in 0.6",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(new, name)

    alias.__getattr__ = __getattr__  # PEP 562: a module's __getattr__ answers names it does not hold
    sys.modules[alias.__name__] = alias
    return alias


# 0.4's module names (docs/changelog.md, "Unreleased"): the model and form files were renamed so that no file
# of jaxbo/ shares its name with an engine's file in jaxbo/engines/.
reduced = _moved("reduced", reduced_form)
kernel = _moved("kernel", kernel_form)
encoder = _moved("encoder", encoder_model)
