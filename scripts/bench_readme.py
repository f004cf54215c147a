"""Time the README's own commands as a new user meets them, and write the figures the README quotes.

    python scripts/bench_readme.py [--repeats 3] [--test-repeats 2] [--skip-tests]

Each measurement is a fresh process: the main job (`python scripts/phase_diagram.py`) and the default test
suite (`python -m pytest -q`), each from an empty compilation cache (*cold*: a new clone's first run) and
again with the cache the previous run left (*warm*). Ranges are min–max over the repeats, with the load
average at the start, so a loaded machine shows. Writes the "README commands" section of docs/benchmarks.md
and the timing phrases between `<!-- readme:NAME -->` markers in README.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import _bench
from _bench import machine, write_section

import jaxbo

jaxbo.use_cpu_cores()  # before anything starts JAX (the machine line lists the devices)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")


def timed_process(command: list[str], environment: dict[str, str]) -> float:
    """Wall seconds of ``command`` run from the repository root; raises if it fails."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        output = done.stdout[-2000:] + done.stderr[-2000:]
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{output}")
    return seconds


def cold_and_warm(command: list[str], cache_variable: str, repeats: int) -> tuple[list[float], list[float]]:
    """(cold seconds, warm seconds) over ``repeats`` pairs: a fresh empty cache, then the same cache again."""
    cold, warm = [], []
    base = {key: value for key, value in os.environ.items() if key not in ("XLA_FLAGS", "CI")}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
            environment = {**base, cache_variable: cache, "JAXBO_BENCH_OUT": out}
            full = [part.replace("{out}", out) for part in command]
            cold.append(timed_process(full, environment))
            warm.append(timed_process(full, environment))
    return cold, warm


def span(values: list[float]) -> str:
    return _bench.span(values, digits=0)


def replace_marked(text: str, name: str, value: str) -> str:
    """Replace the text between ``<!-- readme:name -->`` and ``<!-- /readme -->``; the markers must exist."""
    pattern = re.compile(rf"(<!-- readme:{re.escape(name)} -->).*?(<!-- /readme -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"README.md has no <!-- readme:{name} --> marker")
    return pattern.sub(lambda match: f"{match.group(1)}{value}{match.group(2)}", text)


#: The README's encoder example, as a user runs it from a script.
ENCODER_EXAMPLE = """
import jaxbo
jaxbo.use_cpu_cores()
encoder = jaxbo.Config(model="encoder", mlp_width=2000)
small = jaxbo.sweep({"d": [250, 500], "signal_norm": [5.0, 80.0]}, seeds=2, config=encoder, progress=False)
"""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="cold/warm pairs of the main job")
    parser.add_argument("--test-repeats", type=int, default=2, help="cold/warm pairs of the test suite")
    parser.add_argument("--skip-tests", action="store_true", help="time only the main job")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    main_job = [sys.executable, "scripts/phase_diagram.py", "--out", "{out}", "--quiet"]
    job_cold, job_warm = cold_and_warm(main_job, "JAXBO_CACHE_DIR", args.repeats)
    print(f"main job: cold {job_cold}, warm {job_warm}", file=sys.stderr)
    rows = [
        f"| main job: `python scripts/phase_diagram.py` (40 × 40 × 10 = 16,000 runs) | {args.repeats} | "
        f"{span(job_cold)} | {span(job_warm)} |"
    ]
    # Library code keeps no compilation cache (only the command line and scripts do): every run is cold.
    environment = {key: value for key, value in os.environ.items() if key not in ("XLA_FLAGS", "CI")}
    encoder_cold = [timed_process([sys.executable, "-c", ENCODER_EXAMPLE], environment)]
    rows.append(f"| README's encoder example (8 runs, no cache: library code) | 1 | {span(encoder_cold)} | — |")
    readme = open(README).read()
    readme = replace_marked(readme, "main_job", f"{span(job_warm)} on 2 CPU cores, {span(job_cold)} the first time")
    readme = replace_marked(readme, "encoder_example", f"8 runs, {span(encoder_cold)} on 2 CPU cores")
    if not args.skip_tests:
        tests = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        test_cold, test_warm = cold_and_warm(tests, "JAXBO_TEST_CACHE", args.test_repeats)
        print(f"tests: cold {test_cold}, warm {test_warm}", file=sys.stderr)
        rows.append(
            f"| default tests: `python -m pytest -q` | {args.test_repeats} | {span(test_cold)} | {span(test_warm)} |"
        )
        readme = replace_marked(readme, "tests", f"{span(test_cold)} from cold, {span(test_warm)} once cached")
    body = f"""## README commands (`scripts/bench_readme.py`)

Machine: {machine()}. Load average at the start: {load:.2f}. Each figure is the wall time of a fresh
process started from the repository root, min–max over the repeats: *cold* with an empty compilation cache
(a new clone's first run), *warm* with the cache the cold run left (`~/.cache/jaxbo/xla` for the main job,
`~/.cache/jaxbo/xla-tests` for the tests, here temporary directories). The README quotes these rows.

| command | repeats | cold | warm |
|---|---|---|---|
{chr(10).join(rows)}
"""
    write_section("bench_readme", body)
    with open(README, "w") as handle:
        handle.write(readme)
    print("wrote docs/benchmarks.md and README.md")


if __name__ == "__main__":
    main()
