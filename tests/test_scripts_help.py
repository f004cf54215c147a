"""Every script's ``--help`` prints usage and writes nothing; every example a ``--help`` prints runs as printed.

A script that acts before it parses its arguments turns ``--help`` into a multi-minute benchmark or an
overwritten fixture; an example that fails as printed is a newcomer's first error. The examples run shrunk
(tiny grid, few steps, one seed) through the same entry point, so their flags are checked for real.
"""

import os
import pathlib
import re
import runpy
import shlex
import subprocess
import sys

import pytest

from jaxbo import cli

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "scripts").glob("*.py"))


def tracked_files() -> dict[str, tuple[int, int]]:
    """(mtime in ns, size) of every file git tracks (docs, fixtures, the code itself)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode:  # not a git checkout: the committed outputs the scripts write
        names = [str(p.relative_to(ROOT)) for p in [*ROOT.glob("docs/**/*"), *ROOT.glob("tests/data/*")] if p.is_file()]
    else:
        names = [name for name in listed.stdout.split("\0") if name]
    return {name: (os.stat(ROOT / name).st_mtime_ns, os.stat(ROOT / name).st_size) for name in names
            if (ROOT / name).exists()}  # fmt: skip


@pytest.mark.parametrize("script", SCRIPTS, ids=[path.name for path in SCRIPTS])
def test_help_prints_usage_and_writes_nothing(script, tmp_path, monkeypatch, capsys):
    """In this process (runpy, as ``python script --help`` runs it), so the suite pays no JAX start per script."""
    before = tracked_files()
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(script.parent))  # as Python does for a script: its folder first on sys.path
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert exit_.value.code in (0, None) and out.startswith("usage: "), out[:500]
    changed = sorted(name for name, stat in tracked_files().items() if before.get(name) != stat)
    assert not changed, f"{script.name} --help wrote {changed}"
    assert not list(tmp_path.iterdir()), f"{script.name} --help wrote {list(tmp_path.iterdir())}"


@pytest.mark.slow  # the same, as a user types it: a fresh process each
@pytest.mark.parametrize("script", SCRIPTS, ids=[path.name for path in SCRIPTS])
def test_help_in_a_fresh_process(script, tmp_path):
    before = tracked_files()
    environment = {**os.environ, "JAXBO_CACHE_DIR": "", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=environment,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("usage: "), done.stderr[-2000:]
    assert tracked_files() == before and not list(tmp_path.iterdir())


PHASE_DIAGRAM = "python scripts/phase_diagram.py"


def _phase_diagram_defaults() -> dict:
    source = (ROOT / "scripts" / "phase_diagram.py").read_text()
    return eval(re.search(r"^GRID = (\{.*\})$", source, re.M).group(1))  # the script's own grid, as written


def help_texts() -> dict[str, str]:
    """Every --help of the command line and of the phase-diagram script: prog → text."""
    main = cli.build_parser("python -m jaxbo")
    script = cli.build_parser(PHASE_DIAGRAM, _phase_diagram_defaults(), sweep_only=True)
    return {
        "python -m jaxbo": main.format_help(),
        "python -m jaxbo sweep": main.commands["sweep"].format_help(),
        "python -m jaxbo run": main.commands["run"].format_help(),
        PHASE_DIAGRAM: script.commands["sweep"].format_help(),
    }


def examples() -> list[str]:
    """The example lines of every help text: the lines under 'example:'/'examples:' that start with a prog."""
    found = []
    for text in help_texts().values():
        block = text.split("example", 1)[1] if "example" in text else ""
        for line in block.splitlines():
            line = line.strip()
            if line.startswith(("python -m jaxbo ", PHASE_DIAGRAM)):
                found.append(line.split("   (")[0])  # drop a trailing note in parentheses
    return sorted(set(found))


TINY = {"--d": "40,41", "--signal-norm": "5,50", "--seeds": "1"}
SMALL_SETTINGS = ["n_train=6", "T=6", "n_test=16", "steps=10", "log_every=10", "mlp_width=8"]


def shrunk(line: str, out: pathlib.Path) -> tuple[list[str], dict]:
    """(argv, main's keyword arguments) of an example, at tiny sizes; its flags are kept as printed."""
    words = shlex.split(line)
    if line.startswith(PHASE_DIAGRAM):
        words, keywords = words[2:], {"prog": PHASE_DIAGRAM, "sweep_defaults": _phase_diagram_defaults()}
    else:
        words, keywords = words[3:], {}
    argv, index = [], 0
    while index < len(words):
        word = words[index]
        if word in TINY:
            argv += [word, TINY[word]]
            index += 2
            continue
        if word == "--out":
            index += 2
            continue
        argv.append(word)
        index += 1
    is_sweep = keywords or argv[0] == "sweep"
    if is_sweep:
        argv += [flag for name, value in TINY.items() if name not in argv for flag in (name, value)]
    settings = [f"--set={setting}" for setting in SMALL_SETTINGS if setting.split("=")[0] + "=" not in line]
    if "model=encoder" in line:  # the printed width costs seconds; the flags, not the width, are under test
        settings.append("--set=mlp_width=8")
    return [*argv, *settings, "--out", str(out), "--quiet"], keywords


def test_the_help_texts_print_examples():
    found = examples()
    assert any(line.startswith(PHASE_DIAGRAM) for line in found) and any(" run " in line for line in found)
    assert not any(line.startswith(f"{PHASE_DIAGRAM} sweep") for line in found)  # its only command has no word


@pytest.mark.parametrize("line", examples())
def test_every_help_example_runs_as_printed(line, tmp_path, capsys):
    argv, keywords = shrunk(line, tmp_path)
    assert cli.main(argv, **keywords) == 0, capsys.readouterr().err
    assert list(tmp_path.glob("*.png")), f"{line!r} wrote no figure"
