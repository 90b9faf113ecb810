"""Routing policies: one registry (`Policy.registry`), filled by the modules imported here."""

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

__all__ = ["BackendView", "Candidate", "Decision", "Policy", "RoutingContext", "Slo",
           "evaluate", "make_policy"]
