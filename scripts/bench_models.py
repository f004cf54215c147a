"""The models redesign against the code before it: the paper grid's sweeps at two revisions, fresh processes.

    python scripts/bench_models.py [--against 81aa0eb] [--repeats 2] [--seeds 10]

The models issue (φ a named piece, heads an axis of the one model, engines that declare what they run) must
leave the paper grid's sweeps as fast as they were. This script times four of them — independent, paired (the
reduced engine's shared step), a trained head, 4 heads from p = 0 — on the paper's 39 × 39 grid × ``--seeds``,
each at ``--against`` (default 81aa0eb, the last commit before the redesign, extracted with ``git archive``)
and at this checkout, in fresh processes that alternate between the two revisions ``--repeats`` times. In each
process every sweep runs twice: *first* (compile included) and *steady* (the same sweep again, its programs
compiled). Writes its section of docs/benchmarks.md; the verdict compares medians of *steady* (target: within
5 % of the earlier revision's).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import textwrap

import jaxbo

jaxbo.use_cpu_cores()  # before anything starts JAX: one CPU device per core (the machine line reads devices)

from _bench import machine, span, write_section  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEPS = ("independent", "paired", "trained head", "4 heads")
TARGET = 1.05

# A fresh process at one revision (PYTHONPATH puts its jaxbo/ first): each sweep twice, first and steady.
FRESH = textwrap.dedent("""
    import json, sys
    import jaxbo
    jaxbo.use_cpu_cores()
    grid = {"d": [250 + 125 * i for i in range(39)], "signal_norm": [5 + 2.5 * i for i in range(39)]}
    seeds = int(sys.argv[1])
    sweeps = {
        "independent": dict(config=jaxbo.Config()),
        "paired": dict(config=jaxbo.Config(), paired=True),
        "trained head": dict(config=jaxbo.Config(train_head=True)),
        "4 heads": dict(config=jaxbo.Config(heads=4)),
    }
    rows = {"jaxbo": jaxbo.__file__}
    for name, arguments in sweeps.items():
        first = jaxbo.sweep(grid, seeds=seeds, progress=False, **arguments)
        steady = jaxbo.sweep(grid, seeds=seeds, progress=False, **arguments)
        rows[name] = {"first": first.metadata["elapsed_s"], "compile": first.metadata["compile_s"],
                      "steady": steady.metadata["elapsed_s"], "engine": first.metadata["engine"]}
    print(json.dumps(rows))
""")


def extract(revision: str, into: str) -> str:
    """The package ``jaxbo/`` of ``revision`` under ``into`` (a path for PYTHONPATH)."""
    archive = os.path.join(into, "jaxbo.tar")
    with open(archive, "wb") as handle:
        subprocess.run(["git", "archive", revision, "jaxbo"], cwd=ROOT, stdout=handle, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def fresh(path: str, seeds: int) -> dict:
    environment = {**os.environ, "PYTHONPATH": path, "JAXBO_CACHE_DIR": ""}
    done = subprocess.run(
        [sys.executable, "-c", FRESH, str(seeds)], capture_output=True, text=True, env=environment, cwd=path
    )
    if done.returncode:
        raise SystemExit(f"bench_models: a process at {path} failed:\n{done.stderr[-3000:]}")
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    if not os.path.abspath(rows["jaxbo"]).startswith(os.path.abspath(path)):  # the editable install won instead
        raise SystemExit(f"bench_models: the process imported {rows['jaxbo']}, not the tree at {path}")
    return rows


def section(against: str, seeds: int, runs: dict[str, list[dict]]) -> str:
    lines = [
        "## The models redesign against the code before it (`scripts/bench_models.py`)",
        "",
        f"Machine: {machine()}. The paper's grid (39 d × 39 ‖μ‖) × {seeds} seeds, paper defaults, the engine "
        f"`auto` picks; {len(runs['before'])} fresh processes per revision, alternating; *first*: the sweep's time "
        "with compilation, *steady*: the same sweep again in that process. *Before*: commit "
        f"{against}; *after*: this checkout.",
        "",
        "| sweep | engine | first, before | first, after | steady, before | steady, after | steady after / before |",
        "|---|---|---|---|---|---|---|",
    ]
    ratios = {}
    for name in SWEEPS:
        before, after = ([row[name] for row in runs[side]] for side in ("before", "after"))
        ratio = statistics.median(r["steady"] for r in after) / statistics.median(r["steady"] for r in before)
        ratios[name] = ratio
        lines.append(
            f"| {name} | {after[0]['engine']} | {span([r['first'] for r in before])} | "
            f"{span([r['first'] for r in after])} | {span([r['steady'] for r in before])} | "
            f"{span([r['steady'] for r in after])} | {ratio:.3f}× |"
        )
    met = [name for name, ratio in ratios.items() if ratio <= TARGET]
    missed = [f"{name} ({ratio:.3f}×)" for name, ratio in ratios.items() if ratio > TARGET]
    verdict = f"Within {TARGET - 1:.0%} of before (medians of steady): {', '.join(met) or 'none'}"
    verdict += f"; over it: {', '.join(missed)}." if missed else "."
    return "\n".join([*lines, "", verdict])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", default="81aa0eb", help="the earlier revision (a git commit)")
    parser.add_argument("--repeats", type=int, default=2, help="fresh processes per revision")
    parser.add_argument("--seeds", type=int, default=10)
    arguments = parser.parse_args(argv)
    if arguments.repeats < 1 or arguments.seeds < 1:
        parser.error(f"--repeats = {arguments.repeats} and --seeds = {arguments.seeds} must be >= 1")
    runs = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as scratch:
        trees = {"before": extract(arguments.against, scratch), "after": ROOT}
        for repeat in range(arguments.repeats):
            for side in ("before", "after") if repeat % 2 == 0 else ("after", "before"):
                print(f"bench_models: {side}, process {repeat + 1}", file=sys.stderr, flush=True)
                runs[side].append(fresh(trees[side], arguments.seeds))
    text = section(arguments.against, arguments.seeds, runs)
    write_section("bench_models", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
