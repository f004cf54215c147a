"""``python -m jaxbo``: see ``jaxbo.cli``."""

import sys

from jaxbo.cli import main

sys.exit(main())
