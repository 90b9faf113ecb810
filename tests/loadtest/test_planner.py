"""The fleet planner (pure): the integer program finds the known optimum of small
hand-made catalogues; capacities follow the SLO; buckets keep the workload's rate."""

from __future__ import annotations

import pytest

from loadtest.planner import buckets, plan
from loadtest.workload import parse_workload
from profiles.latency import LatencyModel
from serving.sizing import Bucket, Offer, capacity_rps, solve
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


# ---- routing table, calibration, throughput tables --------------------------------------

CHAT = Bucket("chat p0-128 o0-64", "chat", {"ttft_ms": 100.0, "tpot_ms": 8.0}, 64, 32, 1.0, 0.5, 0, 0, (0, 128),
              (0, 64), ((64, 32),) * 10)
DOC = Bucket("doc p512-inf o0-64", "doc", {"ttft_ms": 2000.0}, 1000, 16, 1.0, 0.5, 1, 0,
             (512, None), (0, 64), ((1000, 16),) * 10)


def test_a_plans_split_becomes_the_policys_routing_table() -> None:
    from serving.policies.routing_table import RoutingTable
    from serving.sizing import Plan, routing_table

    p = Plan({"a": 1, "b": 1}, 2.0, {CHAT.label: {"a": 0.25, "b": 0.75}, DOC.label: {"b": 1.0}},
             "optimal")
    rows = routing_table([CHAT, DOC], p)
    assert rows[0] == {"slo_class": "chat", "prompt_tokens": [0, 128], "output_tokens": [0, 64],
                       "shares": {"a": 0.25, "b": 0.75}}
    table = RoutingTable.parse(rows)
    assert table.match("doc", 5000, 10) == 1 and table.match("doc", 100, 10) == -1


def test_calibrated_capacity_is_the_highest_rate_meeting_the_target() -> None:
    from loadtest.planner import attainment_at, calibrated_capacity

    cap = calibrated_capacity(MODEL, [(CHAT, 1.0)], 0.99, guess=capacity_rps(MODEL, CHAT))
    assert cap > 0
    assert attainment_at(MODEL, [(CHAT, 1.0)], cap) >= 0.99
    assert attainment_at(MODEL, [(CHAT, 1.0)], cap * 1.5) < 0.99
    # deterministic, and tighter targets hold less
    assert calibrated_capacity(MODEL, [(CHAT, 1.0)], 0.99, capacity_rps(MODEL, CHAT)) == cap
    tight = Bucket(**{**CHAT.__dict__, "slo": {"ttft_ms": 100.0, "tpot_ms": 4.5}})
    assert calibrated_capacity(MODEL, [(tight, 1.0)], 0.99, capacity_rps(MODEL, tight)) < cap
    # a request that misses alone: no capacity
    hopeless = Bucket(**{**CHAT.__dict__, "slo": {"tpot_ms": 0.1}})
    assert calibrated_capacity(MODEL, [(hopeless, 1.0)], 0.99, 1.0) == 0.0


def test_long_prefills_make_a_shared_replica_hold_less_than_its_buckets_apart() -> None:
    from loadtest.planner import linear_rate, mix_factor

    isolated = {b.label: calibrated for b, calibrated in (
        (CHAT, _cal(CHAT)), (DOC, _cal(DOC)))}
    alone = mix_factor(MODEL, [(CHAT, 1.0)], isolated, 0.99)
    shared = mix_factor(MODEL, [(CHAT, 1.0), (DOC, 1.0)], isolated, 0.99)
    assert shared < alone
    assert 0 < linear_rate([(CHAT, 1.0), (DOC, 1.0)], isolated) < isolated[CHAT.label]


def _cal(b: Bucket) -> float:
    from loadtest.planner import calibrated_capacity

    return calibrated_capacity(MODEL, [(b, 1.0)], 0.99, capacity_rps(MODEL, b), horizon_s=15)


def test_throughput_tables_are_planned_on_as_given() -> None:
    """Mélange's public example: its solver's answers at 5 and 120 req/s, and a mix at 30."""
    small = Offer("a10g", None, 1.01, throughput={"*": ((2, 1), (5, 2))})
    big = Offer("a100", None, 3.67, throughput={"*": ((20, 20), (40, 20))})
    shares = ((0.2, 0.1), (0.5, 0.2))

    def bs(rate: float) -> list[Bucket]:
        return [Bucket(f"p{i}o{j}", None, {}, 1, 1, rate * shares[i][j], shares[i][j], i, j)
                for i in range(2) for j in range(2)]

    for rate, replicas, usd in ((5, {"a10g": 2}, 2.02), (30, {"a10g": 1, "a100": 1}, 4.68),
                                (120, {"a100": 5}, 18.35)):
        p = plan(bs(rate), [small, big])
        assert p.best.replicas == replicas and p.best.usd_per_hour == pytest.approx(usd)


def test_miss_budget_is_the_most_misses_that_keep_the_target() -> None:
    from loadtest.simulator import miss_budget

    assert miss_budget(100, 0.99) == 1 and miss_budget(1000, 0.99) == 10
    assert miss_budget(7, 1.0) == 0 and miss_budget(50, 0.5) == 25
    for n in (1, 3, 99, 101, 977):
        for target in (0.5, 0.9, 0.95, 0.99, 0.995):
            k = miss_budget(n, target)
            assert (n - k) / n >= target and (k == n or (n - k - 1) / n < target)


@pytest.mark.parametrize("factor", [0.5, 1.0, 1.6, 4.0])
def test_stopping_at_the_miss_budget_gives_the_full_runs_verdict(factor: float) -> None:
    """An overloaded run stops early, and its bound is below the target exactly when the
    full run's attainment is."""
    from loadtest.planner import attainment_at

    rate = factor * capacity_rps(MODEL, CHAT)
    full = attainment_at(MODEL, [(CHAT, 1.0)], rate)
    verdict = attainment_at(MODEL, [(CHAT, 1.0)], rate, target=0.99)
    assert (full >= 0.99) == (verdict >= 0.99)
    if full >= 0.99:
        assert verdict == full
    else:
        assert full <= verdict < 0.99
