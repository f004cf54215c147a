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


def _fits(config: Config, engine, width: int, log_history: bool, free: int, at_once: int) -> bool:
    return engine.bytes_per_run(config.replace(d=width), width, log_history) * at_once <= free


def _what_fits(config: Config, engine, width: int, log_history: bool, free: int, at_once: int) -> str:
    """The sentences of a refusal that say what does fit: the same run with final metrics only (what
    ``jaxbo.sweep`` keeps by default), and the largest d of this model that fits (when d is what costs)."""
    words = ""
    if log_history and _fits(config, engine, width, False, free, at_once):
        words += (
            "With final metrics only it fits: jaxbo.sweep keeps no histories by default, and "
            "jaxbo.make_run(config, log_history=False) runs one. "
        )
    if width > 2 and not _fits(config, engine, 2, log_history, free, at_once):
        return words
    if width > 2 and engine.bytes_per_run(config.replace(d=2), 2, log_history) < engine.bytes_per_run(
        config, width, log_history
    ):
        low, high = 2, width  # low fits, high does not: bisect on d, the cost growing with it
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if _fits(config, engine, middle, log_history, free, at_once) else (low, middle)
        words += f"The largest d of this model and engine that fits here is {low:,}. "
    return words


def check_fits(config: Config, engine, width: int, log_history: bool, backend: Backend | None = None) -> None:
    """Refuse, before compiling, runs whose arrays cannot fit in memory (or in int32 indexing), naming the size.

    ``engine`` is a ``jaxbo.engines.Engine``: it owns its runs' cost (``bytes_per_run``), its widest index
    (``max_width``) and the words of a refusal (``size_words``). Each device holds at least one run at a time.
    GPU and TPU devices have their own memory; JAX's CPU devices share the host's, so on a CPU the runs of every
    device at once (``device_count`` × one run) and the process itself (``HOST_OVERHEAD``) must fit in it.
    ``backend=None`` checks one run against this machine's available memory without starting JAX.
    """
    if backend is None:
        backend = Backend(platform="cpu", device_count=1, memory_bytes=available_memory())
    if engine.max_width is not None and width > engine.max_width:
        raise ValueError(
            f"Config.d = {width} is too large for the {engine.name} engine: it indexes coordinates with int32 "
            f"(d <= {engine.max_width}). The reduced engine (engine='auto' or 'reduced', W = I) takes any d."
        )
    per_run = engine.bytes_per_run(config, width, log_history)
    at_once = backend.device_count if backend.shares_memory else 1
    overhead = HOST_OVERHEAD if backend.shares_memory else 0
    needed = per_run * at_once + overhead
    if backend.memory_bytes is None or needed <= backend.memory_bytes:
        return
    size, what, remedy = engine.size_words(config, width, engine.name)
    remedy = _what_fits(config, engine, width, log_history, backend.memory_bytes - overhead, at_once) + remedy
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
    remedy = remedy.rstrip()
    raise ValueError(
        f"{size} needs about {per_run / 2**30:.1f} GiB for {what}{process}, more than the "
        f"{backend.memory_bytes / 2**30:.1f} GiB of one {backend.platform} device. {remedy}"
    )
