"""cost-slo (default): the cheapest backend predicted to meet the request's SLO."""

from __future__ import annotations

from typing import Any

from backends.errors import ConfigError
from serving.policies.base import Decision, Policy, RoutingContext, decide, evaluate, no_backend


class CostSloPolicy(Policy):
    """Among backends whose predicted TTFT, TPOT and E2E (times `safety_margin`) meet the SLO,
    the lowest expected cost; ties go to the lowest predicted E2E. If none meets it, the
    fallback: `fastest` serves on the lowest predicted E2E and flags the response, `reject`
    refuses the request (HTTP 429)."""

    name = "cost-slo"
    description = "cheapest backend predicted to meet the SLO"

    def __init__(self, **params: Any) -> None:
        # safety_margin (default 1.0) is read from **params rather than named in the
        # signature: mypyc cannot compile a default argument before **params.
        safety_margin = params.pop("safety_margin", 1.0)
        super().__init__(**params)
        if not isinstance(safety_margin, (int, float)) or safety_margin <= 0:
            raise ConfigError(f"safety_margin must be a number > 0, got {safety_margin!r}",
                              "policy.params.safety_margin")
        self.safety_margin = float(safety_margin)

    def choose(self, ctx: RoutingContext) -> Decision:
        candidates = evaluate(ctx, self.safety_margin)
        if not candidates:
            return no_backend(ctx, "no healthy backend")
        meeting = [c for c in candidates if not c.misses]
        if meeting:
            best = min(meeting, key=lambda c: (c.cost_usd, c.prediction.e2e_ms))
            cheaper = {c.backend_id: "costs more" for c in meeting}
            return decide(best, candidates, f"cheapest of {len(meeting)} meeting the SLO",
                          cheaper)
        fastest = min(candidates, key=lambda c: c.prediction.e2e_ms)
        if ctx.fallback == "reject":
            return Decision(None, fastest.prediction, 0.0,
                            "no backend is predicted to meet the SLO; rejected", True,
                            tuple((c.backend_id, "; ".join(c.misses)) for c in candidates))
        return decide(fastest, candidates, "no backend meets the SLO; fallback to the fastest")
