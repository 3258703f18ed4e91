"""``python -m caas_sim.scenarios.cli`` is ``caas-sim``."""

import sys

from . import main

sys.exit(main())
