"""Baseline policies, for comparison: they ignore the SLO when choosing (but still flag a
predicted miss). Each ranks the healthy backends and takes the first; round robin takes
the next in turn."""

from __future__ import annotations

from typing import Any

from serving.policies.base import (
    Candidate,
    Decision,
    Policy,
    RoutingContext,
    decide,
    evaluate,
    no_backend,
)


class _Ranking(Policy):
    reason = ""

    def key(self, c: Candidate, ctx: RoutingContext, index: int) -> Any:
        raise NotImplementedError

    def choose(self, ctx: RoutingContext) -> Decision:
        candidates = evaluate(ctx)
        if not candidates:
            return no_backend(ctx, "no healthy backend")
        chosen = min(enumerate(candidates), key=lambda ic: self.key(ic[1], ctx, ic[0]))[1]
        return decide(chosen, candidates, self.reason)


class RoundRobinPolicy(Policy):
    name = "round-robin"
    description = "each healthy backend in turn"

    def choose(self, ctx: RoutingContext) -> Decision:
        candidates = evaluate(ctx)
        if not candidates:
            return no_backend(ctx, "no healthy backend")
        return decide(candidates[ctx.sequence % len(candidates)], candidates, "round robin")


class LeastLoadedPolicy(_Ranking):
    name = "least-loaded"
    description = "fewest requests in flight per replica"
    reason = "least requests in flight"

    def key(self, c: Candidate, ctx: RoutingContext, index: int) -> Any:
        load = next(b.load for b in ctx.backends if b.id == c.backend_id)
        return (len(load.running) + len(load.waiting), c.cost_usd)


class FastestPolicy(_Ranking):
    name = "fastest"
    description = "lowest predicted E2E"
    reason = "lowest predicted E2E"

    def key(self, c: Candidate, ctx: RoutingContext, index: int) -> Any:
        return (c.prediction.e2e_ms, c.cost_usd)


class CheapestPolicy(_Ranking):
    name = "cheapest"
    description = "lowest expected cost, whatever the latency"
    reason = "lowest expected cost"

    def key(self, c: Candidate, ctx: RoutingContext, index: int) -> Any:
        return (c.cost_usd, c.prediction.e2e_ms)
