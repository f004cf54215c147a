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
#: Host memory a process needs beside its runs' arrays (Python, JAX's runtime and compiler, matplotlib):
#: a one-device d = 30000 trained-W sweep peaked at 0.37 GiB above its runs' estimate (13.9 GiB resident).
HOST_OVERHEAD = 1 << 30


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

    @property
    def shares_memory(self) -> bool:
        """Whether the devices share one memory: JAX's CPU devices are threads of one process on one host."""
        return not self.accelerator

    @classmethod
    def of(cls, devices: Sequence[Any]) -> Backend:
        """The backend of ``devices`` (``jax.Device`` objects): platform, count and per-device memory.

        Memory is ``Device.memory_stats()["bytes_limit"]`` where the runtime reports it (GPU, TPU), else, on a
        CPU, the memory the operating system says is available now (``available_memory``), which every CPU
        device shares.
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
            memory = available_memory()
        return cls(platform=platform, device_count=len(devices), memory_bytes=memory)


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def available_memory() -> int | None:
    """Bytes the OS can give this process without swapping (Linux ``MemAvailable``), else physical memory.

    Physical memory overstates what a run can use on a machine already running other programs: a run that
    passed a physical-memory check could still be killed by the OOM killer.
    """
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return physical_memory()


def encoder_parameter_count(d: int, mlp_width: int) -> int:
    """Number of parameters of the one-layer encoder (``jaxbo.encoder.EncoderParams``) of width d."""
    return 3 * d * d + 2 * d * mlp_width + mlp_width + 9 * d + 1


#: Copies of a run's d-wide token arrays alive at its peak (samples, their noise and its draw's temporaries,
#: the logits' operands): XLA's own figure (``compiled.memory_analysis()``) came to 4.0–4.2 copies for the
#: primal, kernel and reduced engines at d = 500…4000; one more for headroom. tests/test_memory.py holds the
#: estimate within 1–2× of XLA's figure.
TOKEN_COPIES = 5


def bytes_per_run(config: Config, engine: str, width: int, log_history: bool) -> int:
    """Peak bytes of one run's arrays (tokens and their sampling temporaries, W, histories), an upper bound of
    XLA's own figure for the compiled run (argument + output + temporaries; tests/test_memory.py holds it to
    between 1× and 2× of it at several sizes for every engine).

    The encoder holds its parameters, their gradient and the new parameters (3 copies: XLA's figure is 2.6–3
    at d >= 500), its activations, and a full d-dimensional test set (sampled, then layer-normalised).
    """
    T = config.T
    if config.model == "encoder":
        parameters = encoder_parameter_count(width, config.mlp_width)
        n = config.n_train
        activations = 8 * n * (T + 1) * width + 4 * n * config.mlp_width
        data = 3 * T * width * n + 5 * T * width * config.n_test
        history = 40 * config.n_logs if log_history else 0
        return 4 * (3 * parameters + activations + data + history)
    if engine == "reduced":
        N = config.n_train * T
        test_width = (2 + N) if log_history else 3
        data = 4 * T * (config.n_train * (2 + N) + config.n_test * test_width) * TOKEN_COPIES + 4 * N * N * 2
    else:
        # Final-only runs draw their test set in 4 coordinates (data.sample_test_projected).
        samples = config.n_train + (config.n_test if log_history else 0)
        data = 4 * T * width * samples * TOKEN_COPIES + 4 * T * config.n_test * 12
        if config.attention != "identity":  # W₀, W, its gradient and update: 4 copies of d × d
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
    """Refuse, before compiling, runs whose arrays cannot fit in memory (or in int32 indexing), naming the size.

    Each device holds at least one run at a time. GPU and TPU devices have their own memory; JAX's CPU devices
    share the host's, so on a CPU the runs of every device at once (``device_count`` × one run) and the
    process itself (``HOST_OVERHEAD``) must fit in it. ``backend=None`` checks one run against this machine's
    available memory without starting JAX.
    """
    if engine == "reduced":
        return
    if backend is None:
        backend = Backend(platform="cpu", device_count=1, memory_bytes=available_memory())
    if width > MAX_PRIMAL_WIDTH:
        raise ValueError(
            f"Config.d = {width} is too large for the {engine} engine: it indexes coordinates with int32 "
            f"(d <= {MAX_PRIMAL_WIDTH}). The reduced engine (engine='auto' or 'reduced', W = I) takes any d."
        )
    per_run = bytes_per_run(config, engine, width, log_history)
    at_once = backend.device_count if backend.shares_memory else 1
    overhead = HOST_OVERHEAD if backend.shares_memory else 0
    needed = per_run * at_once + overhead
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
        if config.attention != "identity":
            what += f" (its {width} × {width} W in 4 copies)"
        remedy = "Use the reduced engine (W = I: any d at the cost of d ≈ n·T), or a smaller d."
    if at_once > 1:
        where = (
            f"{at_once} such runs at once (one per CPU device; the {at_once} devices and this process share the "
            f"host's {backend.memory_bytes / 2**30:.1f} GiB available)"
        )
        if per_run + overhead <= backend.memory_bytes:
            remedy = (
                f"One run at a time fits: pass devices=jax.devices()[:1] to jaxbo.sweep (command line: "
                f"--devices 1). {remedy}"
            )
        raise ValueError(
            f"{size} needs about {per_run / 2**30:.1f} GiB for {what}, and {needed / 2**30:.1f} GiB for {where}. "
            f"{remedy}"
        )
    process = f" (and {overhead / 2**30:.0f} GiB for this process)" if overhead else ""
    raise ValueError(
        f"{size} needs about {per_run / 2**30:.1f} GiB for {what}{process}, more than the "
        f"{backend.memory_bytes / 2**30:.1f} GiB of one {backend.platform} device. {remedy}"
    )
