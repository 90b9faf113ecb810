"""Routing policies: one registry (`Policy.registry`), filled by the modules imported here."""

from pathlib import Path as _Path

from profiles.compiled import check as _check
from serving.policies import baselines, cost_slo  # noqa: F401  (register the policies)
from serving.policies.base import (
    BackendView,
    Candidate,
    Decision,
    Policy,
    RoutingContext,
    Slo,
    evaluate,
    make_policy,
)

_check(_Path(__file__).parent)  # a compiled module whose source changed: ImportError

__all__ = ["BackendView", "Candidate", "Decision", "Policy", "RoutingContext", "Slo",
           "evaluate", "make_policy"]
