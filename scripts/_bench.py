"""Shared helpers of the benchmark scripts: machine description and docs/benchmarks.md sections."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time

import jax

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "benchmarks.md")
HEADER = """# Benchmarks

Every number here is written by a script in `scripts/` (each owns one section below; rerun it to refresh
that section). Every table says whether its times include compilation and, for fresh processes, whether
JAX's compilation cache was cold or warm; compile time is reported apart. No GPU or TPU was lent to the
sessions that wrote these numbers, so only CPU figures are recorded; the scripts run unchanged on an
accelerator (the machine line of each section names the backend).
"""


def commit() -> str:
    """The jaxbo commit the numbers were made at (short hash; "+ changes" if the tree had uncommitted ones)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        status = subprocess.run(["git", "status", "--porcelain", "--", "jaxbo", "scripts"], cwd=root,
                                capture_output=True, text=True)  # fmt: skip
    except OSError:
        return "an unknown commit (no git)"
    if head.returncode:
        return "an unknown commit (not a git checkout)"
    return f"commit {head.stdout.strip()}" + (" + uncommitted changes" if status.stdout.strip() else "")


def machine() -> str:
    """One line naming the machine, the JAX backend and its devices, and the jaxbo commit."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    devices = ", ".join(sorted({device.device_kind for device in jax.devices()}))
    return (
        f"{cpu}, {cores} cores; JAX {jax.__version__} on {jax.default_backend()} ({jax.device_count()} × {devices}); "
        f"jaxbo at {commit()}"
    )


def span(values: list[float], digits: int = 1) -> str:
    """min–max of ``values`` in seconds with ``digits`` decimals, or one figure when they print alike."""
    low, high = (f"{value:.{digits}f}" for value in (min(values), max(values)))
    return f"{low} s" if low == high else f"{low}–{high} s"


def timed(function, *args, **kwargs):
    """(result, seconds) of ``function(*args, **kwargs)``, blocking on JAX outputs."""
    start = time.perf_counter()
    result = jax.block_until_ready(function(*args, **kwargs))
    return result, time.perf_counter() - start


def write_section(name: str, body: str, path: str = PAGE) -> None:
    """Replace (or append) the section between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    text = open(path).read() if os.path.exists(path) else HEADER
    block = f"<!-- {name}:start -->\n{body.strip()}\n<!-- {name}:end -->"
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    with open(path, "w") as handle:
        handle.write(text)


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(
        prog="_bench.py",
        description="Helpers of the benchmark scripts (imported by scripts/bench_*.py); nothing to run on its own.",
    ).parse_args()
    raise SystemExit("_bench.py is a helper module of the benchmark scripts: run one of scripts/bench_*.py instead")
