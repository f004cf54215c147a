"""jaxbo: benign overfitting in token selection of attention (Sakamoto & Sato, ICML 2025), in JAX."""

from jaxbo import (
    analysis,
    checkpoint,
    data,
    devices,
    encoder,
    engines,
    limit,
    loss,
    metrics,
    model,
    plan,
    plot,
    reduced,
    results,
    theory,
)
from jaxbo import sweep as sweep_module
from jaxbo._version import __version__
from jaxbo.config import Config
from jaxbo.data import Dataset
from jaxbo.devices import use_cpu_cores
from jaxbo.encoder import EncoderParams
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
    "encoder",
    "engines",
    "forward",
    "heads",
    "limit",
    "load",
    "loss",
    "make_run",
    "merge",
    "metrics",
    "model",
    "plan",
    "plot",
    "reduced",
    "results",
    "simulate",
    "sweep",
    "sweep_module",
    "theory",
    "use_cpu_cores",
]
