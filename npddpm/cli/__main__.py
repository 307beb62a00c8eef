"""``python -m npddpm.cli``."""

import sys

from . import main

sys.exit(main())
