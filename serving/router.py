"""The router: the ingress's decision state, without Ray or FastAPI (synchronous).

It tokenizes, resolves the SLO, builds the policy's context from each backend's state, and
records what happened afterwards. The ingress (serving/app.py) does the I/O around it.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

from backends.intake import check_lengths
from backends.interface import SamplingParams
from profiles.latency import LatencyModel, RequestShape
from profiles.table import load_profile
from serving.config import FleetConfig, SloSpec
from serving.metrics import Metrics
from serving.policies import Decision, RoutingContext, Slo, make_policy
from serving.policies.base import pinned
from serving.scaling import (
    CostAwareScaler,
    CostAwareSettings,
    Replicas,
    ScaledBackend,
    ScalingDecision,
)
from serving.state import BackendState, OutputLengths


@dataclass(frozen=True)
class Routed:
    request_id: str
    prompt_token_ids: tuple[int, ...]
    sampling: SamplingParams
    shape: RequestShape
    slo: SloSpec
    slo_class: str | None
    decision: Decision


class Router:
    def __init__(self, config: FleetConfig, tokenizer: Any,
                 max_model_len: int, checksum: str | None = None) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.policy = make_policy(config.policy.name, config.policy.params)
        self.metrics = Metrics()
        self.lengths = OutputLengths(config.expected_output, config.expected_output_quantile)
        self.states: dict[str, BackendState] = {}
        for spec in config.backends:
            table = load_profile(spec.profile, model_checksum=checksum)
            self.states[spec.id] = BackendState(spec, LatencyModel(table))
        self._sequence = itertools.count()
        self._ids = itertools.count()
        self.scaler = (fleet_scaler(config, {k: s.model for k, s in self.states.items()})
                       if config.autoscaler is not None else None)
        self._table: list[dict[str, Any]] | None = None  # the scaler's routing table, followed

    def prepare(self, prompt: str | None, prompt_token_ids: tuple[int, ...] | None,
                max_tokens: int | None) -> tuple[tuple[int, ...], int]:
        """Tokenize and check the lengths; returns (ids, max_tokens)."""
        ids = tuple(prompt_token_ids) if prompt_token_ids is not None else tuple(
            self.tokenizer.encode(prompt or ""))
        if max_tokens is None:
            max_tokens = max(self.max_model_len - len(ids), 1)
        check_lengths(len(ids), max_tokens, self.max_model_len)
        return ids, max_tokens

    def route(self, ids: tuple[int, ...], sampling: SamplingParams, slo: SloSpec,
              slo_class: str | None, now: float | None = None, pin: str | None = None) -> Routed:
        """The policy's decision, or `pin`'s backend when the request names one."""
        now = time.monotonic() if now is None else now
        shape = RequestShape(len(ids), self.lengths.expected(sampling.max_tokens))
        if self.scaler is not None:
            self.scaler.arrive(now, slo_class, shape.prompt_tokens, shape.output_tokens)
        ctx = RoutingContext(
            request=shape,
            slo=Slo(slo.ttft_ms, slo.tpot_ms, slo.e2e_ms),
            backends=tuple(s.view(now) for s in self.states.values()),
            fallback=self.config.fallback,
            sequence=next(self._sequence),
            slo_class=slo_class,
        )
        decision = self.policy.choose(ctx) if pin is None else pinned(ctx, pin)
        rid = f"cr-{next(self._ids)}-{int(now * 1000) % 1_000_000}"
        return Routed(rid, ids, sampling, shape, slo, slo_class, decision)

    def replicas(self, counts: dict[str, tuple[int, int, int]]) -> None:
        """Backend id -> (starting, running, stopping) replicas, as Ray Serve reports them:
        the router spreads a backend's load over its running replicas, and one without any
        is unhealthy to it."""
        m = self.metrics
        for bid, (starting, running, stopping) in counts.items():
            if bid in self.states:
                self.states[bid].replicas = running
                for state, n in (("starting", starting), ("running", running),
                                 ("stopping", stopping)):
                    m.replicas.labels(bid, state).set(n)
                m.provisioned_usd_per_hour.labels(bid).set(
                    (starting + running + stopping) * self.states[bid].spec.usd_per_hour)

    def scale(self, now: float, counts: dict[str, tuple[int, int, int]]) -> ScalingDecision | None:
        """The autoscaler's decision for the replicas in `counts` (see `replicas`); the
        policy follows its routing table. None without an autoscaler."""
        self.replicas(counts)
        if self.scaler is None:
            return None
        seen = {bid: Replicas(*counts.get(bid, (0, s.replicas, 0)), len(s.tracker))
                for bid, s in self.states.items()}
        decision = self.scaler.decide(now, seen)
        for bid, n in decision.target.items():
            self.metrics.target_replicas.labels(bid).set(n)
        if decision.routing_table != self._table:
            self._table = decision.routing_table
            self.policy.follow(self._table)
        return decision

    def response_headers(self, routed: Routed) -> dict[str, str]:
        d = routed.decision
        headers = {"x-costroute-backend": d.backend_id or "",
                   "x-costroute-cost-usd": f"{d.cost_usd:.10f}"}
        if d.prediction is not None:
            headers["x-costroute-predicted-ttft-ms"] = f"{d.prediction.ttft_ms:.2f}"
            headers["x-costroute-predicted-tpot-ms"] = f"{d.prediction.tpot_ms:.3f}"
            headers["x-costroute-predicted-e2e-ms"] = f"{d.prediction.e2e_ms:.2f}"
        if d.slo_risk:
            headers["x-costroute-slo-risk"] = "true"
        return headers

    def started(self, routed: Routed, now: float) -> None:
        backend = routed.decision.backend_id
        assert backend is not None
        self.states[backend].started(routed.request_id, routed.shape, now, routed.slo.tpot_ms)
        self.metrics.inflight.labels(backend).inc()

    def tokens(self, routed: Routed, count: int) -> None:
        assert routed.decision.backend_id is not None
        self.states[routed.decision.backend_id].tokens(routed.request_id, count)

    def finished(self, routed: Routed, outcome: str, ttft_ms: float | None, e2e_ms: float | None,
                 completion_tokens: int, overhead_ms: float | None = None) -> None:
        backend = routed.decision.backend_id
        assert backend is not None
        tpot_ms = ((e2e_ms - ttft_ms) / (completion_tokens - 1)
                   if ttft_ms is not None and e2e_ms is not None and completion_tokens > 1
                   else None)
        ok = outcome == "ok"
        self.states[backend].finished(routed.request_id, routed.decision.prediction if ok else None,
                                      ttft_ms if ok else None, tpot_ms)
        if completion_tokens:
            self.lengths.observe(completion_tokens)
        m = self.metrics
        m.inflight.labels(backend).dec()
        m.requests.labels(backend, outcome).inc()
        m.expected_usd.labels(backend).inc(routed.decision.cost_usd)
        if overhead_ms is not None:
            m.overhead.labels(backend).observe(overhead_ms)
        if not ok or ttft_ms is None or e2e_ms is None:
            if routed.slo_class or not routed.slo.is_empty():
                m.slo.labels(routed.slo_class or "custom", backend, "false").inc()
            return
        m.ttft.labels(backend).observe(ttft_ms)
        m.e2e.labels(backend).observe(e2e_ms)
        if tpot_ms is not None:
            m.tpot.labels(backend).observe(tpot_ms)
        p = routed.decision.prediction
        if p is not None:
            m.prediction_error.labels(backend, "ttft").observe(p.ttft_ms / max(ttft_ms, 1e-6))
            if tpot_ms:
                m.prediction_error.labels(backend, "tpot").observe(p.tpot_ms / tpot_ms)
        if routed.slo_class or not routed.slo.is_empty():
            s = routed.slo
            met = ((s.ttft_ms is None or ttft_ms <= s.ttft_ms)
                   and (s.tpot_ms is None or tpot_ms is None or tpot_ms <= s.tpot_ms)
                   and (s.e2e_ms is None or e2e_ms <= s.e2e_ms))
            m.slo.labels(routed.slo_class or "custom", backend, str(met).lower()).inc()


def fleet_scaler(config: FleetConfig, models: dict[str, LatencyModel]) -> CostAwareScaler:
    """The fleet's cost-aware autoscaler (its `autoscaler` block) over its backends, each
    with its profile in `models`; backends without `autoscaling` keep their replicas (min =
    max). The ingress and `costroute simulate` build it alike."""
    spec = config.autoscaler
    assert spec is not None
    backends = []
    for b in config.backends:
        a = b.autoscaling
        lo, hi = (a.min_replicas, a.max_replicas) if a is not None else (b.replicas,) * 2
        backends.append(ScaledBackend(b.id, b.usd_per_hour, models[b.id], lo, hi,
                                      a.startup_s if a is not None else 0.0))
    slos: dict[str | None, dict[str, float]] = {
        name: slo.model_dump(exclude_none=True) for name, slo in config.slo_classes.items()}
    settings = CostAwareSettings(
        interval_s=spec.interval_s, halflife_s=spec.halflife_s,
        trend_halflife_s=spec.trend_halflife_s, noise_z=spec.noise_z, margin=spec.margin,
        downscale_hold_s=spec.downscale_hold_s, follow_plan=spec.follow_plan)
    return CostAwareScaler(backends, slos, settings)
