"""Profiles: tables, the profiler, the latency and cost models (profiles/README.md)."""

from pathlib import Path as _Path

from profiles.compiled import check as _check

_check(_Path(__file__).parent)  # a compiled module whose source changed: ImportError
