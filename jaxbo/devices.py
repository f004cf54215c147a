"""Which devices a sweep runs on, and every CPU core without knowing XLA flags.

XLA:CPU runs one computation on one thread, so a sweep uses several cores only by sharding its runs over
several CPU devices, and JAX makes one CPU device unless asked, before it starts, for more
(``jax_num_cpu_devices``, or ``XLA_FLAGS=--xla_force_host_platform_device_count=K``). ``use_cpu_cores`` asks;
``sweep_devices`` (what ``jaxbo.sweep`` uses by default) asks on the user's behalf only while JAX has not
started, says so once on stderr, and otherwise warns once with the exact remedy. Nothing happens at import.
"""

from __future__ import annotations

import os
import sys
import warnings

import jax

_FLAG = "xla_force_host_platform_device_count"
_said: set[str] = set()  # one-time notices already given in this process


def cpu_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _count_already_chosen() -> bool:
    """Whether the user (or an entry point) already chose the CPU device count."""
    return _FLAG in os.environ.get("XLA_FLAGS", "") or jax.config.jax_num_cpu_devices != -1


def use_cpu_cores(count: int | None = None) -> bool:
    """Ask JAX for ``count`` CPU devices (default: one per core) so sweeps shard over every core.

    Call it right after ``import jaxbo``, before any JAX computation. It sets ``jax_num_cpu_devices``, a
    process-wide JAX setting that changes nothing on GPU/TPU backends. Returns True if it took effect, False
    if the count was already chosen (``XLA_FLAGS`` or ``jax_num_cpu_devices``), which it respects.

    Raises:
      ValueError: ``count`` is not an int >= 1.
      RuntimeError: JAX has already started, so the device count can no longer change; the message says how.
    """
    count = cpu_cores() if count is None else count
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count = {count!r} must be an int >= 1 (CPU devices to create)")
    if _count_already_chosen():
        return False
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:
        raise RuntimeError(
            "jaxbo.use_cpu_cores() must run before JAX starts (before any JAX computation): call it right after "
            f"`import jaxbo`, or set XLA_FLAGS=--{_FLAG}={count} before starting Python"
        ) from None
    return True


def sweep_devices(announce: bool = True) -> list[jax.Device]:
    """The default devices of ``jaxbo.sweep``: every local device, with one CPU device per core on a CPU.

    While JAX has not started and nobody chose a CPU device count, it calls ``use_cpu_cores()`` and (with
    ``announce``) says so once on stderr. If JAX runs on one CPU device of a multi-core machine, it warns once
    with the remedy. Pass ``devices=`` to ``sweep`` to choose yourself.
    """
    if not _count_already_chosen() and not _backends_started():
        cores = cpu_cores()
        if cores > 1 and use_cpu_cores(cores) and announce and "asked" not in _said:
            _said.add("asked")
            print(
                f"jaxbo: asked JAX for {cores} CPU devices (one per core) so sweeps use every core; "
                "GPU/TPU backends are unaffected. To choose yourself, call jaxbo.use_cpu_cores(k) or set "
                f"XLA_FLAGS=--{_FLAG}=k before any JAX computation.",
                file=sys.stderr,
            )
    devices = jax.local_devices()
    cores = cpu_cores()
    if devices[0].platform == "cpu" and len(devices) == 1 and cores > 1 and "one-device" not in _said:
        _said.add("one-device")
        warnings.warn(
            f"jaxbo.sweep runs on 1 CPU device, i.e. 1 of {cores} cores, because JAX started before the "
            "device count was chosen. For every core call jaxbo.use_cpu_cores() right after `import jaxbo` "
            f"(before any JAX computation), or set XLA_FLAGS=--{_FLAG}={cores} before starting Python.",
            RuntimeWarning,
            stacklevel=3,
        )
    return devices


def _backends_started() -> bool:
    """Whether JAX has created its backends (after which the CPU device count is fixed)."""
    try:
        from jax._src import xla_bridge  # no public API says this; fall back to "started" if it moves

        return bool(xla_bridge.backends_are_initialized())
    except Exception:
        return True


def random_settings() -> dict[str, object]:
    """The JAX random-number settings a sweep's numbers depend on (recorded in its metadata).

    ``jax_threefry_partitionable`` changed its default to True in JAX 0.5.0; it changes how threefry splits
    bits, so the same key gives other numbers under JAX < 0.5 (same distribution, other samples).
    """
    return {
        "default_prng_impl": str(jax.config.jax_default_prng_impl),
        "threefry_partitionable": bool(jax.config.jax_threefry_partitionable),
    }
