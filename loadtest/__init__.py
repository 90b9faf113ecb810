"""The load tester, the simulator, the planner and their reports (loadtest/README.md)."""

from pathlib import Path as _Path

from profiles.compiled import check as _check

_check(_Path(__file__).parent)  # a compiled module whose source changed: ImportError
