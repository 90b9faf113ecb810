"""cost-slo (default): the cheapest backend predicted to meet the request's SLO; with a
routing table (a plan's split of each request bucket over the backends), the planned backend
while it meets the SLO."""

from __future__ import annotations

from typing import Any

from backends.errors import ConfigError
from serving.policies.base import (
    Candidate,
    Decision,
    Policy,
    RoutingContext,
    candidate,
    decide,
    evaluate,
    no_backend,
)
from serving.policies.routing_table import RoutingTable


class CostSloPolicy(Policy):
    """Among backends whose predicted TTFT, TPOT and E2E (times `safety_margin`) meet the SLO,
    and where the requests already running keep theirs, the lowest expected cost; ties go to
    the lowest predicted E2E. If none meets it, the fallback: `fastest` serves on the lowest
    predicted E2E and flags the response, `reject` refuses the request (HTTP 429).

    With `routing_table` (serving/policies/routing_table.py, written by `costroute plan`), a
    request of a planned bucket goes to the bucket's backends in the planned proportions
    (smooth weighted round robin per bucket: exact shares over any window, no randomness, the
    same live and in the simulator). When the latency model says the planned backend would
    miss the SLO, the cheapest other planned backend of the bucket that meets it; if none
    does, with `spill: planned` (default) the fastest planned backend (flagged as an SLO
    risk), with `spill: any` the cheapest backend that meets it (else the fallback). A
    request in no row (or whose planned backends are all down) is routed as without a table.

    Why `planned` by default: a request sent off plan lands on a replica sized for other
    buckets and delays the requests planned there. On the planning example (chat/document
    mix, 1 MI300X + 15 npu-x, 300 simulated seconds) `any` reached 86.2% attainment, the
    document spill-over swamping the MI300X's chats; `planned` reached 99.7%."""

    name = "cost-slo"
    description = "cheapest backend predicted to meet the SLO (following a plan's split if given)"

    def __init__(self, **params: Any) -> None:
        # safety_margin (default 1.0) is read from **params rather than named in the
        # signature: mypyc cannot compile a default argument before **params.
        safety_margin = params.pop("safety_margin", 1.0)
        table = params.pop("routing_table", None)
        spill = params.pop("spill", "planned")
        super().__init__(**params)
        if spill not in ("planned", "any"):
            raise ConfigError(f"spill must be 'planned' or 'any', got {spill!r}",
                              "policy.params.spill")
        self.spill_any = spill == "any"
        if not isinstance(safety_margin, (int, float)) or safety_margin <= 0:
            raise ConfigError(f"safety_margin must be a number > 0, got {safety_margin!r}",
                              "policy.params.safety_margin")
        self.safety_margin = float(safety_margin)
        self.table: RoutingTable | None = None
        self._credit: list[list[float]] = []
        self.follow(table)

    def follow(self, routing_table: list[dict[str, Any]] | None) -> None:
        self.table = None if routing_table is None else RoutingTable.parse(routing_table)
        # Per row: the smooth weighted round robin's running credit of each backend.
        self._credit = ([] if self.table is None
                        else [[0.0] * len(r.backends) for r in self.table.rows])

    def choose(self, ctx: RoutingContext) -> Decision:
        if self.table is not None:
            row = self.table.match(ctx.slo_class, ctx.request.prompt_tokens,
                                   ctx.request.output_tokens)
            if row >= 0:
                return self._planned(ctx, row)
        return self._cheapest(ctx, evaluate(ctx, self.safety_margin), "")

    def _cheapest(self, ctx: RoutingContext, candidates: list[Candidate], why: str) -> Decision:
        if not candidates:
            return no_backend(ctx, "no healthy backend")
        best: Candidate | None = None
        meeting = 0
        for c in candidates:  # a loop, not min(key=...): the router's hot path, compiled
            if not c.misses:
                meeting += 1
                if best is None or c.cost_usd < best.cost_usd or (
                        c.cost_usd == best.cost_usd
                        and c.prediction.e2e_ms < best.prediction.e2e_ms):
                    best = c
        if best is not None:
            return decide(best, candidates, f"{why}cheapest of {meeting} meeting the SLO",
                          "costs more")
        fastest = min(candidates, key=lambda c: c.prediction.e2e_ms)
        if ctx.fallback == "reject":
            return Decision(None, fastest.prediction, 0.0,
                            f"{why}no backend is predicted to meet the SLO; rejected", True,
                            tuple((c.backend_id, "; ".join(c.misses)) for c in candidates))
        return decide(fastest, candidates, f"{why}no backend meets the SLO; fallback to the fastest")

    def _planned(self, ctx: RoutingContext, index: int) -> Decision:
        assert self.table is not None
        row = self.table.rows[index]
        credit = self._credit[index]
        views = {b.id: b for b in ctx.backends if b.healthy}
        total = 0.0
        pick = -1
        for i, (backend, weight) in enumerate(zip(row.backends, row.weights)):
            if backend not in views:
                continue
            credit[i] += weight
            total += weight
            if pick < 0 or credit[i] > credit[pick]:
                pick = i
        if pick < 0:  # none of the bucket's backends is healthy
            return self._cheapest(ctx, evaluate(ctx, self.safety_margin),
                                  f"{row.label()}: planned backends unhealthy; ")
        credit[pick] -= total
        chosen = candidate(ctx, views[row.backends[pick]], self.safety_margin)
        if not chosen.misses:
            return decide(chosen, [chosen], f"planned share of {row.label()}")
        # The others, in the fleet's order; the pick is not predicted twice.
        candidates = [chosen if b.id == chosen.backend_id else candidate(ctx, b, self.safety_margin)
                      for b in ctx.backends if b.healthy]
        planned = [c for c in candidates if c.backend_id in row.backends]
        meeting = [c for c in planned if not c.misses]
        if meeting:
            best = min(meeting, key=lambda c: (c.cost_usd, c.prediction.e2e_ms))
            return decide(best, candidates, f"{row.label()}: {chosen.backend_id} would miss "
                          f"({'; '.join(chosen.misses)}); cheapest other planned backend")
        if self.spill_any:
            return self._cheapest(ctx, candidates, f"{row.label()}: off plan ("
                                  f"{'; '.join(chosen.misses)} on {chosen.backend_id}); ")
        fastest = min(planned, key=lambda c: c.prediction.e2e_ms)
        return decide(fastest, candidates, f"{row.label()}: no planned backend is predicted to "
                      "meet the SLO; the fastest planned one")
