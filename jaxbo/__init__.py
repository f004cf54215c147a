"""jaxbo: benign overfitting in token selection of attention (Sakamoto & Sato, ICML 2025), in JAX."""

from jaxbo import data, loss, model, reduced, theory
from jaxbo._version import __version__
from jaxbo.config import Config
from jaxbo.data import Dataset
from jaxbo.model import Params, forward
from jaxbo.results import SweepResult, load
from jaxbo.sweep import sweep
from jaxbo.train import Metrics, Run, make_run, simulate

__all__ = [
    "Config",
    "Dataset",
    "Metrics",
    "Params",
    "Run",
    "SweepResult",
    "__version__",
    "data",
    "forward",
    "load",
    "loss",
    "make_run",
    "model",
    "reduced",
    "simulate",
    "sweep",
    "theory",
]
