"""jaxbo: benign overfitting in token selection of attention (Sakamoto & Sato, ICML 2025), in JAX."""

from jaxbo import data, loss, model, theory
from jaxbo.config import Config
from jaxbo.data import Dataset
from jaxbo.model import Params, forward
from jaxbo.train import Metrics, Run, make_run, simulate

__version__ = "0.1.0"

__all__ = [
    "Config",
    "Dataset",
    "Metrics",
    "Params",
    "Run",
    "__version__",
    "data",
    "forward",
    "loss",
    "make_run",
    "model",
    "simulate",
    "theory",
]
