"""Command line: ``python -m jaxbo sweep …`` (phase diagram) and ``python -m jaxbo run …`` (one run's dynamics)."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from jaxbo.config import SWEEPABLE, Config, field_names
from jaxbo.plot import dynamics, phase_diagram
from jaxbo.sweep import sweep
from jaxbo.train import ENGINES, simulate


def use_cpu_cores() -> None:
    """Ask XLA for one CPU device per core (sweeps shard runs over devices), unless XLA_FLAGS already says.

    For entry points only (``python -m jaxbo``, ``scripts/``): it must run before JAX starts a backend, and it
    changes this process's environment, which a library must not do. No effect on GPU/TPU backends.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={cores}".strip()


def parse_values(spec: str, name: str) -> list[float]:
    """``"start:stop:num"`` (num evenly spaced values, both ends included), ``"a,b,c"`` or a single number."""
    try:
        if ":" in spec:
            start, stop, num = spec.split(":")
            if int(num) < 1:
                raise ValueError
            values = np.linspace(float(start), float(stop), int(num)).tolist()
        else:
            values = [float(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--{name.replace('_', '-')} {spec!r}: expected start:stop:num (num >= 1), a,b,c or one number"
        ) from None
    if name == "d":
        values = [round(v) for v in values]
        values = sorted(set(values), key=values.index)  # start:stop:num can round two values to one d
    return values


def parse_setting(text: str) -> tuple[str, object]:
    """``FIELD=VALUE`` for ``--set``: ints, floats, strings, or a comma tuple for ``layout``."""
    name, sep, raw = text.partition("=")
    if not sep or name not in field_names():
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected FIELD=VALUE with FIELD one of {field_names()}")
    default = getattr(Config(), name)
    try:
        if isinstance(default, tuple):
            return name, tuple(int(part) for part in raw.split(","))
        if isinstance(default, int):
            return name, int(raw)
        if isinstance(default, float):
            return name, float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--set {text!r}: {raw!r} is not a valid {type(default).__name__}") from None
    return name, raw


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jaxbo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    grid = commands.add_parser("sweep", help="phase diagram over a grid × seeds: writes .npz, .json and .png")
    grid.add_argument("--d", default="250:5000:20", help="d values: start:stop:num, a,b,c or one value")
    grid.add_argument("--signal-norm", default="5:100:20", help="‖μ‖ values: start:stop:num, a,b,c or one value")
    grid.add_argument(
        "--axis",
        action="append",
        default=[],
        metavar="FIELD=SPEC",
        help=f"another grid axis, FIELD one of {SWEEPABLE} (repeatable)",
    )
    grid.add_argument("--seeds", type=int, default=5)
    grid.add_argument("--key", type=int, default=0, help="base seed of the sweep")
    grid.add_argument("--engine", choices=ENGINES, default="auto")
    grid.add_argument("--histories", action="store_true", help="also keep every run's logged metrics")
    grid.add_argument("--chunk-size", type=int, default=None)
    grid.add_argument("--out", default="results", help="output directory")
    grid.add_argument("--name", default="phase_diagram", help="file name stem in --out")

    one = commands.add_parser("run", help="one run with histories: writes the dynamics figure")
    one.add_argument("--key", type=int, default=0)
    one.add_argument("--engine", choices=ENGINES, default="auto")
    one.add_argument("--out", default="results")
    one.add_argument("--name", default="dynamics")

    for command in (grid, one):
        command.add_argument(
            "--set",
            action="append",
            default=[],
            type=parse_setting,
            metavar="FIELD=VALUE",
            help="base Config field, e.g. --set noise_rate=0.1 --set layout=2,2,2 (repeatable)",
        )
        command.add_argument("--quiet", action="store_true", help="print only errors and the output paths")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = Config().replace(**dict(args.set))
        config.validate()
        os.makedirs(args.out, exist_ok=True)
        stem = os.path.join(args.out, args.name)
        if args.command == "run":
            run = simulate(args.key, config, engine=args.engine)
            figure = dynamics(run, title=f"d={config.d}, ‖μ‖={config.signal_norm:g}, engine={run.engine}")
            figure.savefig(stem + ".png", dpi=120)
            if not args.quiet:
                final = run.final
                print(
                    f"train acc {float(final.train_accuracy):.3f}, test acc {float(final.test_accuracy):.3f}, "
                    f"noisy fitted {float(final.noisy_fit):.3f}"
                )
            print(stem + ".png")
            return 0
        grid = {"d": parse_values(args.d, "d"), "signal_norm": parse_values(args.signal_norm, "signal_norm")}
        for item in args.axis:
            name, sep, spec = item.partition("=")
            if not sep:
                parser.error(f"--axis {item!r}: expected FIELD=SPEC")
            grid[name] = parse_values(spec, name)
        result = sweep(
            grid,
            seeds=args.seeds,
            config=config,
            key=args.key,
            progress=not args.quiet,
            engine=args.engine,
            histories=args.histories,
            chunk_size=args.chunk_size,
        )
        paths = list(result.save(stem))
        select = {name: values[0] for name, values in grid.items() if name not in ("d", "signal_norm")}
        phase_diagram(result, select=select).savefig(stem + ".png", dpi=120)
        paths.append(stem + ".png")
        if not args.quiet:
            counts = np.bincount(result.majority_regime().ravel(), minlength=3)
            print(
                f"{result.metadata['plan']['total_runs']} runs in {result.metadata['elapsed_s']:.1f} s "
                f"({result.metadata['runs_per_s']:.0f} runs/s, engine {result.metadata['engine']}); "
                f"cells benign {counts[0]}, harmful {counts[1]}, not overfitting {counts[2]}"
            )
        print("\n".join(paths))
        return 0
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    except (TypeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
