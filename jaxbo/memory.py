"""What one run costs in memory, and what a device has: the numbers that size and refuse runs.

Pure Python; no JAX backend is started here unless ``Backend.of`` is handed devices.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from jaxbo.config import Config

#: The primal engine indexes coordinates with int32.
MAX_PRIMAL_WIDTH = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class Backend:
    """What the plan needs to know of the devices a sweep runs on.

    Attributes:
      platform: ``"cpu"``, ``"gpu"`` or ``"tpu"`` (JAX's ``Device.platform``).
      device_count: devices the runs are sharded over.
      memory_bytes: memory of one device in bytes, or None where JAX does not report it.
    """

    platform: str
    device_count: int
    memory_bytes: int | None = None

    @property
    def accelerator(self) -> bool:
        return self.platform != "cpu"

    @classmethod
    def of(cls, devices: Sequence[Any]) -> Backend:
        """The backend of ``devices`` (``jax.Device`` objects): platform, count and per-device memory.

        Memory is ``Device.memory_stats()["bytes_limit"]`` where the runtime reports it (GPU, TPU), else, on a
        CPU, the machine's physical memory.
        """
        devices = list(devices)
        platform = devices[0].platform
        memory = None
        try:
            stats = devices[0].memory_stats()
            memory = int(stats["bytes_limit"]) if stats and "bytes_limit" in stats else None
        except Exception:  # backends without memory statistics raise various errors
            memory = None
        if memory is None and platform == "cpu":
            memory = physical_memory()
        return cls(platform=platform, device_count=len(devices), memory_bytes=memory)


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def encoder_parameter_count(d: int, mlp_width: int) -> int:
    """Number of parameters of the one-layer encoder (``jaxbo.encoder.EncoderParams``) of width d."""
    return 3 * d * d + 2 * d * mlp_width + mlp_width + 9 * d + 1


def bytes_per_run(config: Config, engine: str, width: int, log_history: bool) -> int:
    """Rough peak bytes of one run's arrays (tokens and their sampling temporaries, W, histories).

    The encoder holds its parameters, their gradient, the update and the new parameters (4 copies), its
    activations, and a full d-dimensional test set (sampled, then layer-normalised).
    """
    T = config.T
    if config.model == "encoder":
        parameters = encoder_parameter_count(width, config.mlp_width)
        n = config.n_train
        activations = 8 * n * (T + 1) * width + 4 * n * config.mlp_width
        data = 3 * T * width * n + 5 * T * width * config.n_test
        history = 40 * config.n_logs if log_history else 0
        return 4 * (4 * parameters + activations + data + history)
    if engine == "reduced":
        N = config.n_train * T
        test_width = (2 + N) if log_history else 3
        data = 4 * T * (config.n_train * (2 + N) + config.n_test * test_width) * 3 + 4 * N * N * 2
    else:
        # Final-only runs draw their test set in 4 coordinates (data.sample_test_projected).
        data = 4 * T * width * (config.n_train + (config.n_test if log_history else 0)) * 3 + 4 * T * config.n_test * 12
        if config.attention != "identity":
            data += 4 * width * width * 4
        if engine == "kernel":  # M = W₀Xᵀ and the (nT)² matrices K, G, A
            N = config.n_train * T
            data += 4 * width * N * 2 + 4 * N * N * 4
    history = 4 * 40 * config.n_logs if log_history else 0
    return data + history


def step_bytes(config: Config, engine: str, width: int) -> int:
    """Bytes one run reads at every gradient step: its (nT)² Gram matrix (the reduced engine's kernel form),
    its K, G and A (the kernel engine) or its tokens (n, T, width) (the primal engine)."""
    tokens = config.n_train * config.T
    if config.model == "encoder":  # every weight, read once per step
        return 4 * encoder_parameter_count(width, config.mlp_width)
    if engine == "reduced":
        return 4 * tokens * tokens
    if engine == "kernel":
        return 3 * 4 * tokens * tokens
    return 4 * tokens * width


def check_fits(config: Config, engine: str, width: int, log_history: bool, backend: Backend | None = None) -> None:
    """Refuse, before compiling, a run whose arrays cannot fit in one device's memory (or in int32 indexing).

    ``backend=None`` checks against this machine's physical memory without starting JAX.
    """
    if engine == "reduced":
        return
    if backend is None:
        backend = Backend(platform="cpu", device_count=1, memory_bytes=physical_memory())
    if width > MAX_PRIMAL_WIDTH:
        raise ValueError(
            f"Config.d = {width} is too large for the {engine} engine: it indexes coordinates with int32 "
            f"(d <= {MAX_PRIMAL_WIDTH}). The reduced engine (engine='auto' or 'reduced', W = I) takes any d."
        )
    needed = bytes_per_run(config, engine, width, log_history)
    if backend.memory_bytes is None or needed <= backend.memory_bytes:
        return
    if config.model == "encoder":
        size = f"Config.d = {width} with Config.mlp_width = {config.mlp_width}"
        what = (
            f"one encoder run (its {encoder_parameter_count(width, config.mlp_width):,} parameters, their "
            f"gradient and a {config.n_test}-sample test set)"
        )
        remedy = "The encoder has no reduced form: use a smaller d, mlp_width or n_test."
    else:
        size, what = f"Config.d = {width}", f"one {engine} run"
        remedy = "Use the reduced engine (W = I: any d at the cost of d ≈ n·T), or a smaller d."
    raise ValueError(
        f"{size} needs about {needed / 2**30:.1f} GiB for {what}, more than the "
        f"{backend.memory_bytes / 2**30:.1f} GiB of one {backend.platform} device. {remedy}"
    )
