"""``python -m jaxbo``: see ``jaxbo.cli``."""

import sys

from jaxbo.cli import main, use_cpu_cores

use_cpu_cores()
sys.exit(main())
