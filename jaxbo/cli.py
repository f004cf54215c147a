"""Command line: ``sweep`` (a phase diagram over a grid × seeds) and ``run`` (one run's dynamics figure)."""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np

from jaxbo._version import __version__
from jaxbo.config import SWEEPABLE, Config, field_names
from jaxbo.engines import names as engine_names

DESCRIPTION = (
    "jaxbo: benign overfitting in token selection of attention (Sakamoto & Sato, ICML 2025), in JAX.\n"
    "'sweep' trains a (d, ‖μ‖) phase diagram × seeds and writes .npz + .json + .png;\n"
    "'run' trains one run and writes its dynamics figure."
)
#: Value-taking options whose value may start with '-' (a negative range start such as -100:500:3).
_VALUE_OPTIONS = ("--d", "--signal-norm", "--axis", "--set")


def use_cpu_cores() -> None:
    """For entry points: one CPU device per core (sweeps shard runs over devices), unless already chosen."""
    from jaxbo.devices import use_cpu_cores as ask

    ask()


def use_compilation_cache() -> str | None:
    """For entry points: keep compiled programs on disk, so a repeated command skips its ~3 s compile.

    The directory is ``$JAXBO_CACHE_DIR``, else ``$XDG_CACHE_HOME/jaxbo/xla`` (``~/.cache/jaxbo/xla``);
    ``JAXBO_CACHE_DIR=`` (empty) turns it off, and a directory already set in JAX's config is kept.
    Returns the directory in use, or None.
    """
    import jax

    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    directory = os.environ.get("JAXBO_CACHE_DIR")
    if directory is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        directory = os.path.join(base, "jaxbo", "xla")
    if not directory:
        return None
    jax.config.update("jax_compilation_cache_dir", directory)
    return directory


def _as_typed(option: str, spec: str) -> str:
    """The flag and its value as the user typed them: ``--d 250.5``, ``--axis noise_rate=0.1``."""
    return f"{option}{spec}" if option.endswith("=") else f"{option} {spec}"


def parse_values(spec: str, option: str, name: str) -> list[float]:
    """The values of a grid axis from ``"start:stop:num"`` (num evenly spaced values, both ends included),
    ``"a,b,c"`` or a single number; ``option`` is the flag as typed (``--d``, ``--axis noise_rate=``), for errors.

    Values are checked by ``plan.validate_grid``, the Python API's check, so both refuse the same things in the
    same words (a d of 250.5, a repeated value, NaN). Only a range of d is rounded to whole numbers, since its
    evenly spaced points rarely are; a range that rounds two points to one d is refused, not thinned.
    """
    shown = _as_typed(option, spec)
    try:
        if ":" in spec:
            start, stop, num = spec.split(":")
            if int(num) < 1:
                raise ValueError
            values = np.linspace(float(start), float(stop), int(num)).tolist()
        else:
            values = [float(part) for part in spec.split(",")]
        if not values:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{shown!r}: expected start:stop:num (num >= 1), a,b,c or one number"
        ) from None
    if name == "d" and ":" in spec and np.all(np.isfinite(values)):
        rounded = [round(value) for value in values]
        if len(set(rounded)) != len(rounded):
            raise ValueError(f"{shown}: its {len(values)} points round to repeated whole d; use fewer points")
        values = [float(value) for value in rounded]
    return values


def _checked_axis(name: str, spec: str, option: str, config: Config) -> list[float]:
    """``parse_values``, then the Python API's check of the axis, its error prefixed with the flag as typed."""
    from jaxbo.plan import validate_grid

    values = parse_values(spec, option, name)
    try:
        validate_grid({name: values}, config)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{_as_typed(option, spec)}: {error}") from None
    return values


def parse_setting(text: str) -> tuple[str, object]:
    """``FIELD=VALUE`` for ``--set``: ints, floats, booleans (true/false), strings, or a comma tuple for ``layout``."""
    name, sep, raw = text.partition("=")
    if not sep or name not in field_names():
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected FIELD=VALUE with FIELD one of {field_names()}")
    default = getattr(Config(), name)
    try:
        if isinstance(default, tuple):
            return name, tuple(int(part) for part in raw.split(","))
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return name, raw.lower() in ("true", "1")
        if isinstance(default, int):
            return name, int(raw)
        if isinstance(default, float):
            return name, float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--set {text!r}: {raw!r} is not a valid {type(default).__name__}") from None
    return name, raw


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Each help line ends with its default (where it has a meaningful one); texts keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        meaningless = action.default is None or action.default is False or action.default == []
        if meaningless or action.default == argparse.SUPPRESS or "%(default)" in help_text:
            return help_text
        return help_text + " (default: %(default)s)"


def _program_name() -> str:
    """The name the user typed: ``python -m jaxbo``, ``jaxbo`` or a script's file name."""
    invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "jaxbo"
    return "python -m jaxbo" if invoked in ("__main__.py", "-c", "") else invoked


def _settings_help() -> str:
    defaults = Config()
    listed = ", ".join(f"{name}={_show(getattr(defaults, name))}" for name in field_names())
    return f"base Config field FIELD=VALUE (repeatable). Fields and defaults: {listed}"


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


#: Defaults of ``sweep``'s grid options; a script may pass its own to ``main`` so its ``--help`` shows them.
SWEEP_DEFAULTS = {"d": "250:5000:20", "signal_norm": "5:100:20", "seeds": 5}
#: Help of --engine: "auto" picks the cheapest engine that is exact for the run (jaxbo.engines).
ENGINE_HELP = "simulation engine (auto: the cheapest exact one for the model and settings)"
#: Grids of at most this many cells get a per-cell table on the terminal.
CELL_TABLE_LIMIT = 30


def _add_sweep_arguments(parser: argparse.ArgumentParser, defaults: dict) -> None:
    """The sweep command's options: grid, seeds, engine, devices, checkpoint, outputs."""
    parser.set_defaults(sweep_defaults=defaults)
    parser.add_argument(
        "--d", help=f"d values: start:stop:num (rounded to whole d), a,b,c or one value (default: {defaults['d']})"
    )
    parser.add_argument(
        "--signal-norm",
        help=f"‖μ‖ values: start:stop:num, a,b,c or one value (default: {defaults['signal_norm']})",
    )
    parser.add_argument(
        "--axis",
        action="append",
        default=[],
        metavar="FIELD=SPEC",
        help=f"a grid axis, FIELD one of {', '.join(SWEEPABLE)} (d and signal_norm: instead of --d, "
        "--signal-norm); SPEC as for --d (repeatable)",
    )
    parser.add_argument("--seeds", type=int, default=defaults["seeds"], help="runs per grid point")
    parser.add_argument("--key", type=int, default=0, help="base seed of the sweep")
    parser.add_argument("--engine", choices=engine_names(), default="auto", help=ENGINE_HELP)
    parser.add_argument("--histories", action="store_true", help="also keep every run's logged metrics")
    parser.add_argument("--chunk-size", type=int, default=None, help="runs per compiled call (default: planned)")
    parser.add_argument(
        "--devices",
        type=int,
        default=None,
        metavar="K",
        help="shard the runs over the first K devices (default: every device; on a CPU one device per core)",
    )
    parser.add_argument(
        "--paired",
        action="store_true",
        help="runs of one seed share their random draws across ‖μ‖ (common random numbers; docs/scaling.md)",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        metavar="DIR",
        help="keep finished chunks in DIR; the same command again resumes from them after an interruption",
    )
    parser.add_argument("--out", default="results", help="output directory (created once the arguments are valid)")
    parser.add_argument("--name", default="phase_diagram", help="file name stem in --out")


def build_parser(
    prog: str | None = None, sweep_defaults: dict | None = None, sweep_only: bool = False
) -> argparse.ArgumentParser:
    """The argument parser; ``sweep_defaults`` overrides ``SWEEP_DEFAULTS`` (a script's own grid), and
    ``sweep_only`` names the sweep's usage ``prog`` alone (a script whose only command is the sweep)."""
    prog = prog or _program_name()
    defaults = {**SWEEP_DEFAULTS, **(sweep_defaults or {})}
    parser = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        formatter_class=_Formatter,
        epilog=(
            "examples:\n"
            f"  {prog} sweep --d 250:5000:20 --signal-norm 5:100:20 --seeds 5 --out results\n"
            f"  {prog} sweep --axis noise_rate=0.1,0.2 --set layout=2,2,2 --seeds 3\n"
            f"  {prog} run --set d=4500 --set signal_norm=5\n"
            f"  {prog} sweep --set model=encoder --set mlp_width=128 --d 50,100,200 --signal-norm 4,16,64 --seeds 2\n"
            "      (the appendix's encoder at MLP width 128: about 20 s on 2 CPU cores, 7 s with its compile cached;\n"
            "      the paper's width 2000 and d up to 1000 take minutes: docs/benchmarks.md)\n"
            f"  {prog} sweep --set model=causal --set target_noise=token --d 250:5000:20 "
            "--signal-norm 5:100:20 --limit\n"
            "      (the causal model, each next-label target flipped on its own, with its t → ∞ limit:\n"
            "      about 20 s on 2 CPU cores, 14 s with its compile cached)\n"
            "Data: .npz + .json (jaxbo.load reads them back); figures: .png."
        ),
    )
    parser.add_argument("--version", action="version", version=f"jaxbo-attention {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{sweep,run}")

    grid = commands.add_parser(
        "sweep",
        prog=prog if sweep_only else None,
        help="phase diagram over a grid × seeds: writes .npz, .json and .png",
        description="Train every grid point × seed in one compiled program per group and write the data\n"
        "(.npz + .json) and the phase diagram (.png; one row of panels per value of any --axis).",
        formatter_class=_Formatter,
        epilog=f"example:\n  {prog}{'' if sweep_only else ' sweep'} --d 250:5000:20 --signal-norm 5:100:20 --seeds 5 "
        "--out results",
    )
    _add_sweep_arguments(grid, defaults)

    one = commands.add_parser(
        "run",
        help="one run with histories: writes the dynamics figure",
        description="Train one run, logging its metrics, and write the attention-dynamics figure (.png).",
        formatter_class=_Formatter,
        epilog=f"example:\n  {prog} run --set d=4500 --set signal_norm=5",
    )
    one.add_argument("--key", type=int, default=0, help="seed of the run")
    one.add_argument("--engine", choices=engine_names(), default="auto", help=ENGINE_HELP)
    one.add_argument("--out", default="results", help="output directory (created once the arguments are valid)")
    one.add_argument("--name", default="dynamics", help="file name stem in --out")

    for command in (grid, one):
        command.add_argument(
            "--limit",
            action="store_true",
            help="also compute each run's t → ∞ limit (max-margin token selection, certified; jaxbo.limit) and "
            "draw it beside the horizon",
        )
        command.add_argument(
            "--set", action="append", default=[], type=parse_setting, metavar="FIELD=VALUE", help=_settings_help()
        )
        command.add_argument("--quiet", action="store_true", help="print only errors and the output paths")
    parser.commands = {"sweep": grid, "run": one}  # for errors with the sub-command's usage
    return parser


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--d -100:500:3`` → ``--d=-100:500:3``: argparse would read a value starting with '-' as an option."""
    joined, index = [], 0
    while index < len(argv):
        token = argv[index]
        following = argv[index + 1] if index + 1 < len(argv) else ""
        if (token in _VALUE_OPTIONS and following[:1] == "-" and following[1:2].isdigit()) or (
            token in _VALUE_OPTIONS and following[:2] == "-."
        ):
            joined.append(f"{token}={following}")
            index += 2
            continue
        joined.append(token)
        index += 1
    return joined


def _sweep_grid(args, config: Config) -> dict[str, list[float]]:
    """The grid of ``--d``, ``--signal-norm`` and every ``--axis`` (d and signal_norm may come from either,
    not both), each checked as the Python API checks it; axes keep the order given, d and ‖μ‖ first."""
    specs = {}
    for name, flag in (("d", "--d"), ("signal_norm", "--signal-norm")):
        if getattr(args, name) is not None:
            specs[name] = (getattr(args, name), flag)
    for item in args.axis:
        name, sep, spec = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--axis {item!r}: expected FIELD=SPEC with FIELD one of {', '.join(SWEEPABLE)}")
        if name in specs:
            raise ValueError(f"{name} is given twice ({specs[name][1].rstrip('=')} and --axis {name}=): give it once")
        specs[name] = (spec, f"--axis {name}=")
    for name in ("d", "signal_norm"):
        specs.setdefault(name, (args.sweep_defaults[name], f"--{name.replace('_', '-')}"))
    order = ["d", "signal_norm", *(name for name in specs if name not in ("d", "signal_norm"))]
    grid = {name: _checked_axis(name, *specs[name], config) for name in order}
    clash = sorted(name for name, _ in args.set if name in grid)
    if clash:
        names = ", ".join(clash)
        raise ValueError(f"--set {names} names a grid axis of this sweep; give its values on the axis instead")
    if args.paired and len(grid["signal_norm"]) < 2:
        raise ValueError(
            f"--paired shares each seed's draws across the values of ‖μ‖, but --signal-norm gives one value "
            f"({grid['signal_norm'][0]:g}): give at least 2, or drop --paired"
        )
    return grid


def main(argv: list[str] | None = None, *, prog: str | None = None, sweep_defaults: dict | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit status (2: bad arguments, 130: interrupted).

    ``prog`` and ``sweep_defaults`` let a script that fixes the command (``scripts/phase_diagram.py``) show its
    own name and defaults in ``--help`` and errors; ``argv`` then holds the sweep's options alone.
    """
    sweep_only = sweep_defaults is not None
    parser = build_parser(prog, sweep_defaults, sweep_only=sweep_only)
    arguments = _join_negative_values(list(sys.argv[1:] if argv is None else argv))
    if sweep_only:  # the script's one command: its own usage in --help and every error, no command word
        command = parser.commands["sweep"]
        args = command.parse_args(arguments)
        args.command = "sweep"
    else:
        args = parser.parse_args(arguments)
        command = parser.commands[args.command]
    try:
        config = Config().replace(**dict(args.set))
        with warnings.catch_warnings():  # restored on exit: the process's own warning display is untouched
            warnings.showwarning = _one_line_warning(command.prog)
            if args.command == "run":
                return _run(args, config)
            grid = _sweep_grid(args, config)
            return _sweep(args, config, grid)
    except argparse.ArgumentTypeError as error:
        command.error(str(error))
    except (TypeError, ValueError) as error:
        command.print_usage(sys.stderr)
        print(f"{command.prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        # A sweep's interrupt says what was saved; anything else was interrupted before a sweep ran.
        print(str(interrupt) or f"{command.prog}: interrupted; nothing was written", file=sys.stderr)
        return 130


def _one_line_warning(prog: str):
    """``warnings.showwarning`` for a command: ``prog: warning: message`` on one line, no Python source line
    (a resume's note about a corrupted chunk, say, when the progress bar is off)."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {message}", file=sys.stderr if file is None else file)

    return show


def _say_replaced(paths: list[str], quiet: bool) -> None:
    """One line on stderr when a command is about to overwrite the outputs of an earlier one."""
    existing = [path for path in paths if os.path.exists(path)]
    if existing and not quiet:
        print(
            f"replacing {', '.join(existing)} from an earlier command (--out or --name keeps both)",
            file=sys.stderr,
        )


def _run(args, config: Config) -> int:
    from jaxbo.plot import dynamics, model_name
    from jaxbo.train import checked_engine, simulate

    checked_engine(config, None, args.engine, limit=args.limit)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, args.name)
    run = simulate(args.key, config, engine=args.engine, limit=args.limit)
    _say_replaced([stem + ".png"], args.quiet)
    figure = dynamics(run, title=f"{model_name(config)}: d={config.d}, ‖μ‖={config.signal_norm:g}, engine={run.engine}")
    figure.savefig(stem + ".png", dpi=120)
    if not args.quiet:
        final = run.final
        print(
            f"train acc {float(final.train_accuracy):.3f}, test acc {float(final.test_accuracy):.3f}, "
            f"noisy fitted {float(final.noisy_fit):.3f}"
        )
        if hasattr(final, "position_accuracy"):  # a model whose targets are per position (the causal model)
            by_position = " ".join(f"{float(value):.3f}" for value in final.position_accuracy)
            print(
                f"attainable targets fitted {float(final.attainable_fit):.3f}, unattainable "
                f"{float(final.unattainable):.3f}; test acc by position {by_position}"
            )
        if run.limit is not None:
            from jaxbo.limit import LIMIT_STATUS

            limit = run.limit
            print(
                f"t → ∞ limit: {LIMIT_STATUS[int(limit.status)]} ({int(limit.violations)} of {int(limit.support)} "
                f"support tokens violate local optimality), train acc {float(limit.train_accuracy):.3f}, test acc "
                f"{float(limit.test_accuracy):.3f}, noisy fitted {float(limit.noisy_fit):.3f}, cos(p, p_mm) "
                f"{float(limit.correlation):.3f}"
            )
    print(stem + ".png")
    return 0


def _sweep(args, config: Config, grid: dict[str, list[float]]) -> int:
    from jaxbo.plan import validate_grid
    from jaxbo.plot import phase_diagram
    from jaxbo.sweep import sweep
    from jaxbo.train import checked_engine

    checked_engine(config, None, args.engine, limit=args.limit)  # every argument checked before --out is created
    validate_grid(grid, config)
    for option, value in (("--seeds", args.seeds), ("--chunk-size", args.chunk_size), ("--devices", args.devices)):
        if value is not None and value < 1:
            raise ValueError(f"{option} {value} must be an int >= 1")
    devices = None
    if args.devices is not None:
        import jax

        available = jax.devices()
        if args.devices > len(available):
            raise ValueError(f"--devices {args.devices} is more than the {len(available)} devices JAX has")
        devices = available[: args.devices]
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, args.name)
    result = sweep(
        grid,
        seeds=args.seeds,
        config=config,
        key=args.key,
        progress=not args.quiet,
        engine=args.engine,
        histories=args.histories,
        chunk_size=args.chunk_size,
        devices=devices,
        checkpoint=args.checkpoint,
        paired=args.paired,
        limit=args.limit,
    )
    _say_replaced([stem + suffix for suffix in (".npz", ".json", ".png")], args.quiet)
    paths = list(result.save(stem))
    phase_diagram(result, limit=args.limit).savefig(stem + ".png", dpi=120)
    paths.append(stem + ".png")
    if not args.quiet:
        print(_summary(result))
    print("\n".join(paths))
    return 0


def _summary(result) -> str:
    """What a sweep found, for the terminal: timing, cells per majority regime (ties apart) and, for a small
    grid, one line per cell."""
    metadata = result.metadata
    counts = result.regime_counts()
    lines = [
        f"{metadata['plan']['total_runs']} runs in {metadata['elapsed_s']:.1f} s (compile "
        f"{metadata['compile_s']:.1f} s, engine {metadata['engine']}, {metadata['device_count']} devices); "
        f"cells benign {counts['benign']}, harmful {counts['harmful']}, not overfitting {counts['not overfitting']}"
        + (f", tied {counts['tied']}" if counts["tied"] else "")
    ]
    if result.has_limit:
        limit = result.regime_counts(limit=True)
        lines.append(
            "t → ∞ limit: cells "
            + ", ".join(f"{name} {count}" for name, count in limit.items() if count or name != "tied")
            + f"; settled runs {float(np.mean(result.settled_fraction())):.0%}"
        )
    if int(np.prod(result.grid_shape)) <= CELL_TABLE_LIMIT:
        lines.append(result.cell_table())
    return "\n".join(lines)


def entry_point() -> int:
    """``python -m jaxbo`` and the ``jaxbo`` command: every core, a compile cache, then ``main``."""
    use_cpu_cores()
    use_compilation_cache()
    return main()


def exit_on_interrupt(function, *args, **kwargs) -> int:
    """``function(*args, **kwargs)`` for a script's ``__main__``: Ctrl-C prints its one-line message (a sweep's
    says what was saved) instead of a traceback, and the exit status is 130 as for any interrupted command."""
    try:
        return function(*args, **kwargs) or 0
    except KeyboardInterrupt as interrupt:
        print(str(interrupt) or "interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(entry_point())
