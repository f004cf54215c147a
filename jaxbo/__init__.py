"""jaxbo: benign overfitting in token selection of attention (Sakamoto & Sato, ICML 2025), in JAX."""

from jaxbo import (
    analysis,
    causal_evaluation,
    causal_model,
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
from jaxbo.deprecation import moved_module
from jaxbo.devices import use_cpu_cores
from jaxbo.encoder_model import EncoderParams
from jaxbo.metrics import CausalMetrics, Metrics
from jaxbo.model import Params, forward
from jaxbo.results import SweepResult, load, merge
from jaxbo.sweep import sweep
from jaxbo.train import Run, make_run, simulate

__all__ = [
    "CausalMetrics",
    "Config",
    "Dataset",
    "EncoderParams",
    "Metrics",
    "Params",
    "Run",
    "SweepResult",
    "__version__",
    "analysis",
    "causal_evaluation",
    "causal_model",
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


# 0.4's module names (docs/changelog.md, "Unreleased"): the model and form files were renamed so that no file
# of jaxbo/ shares its name with an engine's file in jaxbo/engines/.
_WHY = "its file no longer shares a name with an engine's"
reduced = moved_module("jaxbo.reduced", reduced_form, _WHY)
kernel = moved_module("jaxbo.kernel", kernel_form, _WHY)
encoder = moved_module("jaxbo.encoder", encoder_model, _WHY)
