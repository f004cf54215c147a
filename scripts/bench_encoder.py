"""Benchmark of the one-layer encoder (``Config(model="encoder", mlp_width=2000)``): seconds per run against d
on this machine, the FLOP rate they imply, the chunk plan on a GPU, and the cost of the paper's 39 × 39 grid.

    python scripts/bench_encoder.py [--dims 250,500,1000,2000,3000]

A run's cost is measured as ``jaxbo.sweep`` runs it (one chunk of one run per device, final metrics only) at
two step counts: the difference is the per-step cost, the rest the per-run overhead (sampling, the final
evaluation on 1000 test samples), so a 1000-step run costs overhead + 1000 · step. Writes its section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse

from jaxbo.cli import use_cpu_cores

use_cpu_cores()

import jax  # noqa: E402
import numpy as np  # noqa: E402
from _bench import machine, timed, write_section  # noqa: E402

import jaxbo  # noqa: E402
from jaxbo import encoder_model, memory, plan  # noqa: E402

PAPER_GRID = {"d": [250 + 125 * i for i in range(39)], "signal_norm": [5 + 2.5 * i for i in range(39)]}
ENCODER = jaxbo.Config(model="encoder", mlp_width=2000)
SHORT, LONG = 50, 250
#: Single-precision peak of one H100 SXM without tensor cores (NVIDIA's data sheet). jaxbo's contractions run
#: at ``precision="highest"``, i.e. in true float32, not TF32.
H100_FP32_FLOPS = 67e12
#: Its memory bandwidth (HBM3, SXM): with n = 20 rows per weight matrix a step is memory-bound.
H100_BYTES_PER_S = 3.35e12
GPU_EFFICIENCIES = (0.25, 0.5)
#: Weight traffic of one step, in parameter copies: read for the forward pass, read again and written as
#: the gradient for the backward pass, read twice (parameters, gradient) and written once by the update.
TRAFFIC_COPIES = 6


def traffic_per_step(config: jaxbo.Config, d: int) -> int:
    """Bytes of weights one training step moves at width d (``TRAFFIC_COPIES`` float32 copies)."""
    return TRAFFIC_COPIES * 4 * encoder_model.parameter_count(d, config.mlp_width)


def seconds(d: int, steps: int) -> float:
    """Steady seconds of a sweep of one run per device at width d and ``steps`` steps (compiled first)."""
    config = ENCODER.replace(d=d, steps=steps, log_every=steps)
    runs = jax.device_count()

    def sweep(key):
        return jaxbo.sweep({"signal_norm": [20.0]}, seeds=runs, key=key, config=config, progress=False)

    sweep(0)
    return min(timed(sweep, key)[1] for key in (1, 2))


def grid_flops(config: jaxbo.Config, grid: dict) -> float:
    """Training FLOPs of a (d, ‖μ‖) grid, one seed per cell (``encoder_model.flops_per_step``)."""
    return sum(encoder_model.flops_per_step(config, d) * config.steps for d in grid["d"]) * len(grid["signal_norm"])


def every_token_flops(config: jaxbo.Config, d: int) -> int:
    """FLOPs of one step when every token's query, attention and MLP are evaluated (as PyTorch does)."""
    n, m, tokens = config.n_train, config.mlp_width, config.T + 1
    return 2 * n * tokens * (3 * d * d + 2 * d * m + 2 * tokens * d) * 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", default="250,500,1000,2000,3000")
    args = parser.parse_args()
    dims = [int(d) for d in args.dims.split(",")]
    devices = jax.device_count()
    rows, per_run, rates = [], {}, []
    for d in dims:
        short, long = seconds(d, SHORT), seconds(d, LONG)
        step = (long - short) / (LONG - SHORT)  # every device runs one run: per-run step time
        overhead = short - SHORT * step
        per_run[d] = (overhead + ENCODER.steps * step) / devices  # machine seconds per run, devices in parallel
        flops = encoder_model.flops_per_step(ENCODER, d)
        rates.append(flops * devices / step)
        bandwidth = traffic_per_step(ENCODER, d) * devices / step
        rows.append(
            f"| {d:,} | {step * 1e3:.1f} ms | {overhead:.2f} s | {per_run[d] * devices:.1f} s | {per_run[d]:.1f} s | "
            f"{flops / 1e9:.2f} | {rates[-1] / 1e9:.0f} | {bandwidth / 1e9:.0f} |"
        )
        print(rows[-1], flush=True)
    ds = np.array(dims, float)
    # A run's cost is a + b·d + c·d² (the d·mlp_width and d² products): fit, then sum over the paper's d.
    coefficients = np.polyfit(ds, [per_run[d] for d in dims], 2)
    cpu_grid = float(sum(np.polyval(coefficients, d) for d in PAPER_GRID["d"]) * len(PAPER_GRID["signal_norm"]))
    total_flops = grid_flops(ENCODER, PAPER_GRID)
    total_bytes = sum(traffic_per_step(ENCODER, d) * ENCODER.steps for d in PAPER_GRID["d"]) * 39
    gpu = memory.Backend(platform="gpu", device_count=1, memory_bytes=80 << 30)
    axes = plan.validate_grid(PAPER_GRID, ENCODER)
    planned = plan.make_plan(axes, ENCODER, seeds=1, engine="encoder", histories=False, backend=gpu)
    chunks = {group.width: group.chunk_size for group in planned.groups}
    gpu_compute = {e: total_flops / (H100_FP32_FLOPS * e) for e in GPU_EFFICIENCIES}
    gpu_memory = {e: total_bytes / (H100_BYTES_PER_S * e) for e in (0.5, 0.8)}
    bound = "memory bandwidth" if gpu_memory[0.5] > gpu_compute[0.25] else "arithmetic"
    header = (
        "| d | step (one run) | overhead per run | 1000-step run | machine time per run | GFLOP per step | GFLOP/s "
        "| weight traffic GB/s |"
    )
    body = f"""## The one-layer encoder (`scripts/bench_encoder.py`)

Machine: {machine()}. No accelerator was lent to this session, so only CPU timings are measured here.

`Config(model="encoder", mlp_width=2000)`, paper defaults (n = 20, T = 8, 1000 test samples, final metrics only),
steady state (compile excluded), through `jaxbo.sweep` with one run per device ({devices} devices in parallel).
Per step and per-run overhead (sampling, the final test evaluation) come from runs of {SHORT} and {LONG} steps;
FLOPs per step count the matrix products of the [CLS]-only forward pass ×3 for the backward
(`encoder_model.flops_per_step`); the rate is for all devices together.

{header}
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

**The paper's 39 × 39 grid, one seed** (1521 runs, d = 250 … 5000): {total_flops / 1e15:.2f} PFLOP of training.
- On this machine, from the a + b·d + c·d² fit of the machine time per run: **{cpu_grid / 3600:.1f} h**.
- A step is memory-bound: each weight matrix meets only n = 20 rows, so a step moves about
  {TRAFFIC_COPIES} float32 copies of the {encoder_model.parameter_count(2000, 2000) / 1e6:.0f} M parameters
  (at d = 2000) for 2 × 3 × 20 FLOPs per weight; the last column is that traffic over the step time.
- On one H100 SXM (80 GB), **estimated, not measured**: the grid moves {total_bytes / 1e15:.2f} PB of weights,
  {gpu_memory[0.8] / 60:.0f}–{gpu_memory[0.5] / 60:.0f} min at 80–50 % of its
  {H100_BYTES_PER_S / 1e12:.2f} TB/s; its FLOPs take {gpu_compute[0.5] / 60:.0f}–{gpu_compute[0.25] / 60:.0f} min
  at 50–25 % of the {H100_FP32_FLOPS / 1e12:.0f} TFLOP/s float32 peak (jaxbo's products run at
  `precision="highest"`, true float32). The slower of the two bounds it: about
  **{max(gpu_memory[0.5], gpu_compute[0.25]) / 60:.0f} min** ({bound}), against {cpu_grid / 3600:.1f} h here.
  The plan for such a device (half its memory per call) runs {chunks[250]} runs per call at d = 250,
  {chunks[2000]} at d = 2000 and {chunks[5000]} at d = 5000 ({planned.total_chunks} calls,
  {len(planned.groups)} compiles: one per d, as the encoder is never padded).
- Evaluating every token's query, attention and MLP (as PyTorch does) costs
  {every_token_flops(ENCODER, 2000) / 1e9:.1f} GFLOP per step at d = 2000; the [CLS]-only pass
  {encoder_model.flops_per_step(ENCODER, 2000) / 1e9:.1f} GFLOP, the same function
  ({every_token_flops(ENCODER, 2000) / encoder_model.flops_per_step(ENCODER, 2000):.0f}× fewer operations).
"""
    write_section("bench_encoder", body)
    print(body)


if __name__ == "__main__":
    main()
