"""Baseline policies, for comparison: they ignore the SLO when choosing (but still flag a
predicted miss)."""

from __future__ import annotations

from serving.policies.base import Decision, Policy, RoutingContext, decide, evaluate, no_backend


class RoundRobinPolicy(Policy):
    name = "round-robin"
    description = "each healthy backend in turn"

    def choose(self, ctx: RoutingContext) -> Decision:
        candidates = evaluate(ctx)
        if not candidates:
            return no_backend(ctx, "no healthy backend")
        chosen = candidates[ctx.sequence % len(candidates)]
        return decide(chosen, candidates, "round robin")


class LeastLoadedPolicy(Policy):
    name = "least-loaded"
    description = "fewest requests in flight per replica"

    def choose(self, ctx: RoutingContext) -> Decision:
        candidates = evaluate(ctx)
        if not candidates:
            return no_backend(ctx, "no healthy backend")
        inflight = {b.id: len(b.load.running) + len(b.load.waiting) for b in ctx.backends}
        chosen = min(candidates, key=lambda c: (inflight[c.backend_id], c.cost_usd))
        return decide(chosen, candidates, f"least loaded ({inflight[chosen.backend_id]} in flight)")


class FastestPolicy(Policy):
    name = "fastest"
    description = "lowest predicted E2E"

    def choose(self, ctx: RoutingContext) -> Decision:
        candidates = evaluate(ctx)
        if not candidates:
            return no_backend(ctx, "no healthy backend")
        chosen = min(candidates, key=lambda c: (c.prediction.e2e_ms, c.cost_usd))
        return decide(chosen, candidates, "lowest predicted E2E")


class CheapestPolicy(Policy):
    name = "cheapest"
    description = "lowest expected cost, whatever the latency"

    def choose(self, ctx: RoutingContext) -> Decision:
        candidates = evaluate(ctx)
        if not candidates:
            return no_backend(ctx, "no healthy backend")
        chosen = min(candidates, key=lambda c: (c.cost_usd, c.prediction.e2e_ms))
        return decide(chosen, candidates, "lowest expected cost")
