"""Record the numbers of a fixed set of runs and sweeps, so a change that must not move any number can prove it.

    python scripts/record_numbers.py            # writes tests/data/numbers.npz (+ .json: how it was made)

Every engine and model is covered: primal, reduced, kernel and reduced kernel; W = I, fixed and trained W (a
uniform and a Gaussian W₀); the softmax and the sigmoid φ; the causal model (both engines, both noises); the
analytic and
the autodiff gradient; a custom optimizer; the encoder; the variants (heads, a trained head, a random start);
histories on and off; single runs (``simulate``) and sweeps (padded d buckets, several groups, paired). Each
at tiny sizes and again at the paper's n = 20, T = 8, where reductions are long enough for a reordered sum
to show (1-ulp moves hide at n = 10, T = 5). Every metric of every case is recorded: ``tests/test_numbers.py``
recomputes them, fails on a recorded array no longer computed and on a computed one not recorded, and asserts
equality: bit for bit where the conditions match the recording (CPU model, JAX version, XLA flags), within
float32 rounding elsewhere. Rerun this script only when a change is meant to move numbers (or adds a metric),
and say so in the commit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import jaxbo

jaxbo.use_cpu_cores()  # before anything starts JAX: sweeps shard as a user's do

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "data", "numbers")
SMALL = jaxbo.Config(n_train=10, T=5, d=40, n_test=64, steps=40, log_every=10, signal_norm=6.0)
ENCODER = SMALL.replace(model="encoder", mlp_width=16, d=12, n_train=6, T=4, n_test=16, steps=20)
#: The paper's n = 20, T = 8 and n_test = 1000, fewer steps: the reduction lengths of real runs.
PAPER = jaxbo.Config(d=300, steps=200, log_every=50)
GAUSSIAN = SMALL.replace(attention="trained", weight_init="gaussian")
CAUSAL = SMALL.replace(model="causal")

#: name → (config, engine) of one ``simulate(..., limit=True)`` call: the t → ∞ limit of each engine that has one.
LIMITS = {
    "limit_reduced": (SMALL, "reduced"),
    "limit_primal": (SMALL, "primal"),
    "limit_kernel_fixed": (SMALL.replace(attention="fixed"), "kernel"),
    "limit_reduced_kernel_fixed": (GAUSSIAN.replace(attention="fixed"), "reduced_kernel"),
    "limit_paper_reduced": (PAPER.replace(d=4500, signal_norm=5.0), "reduced"),
    "limit_causal_reduced": (CAUSAL.replace(target_noise="token"), "causal_reduced"),
    "limit_causal": (CAUSAL, "causal"),
}
#: name → (config, engine, optimizer) of one ``simulate`` call with histories.
RUNS = {
    "primal_identity": (SMALL, "primal", None),
    "reduced_identity": (SMALL, "reduced", None),
    "reduced_momentum": (SMALL, "reduced", optax.sgd(SMALL.lr, momentum=0.9)),
    "primal_autodiff": (SMALL.replace(gradient="autodiff"), "primal", None),
    "kernel_fixed": (SMALL.replace(attention="fixed"), "kernel", None),
    "kernel_trained": (SMALL.replace(attention="trained"), "kernel", None),
    "primal_trained": (SMALL.replace(attention="trained"), "primal", None),
    "primal_trained_adam": (SMALL.replace(attention="trained"), "primal", optax.adam(1e-2)),
    "primal_trained_gaussian": (GAUSSIAN, "primal", None),
    "reduced_kernel_trained": (GAUSSIAN, "reduced_kernel", None),
    "encoder": (ENCODER, "auto", None),
    "reduced_heads_start": (SMALL.replace(heads=3, query_init_std=0.05), "reduced", None),
    "primal_train_head": (SMALL.replace(train_head=True), "primal", None),
    "reduced_sigmoid": (SMALL.replace(normaliser="sigmoid"), "reduced", None),
    "primal_sigmoid_trained": (SMALL.replace(normaliser="sigmoid", attention="trained"), "primal", None),
    "reduced_heads_sigmoid": (
        SMALL.replace(normaliser="sigmoid", heads=2, query_init_std=0.05, train_head=True),
        "reduced",
        None,
    ),
    "paper_reduced": (PAPER.replace(d=2000), "reduced", None),
    "paper_primal": (PAPER, "primal", None),
    "paper_kernel_trained": (PAPER.replace(d=200, steps=100, attention="trained"), "kernel", None),
    "paper_reduced_kernel_trained": (
        PAPER.replace(d=10**6, steps=100, attention="trained", weight_init="gaussian"),
        "reduced_kernel",
        None,
    ),
    "paper_reduced_heads": (PAPER.replace(d=2000, heads=2, query_init_std=0.02, train_head=True), "reduced", None),
    "causal_sequence": (CAUSAL, "causal", None),
    "causal_reduced_token": (CAUSAL.replace(target_noise="token"), "causal_reduced", None),
    "causal_autodiff_sigmoid": (CAUSAL.replace(gradient="autodiff", normaliser="sigmoid"), "causal", None),
    "paper_causal_reduced_token": (PAPER.replace(model="causal", d=2000, target_noise="token"), "causal_reduced", None),
}
#: name → (grid, config, engine, histories) of one ``sweep`` call (2 seeds, key 3).
SWEEPS = {
    "sweep_reduced": ({"d": [40, 400], "signal_norm": [2.0, 20.0]}, SMALL, "reduced", False),
    "sweep_reduced_histories": ({"d": [40, 400], "signal_norm": [2.0, 20.0]}, SMALL, "reduced", True),
    "sweep_primal_buckets": ({"d": [30, 34, 60], "signal_norm": [4.0]}, SMALL, "primal", False),
    "sweep_kernel_trained": (
        {"d": [30, 60], "noise_rate": [0.1, 0.3]},
        SMALL.replace(attention="trained"),
        "auto",
        False,
    ),
    "sweep_reduced_kernel": ({"d": [40, 10**6], "signal_norm": [2.0, 20.0]}, GAUSSIAN, "auto", False),
    "sweep_sigmoid": ({"d": [40, 400], "signal_norm": [2.0, 20.0]}, SMALL.replace(normaliser="sigmoid"), "auto", False),
    "sweep_encoder": ({"d": [12, 16], "signal_norm": [3.0]}, ENCODER, "auto", False),
    "sweep_paper": ({"d": [250, 4500], "signal_norm": [5.0, 20.0, 80.0]}, PAPER, "auto", False),
    "sweep_causal": ({"d": [40, 400], "signal_norm": [2.0, 20.0]}, CAUSAL.replace(target_noise="token"), "auto", False),
}
#: name → (grid, config) of one paired sweep (2 seeds, key 3; the reduced engine's shared step).
PAIRED = {"paired_paper": ({"d": [250, 2000], "signal_norm": [5.0, 20.0, 80.0]}, PAPER)}


def numbers() -> dict[str, np.ndarray]:
    """Every recorded array by name: ``run/<case>/<final|history>/<metric>`` and ``sweep/<case>/<metric>``."""
    arrays = {}
    for name, (config, engine, optimizer) in RUNS.items():
        run = jaxbo.simulate(7, config, optimizer, engine=engine)
        for part in ("final", "history"):
            for metric, value in vars(getattr(run, part)).items():
                arrays[f"run/{name}/{part}/{metric}"] = np.asarray(value)
    for name, (grid, config, engine, histories) in SWEEPS.items():
        result = jaxbo.sweep(grid, seeds=2, config=config, key=3, engine=engine, histories=histories, progress=False)
        for metric, value in result.final.items():
            arrays[f"sweep/{name}/final/{metric}"] = value
        for metric, value in result.history.items():
            arrays[f"sweep/{name}/history/{metric}"] = value
    for name, (config, engine) in LIMITS.items():
        run = jaxbo.simulate(7, config, engine=engine, limit=True)
        for field, value in vars(run.limit).items():
            arrays[f"run/{name}/limit/{field}"] = np.asarray(value)
    limited = jaxbo.sweep({"d": [250, 4500], "signal_norm": [5.0, 20.0]}, seeds=2, config=PAPER, key=3, limit=True,
                          progress=False)  # fmt: skip
    for metric, value in limited.final.items():
        arrays[f"sweep/sweep_limit/final/{metric}"] = value
    for name, (grid, config) in PAIRED.items():
        result = jaxbo.sweep(grid, seeds=2, config=config, key=3, paired=True, progress=False)
        for metric, value in result.final.items():
            arrays[f"sweep/{name}/final/{metric}"] = value
    return arrays


def conditions() -> dict[str, object]:
    """What bit-identity depends on: the CPU, the JAX version, XLA's flags and the device count."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else jax.__version__,
        "xla_flags": " ".join(sorted(os.environ.get("XLA_FLAGS", "").split())),
        "devices": jax.device_count(),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out",
        default=FIXTURE,
        help=f"path stem of the .npz and .json written (default: the committed fixture {os.path.relpath(FIXTURE)})",
    )
    args = parser.parse_args(argv)  # first: --help prints this and writes nothing
    arrays = numbers()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez_compressed(args.out + ".npz", **arrays)
    with open(args.out + ".json", "w") as handle:
        json.dump({"conditions": conditions(), "arrays": len(arrays)}, handle, indent=2)
    print(f"wrote {args.out}.npz ({len(arrays)} arrays) and .json", file=sys.stderr)


if __name__ == "__main__":
    main()
