"""Routing policies: one registry (`Policy.registry`), filled by the modules imported here."""

import importlib
from pathlib import Path as _Path
from typing import Any

from backends.errors import ConfigError
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
)


def make_policy(name: str, params: dict[str, Any] | None = None) -> Policy:
    """A policy by its registered name or by import path (`package.module:Class`)."""
    if ":" in name:
        module, _, attr = name.partition(":")
        cls = getattr(importlib.import_module(module), attr)
    elif name in Policy.registry:
        cls = Policy.registry[name]
    else:
        raise ConfigError(
            f"unknown policy {name!r}; choose one of {sorted(Policy.registry)} or give "
            "an import path package.module:Class", "policy.name")
    return cls(**(params or {}))  # type: ignore[no-any-return]


_check(_Path(__file__).parent)  # a compiled module whose source changed: ImportError

__all__ = ["BackendView", "Candidate", "Decision", "Policy", "RoutingContext", "Slo",
           "evaluate", "make_policy"]
