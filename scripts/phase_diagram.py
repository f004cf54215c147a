"""The README's main job: a fine (d, ‖μ‖) phase diagram, 10 seeds, exact reduced engine.

    python scripts/phase_diagram.py [--out results] [any `python -m jaxbo sweep` option]

Writes results/phase_diagram.{npz,json,png}: d = 250…5000 and ‖μ‖ = 5…100 on a 40 × 40 grid × 10 seeds.
"""

import sys

import jaxbo
from jaxbo.cli import exit_on_interrupt, main, use_compilation_cache

jaxbo.use_cpu_cores()  # before anything starts JAX: one CPU device per core
GRID = {"d": "250:5000:40", "signal_norm": "5:100:40", "seeds": 10}

if __name__ == "__main__":
    use_compilation_cache()
    arguments = sys.argv[1:]
    # Only the sweep runs here: `--help` and every option are the sweep's, with this script's grid as defaults.
    prog = "python scripts/phase_diagram.py"
    sys.exit(exit_on_interrupt(main, arguments, prog=prog, sweep_defaults=GRID))
