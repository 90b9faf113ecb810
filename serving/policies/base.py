"""What every routing policy sees and returns (pure data), and the one registry of policies.

A policy gets one frozen `RoutingContext` and returns a `Decision`. Policies register
themselves by subclassing `Policy` with a `name`; `make_policy` (serving/policies/__init__.py)
builds one by name or by import path (`package.module:Class`). The live ingress and the
simulator call the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

from backends.errors import ConfigError
from profiles.cost import request_cost_usd
from profiles.latency import BackendLoad, Correction, LatencyModel, Prediction, RequestShape

try:  # mypy (a dev dependency) brings it; only the compiled build (profiles/compiled.py) reads it
    from mypy_extensions import mypyc_attr
except ImportError:  # pragma: no cover
    def mypyc_attr(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
        return lambda cls: cls

Fallback = Literal["fastest", "reject"]


@dataclass(frozen=True)
class Slo:
    """The targets one request carries (None: no target)."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    def misses(self, p: Prediction, margin: float = 1.0) -> tuple[str, ...]:
        """Which targets the prediction (times `margin`) misses."""
        ttft, tpot, e2e = self.ttft_ms, self.tpot_ms, self.e2e_ms
        if ((ttft is None or p.ttft_ms * margin <= ttft)
                and (tpot is None or p.tpot_ms * margin <= tpot)
                and (e2e is None or p.e2e_ms * margin <= e2e)):
            return ()  # the common case, without building a list
        out = []
        if self.ttft_ms is not None and p.ttft_ms * margin > self.ttft_ms:
            out.append(f"ttft {p.ttft_ms:.1f} > {self.ttft_ms:g} ms")
        if self.tpot_ms is not None and p.tpot_ms * margin > self.tpot_ms:
            out.append(f"tpot {p.tpot_ms:.2f} > {self.tpot_ms:g} ms")
        if self.e2e_ms is not None and p.e2e_ms * margin > self.e2e_ms:
            out.append(f"e2e {p.e2e_ms:.1f} > {self.e2e_ms:g} ms")
        return tuple(out)


class BackendView(NamedTuple):
    """One backend as the router sees it now."""

    id: str
    usd_per_hour: float
    model: LatencyModel
    load: BackendLoad  # per replica (the least loaded replica's share)
    correction: Correction = Correction()  # immutable: one shared default is safe
    healthy: bool = True


@dataclass(frozen=True)
class RoutingContext:
    request: RequestShape
    slo: Slo
    backends: tuple[BackendView, ...]
    fallback: Fallback = "fastest"
    sequence: int = 0  # how many requests were routed before this one
    slo_class: str | None = None  # the request's named SLO class, if it has one


class Candidate(NamedTuple):
    backend_id: str
    prediction: Prediction
    cost_usd: float
    misses: tuple[str, ...]  # SLO targets predicted to be missed (empty: meets the SLO)


@dataclass(frozen=True)
class Decision:
    backend_id: str | None  # None: rejected
    prediction: Prediction | None
    cost_usd: float
    reason: str
    slo_risk: bool  # served although predicted to miss its SLO
    rejected: tuple[tuple[str, str], ...] = ()  # (backend id, why not)


def evaluate(ctx: RoutingContext, margin: float = 1.0) -> list[Candidate]:
    """Predictions, expected cost and SLO misses for every healthy backend."""
    return [candidate(ctx, b, margin) for b in ctx.backends if b.healthy]


def candidate(ctx: RoutingContext, b: BackendView, margin: float = 1.0) -> Candidate:
    """One backend's prediction, expected cost and misses for the request.

    A backend meets the SLO only if the request meets its own targets there AND the requests
    already there keep theirs: the TPOT they would see once it joins
    (`LatencyModel.others_tpot_ms`) is held against the tightest TPOT target among them.
    The expected cost prices the replica time the request uses plus what it takes from the
    others: each running sequence it delays pays its share (1 / batch) of the replica for
    that delay, so `others_delay_ms / batch` more."""
    request, load = ctx.request, b.load
    p = b.model.predict(request, load, b.correction)
    replica_ms = p.replica_ms
    if p.others_delay_ms > 0:
        replica_ms += p.others_delay_ms / (len(load.running) + 1)
    missed = ctx.slo.misses(p, margin)
    limit = load.tightest_tpot_ms
    if load.running and limit < math.inf:
        others = b.model.others_tpot_ms(request, load, b.correction)
        if others * margin > limit:
            missed += (f"others' tpot {others:.2f} > {limit:g} ms",)
    return Candidate(b.id, p, request_cost_usd(replica_ms, b.usd_per_hour), missed)


def decide(chosen: Candidate, all_: list[Candidate], reason: str,
           meeting_why_not: str = "not chosen") -> Decision:
    """The decision for `chosen`; each other candidate is listed with the targets it misses,
    or `meeting_why_not` if it meets them all."""
    rejected = tuple((c.backend_id, "; ".join(c.misses) if c.misses else meeting_why_not)
                     for c in all_ if c.backend_id != chosen.backend_id)
    return Decision(chosen.backend_id, chosen.prediction, chosen.cost_usd, reason,
                    bool(chosen.misses), rejected)


def pinned(ctx: RoutingContext, backend_id: str) -> Decision:
    """The request named its backend (profiling, debugging): that one, predicted and priced
    like any other, whatever the policy would have chosen."""
    candidates = [c for c in evaluate(ctx) if c.backend_id == backend_id]
    if not candidates:
        return no_backend(ctx, f"pinned backend {backend_id!r} is unhealthy")
    return decide(candidates[0], candidates, "pinned by the request")


def no_backend(ctx: RoutingContext, reason: str) -> Decision:
    return Decision(None, None, 0.0, reason, True,
                    tuple((b.id, "unhealthy") for b in ctx.backends if not b.healthy))


@mypyc_attr(allow_interpreted_subclasses=True)  # policies of any module subclass it
class Policy:
    """Base of all policies. Subclasses set `name` and implement `choose`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    registry: ClassVar[dict[str, type[Policy]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            Policy.registry[cls.name] = cls

    def __init__(self, **params: Any) -> None:
        if params:
            raise ConfigError(f"policy {self.name!r} takes no parameters, got {sorted(params)}",
                              "policy.params")

    def choose(self, ctx: RoutingContext) -> Decision:
        raise NotImplementedError

    def follow(self, routing_table: list[dict[str, Any]] | None) -> None:
        """A new plan's routing table (serving/policies/routing_table.py), or None for none,
        from the autoscaler; policies that route without one ignore it."""
