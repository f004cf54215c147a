"""One command for a lent GPU or TPU: correctness spot checks, then the benchmarks that matter, in minutes.

    python scripts/accelerator_check.py            # on the accelerator; writes its section of docs/benchmarks.md
    python scripts/accelerator_check.py --tiny     # a dry run at tiny sizes: prints its section, writes nothing

Checks (each must pass before any timing is trusted):
  1. the kernel engine and the primal one give the same iterates with W and p trained (same key, same data);
  2. the analytic gradient equals ``jax.grad`` on the device;
  3. float32 contractions run at HIGHEST precision (a TPU's or GPU's default would round through bf16/TF32).
Benchmarks (compile time apart; *cold* = first call, empty compilation cache; *warm* = the same call again):
  a. the paper's 39 × 39 grid × 10 seeds, reduced engine (W = I);
  b. the same, paired: each key's 39 runs with one Gram matrix (``sweep(..., paired=True)``);
  c. the same grid, 1 seed, W and p trained (kernel engine): the paper's Figure 5;
  d. one encoder slice: d = 2000, the paper's 39 values of ‖μ‖, 1 seed.
Each stage prints as it starts; the page names the device.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import jaxbo

jaxbo.use_cpu_cores()  # before anything starts JAX: on a CPU dry run, one device per core

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import PAGE, machine, write_section  # noqa: E402

from jaxbo import data, loss, model  # noqa: E402

PAPER = {"d": [250 + 125 * i for i in range(39)], "signal_norm": [5 + 2.5 * i for i in range(39)]}
TINY = {"d": [40, 80], "signal_norm": [3.0, 30.0]}


def say(text: str) -> None:
    print(f"accelerator_check: {text}", file=sys.stderr, flush=True)


def check_engines_agree(config: jaxbo.Config) -> str:
    """Kernel and primal engines, W and p trained, same key: the same iterates, so the same final metrics."""
    trained = config.replace(attention="trained")
    kernel = jaxbo.simulate(1, trained, engine="kernel").final
    primal = jaxbo.simulate(1, trained, engine="primal").final
    worst = max(
        float(np.max(np.abs(np.asarray(getattr(kernel, name)) - np.asarray(getattr(primal, name)))))
        for name in ("train_loss", "test_loss", "p_norm")
    )
    assert worst < 1e-3, f"kernel and primal engines differ by {worst:.2e}"
    assert float(kernel.train_accuracy) == float(primal.train_accuracy)
    return f"kernel = primal (W, p trained): largest difference {worst:.1e}"


def check_gradient(config: jaxbo.Config) -> str:
    """The closed-form gradient against ``jax.grad``, on the device, float32, at a random p and W."""
    trained = config.replace(attention="trained")
    dataset = data.sample(jax.random.key(2), trained, trained.n_train, flip=True)
    params = model.init_params(jax.random.key(3), trained, trained.d)
    params = model.Params(p=0.3 * jax.random.normal(jax.random.key(4), (trained.d,)), nu=params.nu, W=params.W)
    analytic = loss.analytic_grad(params, dataset.tokens, dataset.labels, True)
    automatic = loss.autodiff_grad(params, dataset.tokens, dataset.labels, True)
    error = max(
        float(jnp.linalg.norm(analytic[name] - automatic[name]) / jnp.linalg.norm(automatic[name]))
        for name in automatic
    )
    assert error < 1e-4, f"analytic and autodiff gradients differ by {error:.2e} (relative)"
    return f"analytic = autodiff gradient: relative difference {error:.1e}"


def check_precision() -> str:
    """A float32 product at jaxbo's precision against float64: bf16 or TF32 passes would leave ~1e-3."""
    a = jax.random.normal(jax.random.key(5), (256, 256), jnp.float32)
    b = jax.random.normal(jax.random.key(6), (256, 256), jnp.float32)
    product = jax.jit(lambda x, y: jnp.matmul(x, y, precision=model.PRECISION))(a, b)
    exact = np.asarray(a, np.float64) @ np.asarray(b, np.float64)
    error = float(np.max(np.abs(np.asarray(product) - exact)) / np.max(np.abs(exact)))
    assert error < 1e-5, f"float32 contractions lose {error:.1e}: HIGHEST precision is not in effect"
    return f"float32 contractions at HIGHEST precision: relative error {error:.1e}"


def bench(label: str, grid: dict, seeds: int, config: jaxbo.Config, paired: bool = False) -> str:
    """A markdown row: the sweep cold (first call: compile included) and warm (the same call again)."""
    say(f"{label}: {int(np.prod([len(v) for v in grid.values()])) * seeds:,} runs, cold")
    started = time.perf_counter()
    cold = jaxbo.sweep(grid, seeds=seeds, config=config, progress=False, paired=paired)
    cold_wall = time.perf_counter() - started
    say(f"{label}: warm")
    started = time.perf_counter()
    warm = jaxbo.sweep(grid, seeds=seeds, config=config, progress=False, paired=paired)
    warm_wall = time.perf_counter() - started
    counts = warm.regime_counts()
    plan = warm.metadata["plan"]
    return (
        f"| {label} | {plan['total_runs']:,} | {warm.metadata['engine']} | {cold_wall:.2f} s | "
        f"{cold.metadata['compile_s']:.2f} s | {warm_wall:.2f} s | {len(plan['groups'])} | "
        f"{counts['benign']} / {counts['harmful']} / {counts['not overfitting']} |"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a dry run that any machine finishes fast")
    parser.add_argument(
        "--page",
        default=None,
        help=f"the markdown page to write the section into (default: {os.path.relpath(PAGE)}; with --tiny, none: "
        "a dry run prints its section and writes no committed file)",
    )
    args = parser.parse_args(argv)
    page = args.page if args.page is not None or args.tiny else PAGE
    if not jax.config.jax_compilation_cache_dir:
        # An empty cache of its own: the first sweep compiles (cold), the second finds its programs (warm).
        jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="jaxbo-accelerator-check-"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    started = time.perf_counter()
    if args.tiny:
        config = jaxbo.Config(n_train=6, T=4, d=40, n_test=32, steps=20, log_every=10)
        grid, seeds, encoder_grid = TINY, 2, {"d": [12], "signal_norm": [3.0, 30.0]}
        encoder = config.replace(model="encoder", d=12, mlp_width=16)
    else:
        config = jaxbo.Config()
        grid, seeds, encoder_grid = PAPER, 10, {"d": [2000], "signal_norm": PAPER["signal_norm"]}
        encoder = config.replace(model="encoder", mlp_width=2000)
    device = f"{jax.default_backend()} ({jax.device_count()} × {jax.devices()[0].device_kind})"
    say(f"on {device}; checks first")
    checks = [check_engines_agree(config), check_gradient(config), check_precision()]
    rows = [
        bench("reduced, W = I" + ("" if args.tiny else ": paper grid × 10 seeds"), grid, seeds, config),
        bench("reduced, paired (one Gram matrix per key)", grid, seeds, config, paired=True),
        bench("kernel, W and p trained (Figure 5)", grid, 1, config.replace(attention="trained")),
        bench("encoder slice" + ("" if args.tiny else ", d = 2000"), encoder_grid, 1, encoder),
    ]
    body = f"""## Accelerator check (`scripts/accelerator_check.py{" --tiny" if args.tiny else ""}`)

Machine: {machine()}. Device: {device}. Whole script: {time.perf_counter() - started:.0f} s.
{"A dry run at tiny sizes: it shows the script works, not how fast an accelerator is." if args.tiny else ""}

Checks, all passed: {"; ".join(checks)}.

*cold*: the first call (compile included; compile apart in its own column), from an empty compilation cache;
*warm*: the same call again, its programs found in that cache.

| sweep | runs | engine | cold wall | compile | warm wall | compiles | cells benign / harmful / not |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""
    if page is None:
        print(body)
        return 0
    write_section("accelerator_check", body, path=page)
    say(f"wrote {page}")
    return 0


if __name__ == "__main__":
    from jaxbo.cli import exit_on_interrupt

    sys.exit(exit_on_interrupt(main))
