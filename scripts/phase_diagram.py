"""The README's main job: a fine (d, ‖μ‖) phase diagram, 10 seeds, exact reduced engine.

    python scripts/phase_diagram.py [--out results] [any `python -m jaxbo sweep` option]

Writes results/phase_diagram.{npz,json,png}: d = 250…5000 and ‖μ‖ = 5…100 on a 40 × 40 grid.
"""

import sys

from jaxbo.cli import main, use_compilation_cache, use_cpu_cores

DEFAULTS = ["sweep", "--d", "250:5000:40", "--signal-norm", "5:100:40", "--seeds", "10"]

if __name__ == "__main__":
    use_cpu_cores()
    use_compilation_cache()
    sys.exit(main(DEFAULTS + sys.argv[1:]))
