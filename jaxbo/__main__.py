"""``python -m jaxbo``: see ``jaxbo.cli``."""

import sys

from jaxbo.cli import entry_point

sys.exit(entry_point())
