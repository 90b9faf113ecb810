"""The simulator's scaling loop (pure): start-up delay, drain, zero replicas, provisioned cost
over time, and the cost-aware policy against a fleet sized for the peak."""

from __future__ import annotations

from collections.abc import Mapping

from loadtest.simulator import SimBackend, Simulation
from loadtest.workload import parse_workload
from profiles.latency import LatencyModel
from serving.policies import make_policy
from serving.scaling import (
    Autoscaler,
    CostAwareScaler,
    CostAwareSettings,
    Replicas,
    ScaledBackend,
    ScalingDecision,
)
from tests.profiles.synthetic import synthetic_profile

MODEL = LatencyModel(synthetic_profile(max_num_seqs=8))


class Scripted(Autoscaler):
    """Targets by time: [(from_s, {backend: replicas}), ...]; records what it saw."""

    def __init__(self, script: list[tuple[float, dict[str, int]]], interval_s: float = 1.0):
        self.script, self.interval_s = script, interval_s
        self.seen: list[tuple[float, dict[str, Replicas]]] = []

    def decide(self, now: float, replicas: Mapping[str, Replicas]) -> ScalingDecision:
        self.seen.append((now, dict(replicas)))
        target = {}
        for start, t in self.script:
            if now >= start:
                target = t
        return ScalingDecision(dict(target))


def spec(rate: float = 20.0, n: int = 1200, **arrival: object):  # type: ignore[no-untyped-def]
    return parse_workload({
        "arrival": {"process": "poisson", "rate_rps": rate, **arrival},
        "mix": [{"prompt_tokens": {"mean": 64}, "output_tokens": {"mean": 16}}],
        "num_requests": n, "seed": 3})


def test_a_new_replica_serves_only_after_its_start_up() -> None:
    backends = [SimBackend("a", MODEL, 1.0, 1), SimBackend("b", MODEL, 2.0, 0, startup_s=20.0)]
    scaler = Scripted([(10.0, {"a": 1, "b": 1})])
    sim = Simulation(backends, make_policy("least-loaded"), spec(), scaler=scaler)
    records = sim.run()
    on_b = [r.sent_s for r in records if r.backend == "b"]
    assert on_b and min(on_b) >= 30.0  # ordered at 10 s, up at 30 s
    assert all(r.ok for r in records)
    at_20 = next(seen for t, seen in scaler.seen if t >= 20.0)
    assert at_20["b"] == Replicas(starting=1, ready=0, draining=0, ongoing=0)
    # billed from the order: b's replica from 10 s to the end
    end = max(r.sent_s + r.done_s for r in records)
    usd = sim.provisioned_usd(0.0, end)
    assert abs(usd["b"] - 2.0 * (end - 10.0) / 3600) < 1e-9
    assert abs(usd["a"] - 1.0 * end / 3600) < 1e-9


def test_a_draining_replica_loses_no_request_and_stops_billing() -> None:
    backends = [SimBackend("a", MODEL, 1.0, 4)]
    scaler = Scripted([(0.0, {"a": 4}), (15.0, {"a": 1})])
    sim = Simulation(backends, make_policy("round-robin"), spec(rate=30.0, n=1500), scaler=scaler)
    records = sim.run()
    assert all(r.ok and r.completion_tokens == r.planned_output_tokens for r in records)
    gone = [r for r in sim.replicas[0] if r.state == "gone"]
    assert len(gone) == 3
    assert all(r.down_s is not None and r.down_s >= 15.0 for r in gone)
    end = max(r.sent_s + r.done_s for r in records)
    # three replicas billed until they drained (a few ms after 15 s), one to the end
    assert sim.provisioned_usd(0.0, end)["a"] < (15.5 * 4 + (end - 15.5)) / 3600


def test_zero_replicas_send_requests_elsewhere() -> None:
    backends = [SimBackend("cheap", MODEL, 1.0, 0, startup_s=5.0),
                SimBackend("dear", MODEL, 3.0, 1)]
    scaler = Scripted([(0.0, {"cheap": 0, "dear": 1}), (10.0, {"cheap": 2, "dear": 1})])
    records = Simulation(backends, make_policy("cost-slo"), spec(), scaler=scaler).run()
    assert all(r.ok for r in records)
    early = {r.backend for r in records if r.sent_s < 15.0}
    late = {r.backend for r in records if r.sent_s > 20.0}
    assert early == {"dear"} and "cheap" in late


def test_cost_aware_scaling_follows_a_daily_shape_for_less_than_its_peak() -> None:
    # 4 req/s, up to 40 at 60 s, back to 4 at 120 s, quiet to 180 s; two days
    day = {"rate_curve": [[0, 0.1], [60, 1.0], [120, 0.1]], "period_s": 180}
    slo = {"tpot_ms": 6.0}
    workload = parse_workload({
        "arrival": {"process": "poisson", "rate_rps": 40.0, **day}, "slo_classes": {"i": slo},
        "mix": [{"prompt_tokens": {"mean": 256}, "output_tokens": {"mean": 128},
                 "slo_class": "i"}], "num_requests": 5700, "seed": 3})
    backends = [SimBackend("a", MODEL, 1.0, 1, startup_s=5.0)]
    scaled = [ScaledBackend("a", 1.0, MODEL, min_replicas=1, startup_s=5.0)]
    settings = CostAwareSettings(interval_s=5.0, halflife_s=5.0, trend_halflife_s=10.0,
                                 downscale_hold_s=20.0)
    sim = Simulation(backends, make_policy("cost-slo"), workload,
                     scaler=CostAwareScaler(scaled, {"i": slo}, settings))
    records = sim.run()
    assert all(r.ok for r in records)
    peak = max(t["a"] for _, t, _ in sim.scaling)
    quiet = [t["a"] for at, t, _ in sim.scaling if 170 <= at < 180]
    assert peak > 2 and max(quiet) < peak  # grew for the peak, shrank after it
    end = max(r.sent_s + r.done_s for r in records)
    assert sim.provisioned_usd(0.0, end)["a"] < 0.8 * peak * end / 3600
