"""`python -m costroute ...`: the same as the `costroute` command."""

import sys

from costroute.cli import main

sys.exit(main())
