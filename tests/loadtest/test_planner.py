"""The fleet planner (pure): the integer program finds the known optimum of small
hand-made catalogues; capacities follow the SLO; buckets keep the workload's rate."""

from __future__ import annotations

import pytest

from loadtest.planner import Bucket, Offer, buckets, capacity_rps, plan, solve
from loadtest.workload import parse_workload
from profiles.latency import LatencyModel
from tests.profiles.synthetic import synthetic_profile

MODEL = LatencyModel(synthetic_profile(max_num_seqs=8))


def offer(oid: str, price: float, max_replicas: int | None = None) -> Offer:
    return Offer(oid, MODEL, price, max_replicas)


def bucket(label: str, rate: float) -> Bucket:
    return Bucket(label, None, {}, 64, 16, rate, 1.0)


@pytest.mark.parametrize(("rate", "replicas", "usd"), [
    (35.0, {"big": 1}, 3.0),             # one big (40 rps) beats four small (10 rps each)
    (45.0, {"big": 1, "small": 1}, 4.0),  # a mix beats 2 big ($6) and 5 small ($5)
    (8.0, {"small": 1}, 1.0),
])
def test_the_ilp_finds_the_cheapest_mix(rate: float, replicas: dict[str, int], usd: float) -> None:
    offers = [offer("small", 1.0), offer("big", 3.0)]
    cap = {"b": {"small": 10.0, "big": 40.0}}
    p = solve([bucket("b", rate)], offers, cap)
    assert (p.status, p.replicas, p.usd_per_hour) == ("optimal", replicas, usd)
    assert sum(p.assignment["b"].values()) == pytest.approx(1.0)


def test_buckets_go_where_they_can_be_served() -> None:
    # "long" requests only fit on big; "short" ones are cheapest on small
    offers = [offer("small", 1.0), offer("big", 3.0)]
    cap = {"short": {"small": 10.0, "big": 20.0}, "long": {"small": 0.0, "big": 5.0}}
    p = solve([bucket("short", 20.0), bucket("long", 5.0)], offers, cap)
    assert p.replicas == {"small": 2, "big": 1} and p.usd_per_hour == 5.0
    assert p.assignment["long"] == {"big": pytest.approx(1.0)}


def test_max_replicas_and_infeasible() -> None:
    cap = {"b": {"small": 10.0, "big": 40.0}}
    p = solve([bucket("b", 35.0)], [offer("small", 1.0), offer("big", 3.0, max_replicas=0)], cap)
    assert p.replicas == {"small": 4}
    none = solve([bucket("b", 5.0)], [offer("small", 1.0)], {"b": {"small": 0.0}})
    assert none.status == "infeasible" and "b" in none.note


def test_capacity_follows_the_slo() -> None:
    b = Bucket("x", "i", {"tpot_ms": 8.0}, 64, 32, 1.0, 1.0)
    loose = capacity_rps(MODEL, b)
    tight = capacity_rps(MODEL, Bucket("x", "i", {"tpot_ms": 4.0}, 64, 32, 1.0, 1.0))
    assert loose > tight > 0
    assert capacity_rps(MODEL, Bucket("x", "i", {"tpot_ms": 0.1}, 64, 32, 1.0, 1.0)) == 0.0
    # no SLO: the batch-slot limit (Little's law) still bounds it
    free = capacity_rps(MODEL, Bucket("x", None, {}, 64, 32, 1.0, 1.0))
    assert free >= loose and free < 1e3


def test_buckets_keep_the_rate_and_the_plan_is_consistent() -> None:
    spec = parse_workload({
        "arrival": {"rate_rps": 20.0},
        "slo_classes": {"i": {"ttft_ms": 400, "tpot_ms": 10}, "r": {"e2e_ms": 20000}},
        "mix": [{"name": "chat", "share": 0.7, "prompt_tokens": {"dist": "lognormal", "mean": 100},
                 "output_tokens": {"mean": 50}, "slo_class": "i"},
                {"name": "doc", "share": 0.3, "prompt_tokens": {"mean": 900},
                 "output_tokens": {"mean": 20}, "slo_class": "r"}],
        "num_requests": 100})
    bs = buckets(spec, samples=5000)
    assert sum(b.rate_rps for b in bs) == pytest.approx(20.0)
    assert {b.slo_class for b in bs} == {"i", "r"}
    offers = [Offer("cheap", LatencyModel(synthetic_profile(step_base_ms=6.0, max_num_seqs=8)), 0.5),
              Offer("fast", MODEL, 2.0)]
    result = plan(bs, offers)
    assert result.best.status == "optimal"
    homo = result.cheapest_homogeneous()
    assert homo is not None and result.best.usd_per_hour <= homo.usd_per_hour
