"""cost-slo with a plan's routing table, and feasibility that counts the requests already
running (pure: plain data, no clock)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from backends.errors import ConfigError
from loadtest.simulator import SimBackend, simulate
from loadtest.workload import parse_workload
from profiles.latency import BackendLoad, LatencyModel, RequestShape, RunningSeq
from serving.config import parse_fleet_config
from serving.policies import BackendView, RoutingContext, Slo, make_policy
from serving.policies.routing_table import RoutingTable
from tests.profiles.synthetic import synthetic_profile

ROOT = Path(__file__).parents[2]
FAST = LatencyModel(synthetic_profile(0.01, 1.0, 0.05, 0.1, backend_id="fast"))
MEDIUM = LatencyModel(synthetic_profile(0.03, 3.0, 0.2, 0.3, backend_id="medium"))
SLOW = LatencyModel(synthetic_profile(0.08, 8.0, 0.5, 0.8, backend_id="slow"))
MODELS = {"fast": FAST, "medium": MEDIUM, "slow": SLOW}
PRICES = {"fast": 4.0, "medium": 1.0, "slow": 0.2}
CHAT = RequestShape(64, 32)
DOC = RequestShape(900, 32)


def table(*rows: dict) -> list[dict]:  # type: ignore[type-arg]
    return list(rows)


CHAT_ROW = {"slo_class": "chat", "prompt_tokens": [0, 512], "output_tokens": [0, None],
            "shares": {"medium": 0.7, "slow": 0.3}}


def views(loads: dict[str, BackendLoad] | None = None,
          unhealthy: tuple[str, ...] = ()) -> tuple[BackendView, ...]:
    loads = loads or {}
    return tuple(BackendView(b, PRICES[b], m, loads.get(b, BackendLoad()), healthy=b not in unhealthy)
                 for b, m in MODELS.items())


NO_SLO = Slo()


def ctx(request: RequestShape = CHAT, slo: Slo = NO_SLO, slo_class: str | None = "chat",
        backends: tuple[BackendView, ...] | None = None) -> RoutingContext:
    return RoutingContext(request, slo, backends or views(), "fastest", 0, slo_class)


def test_the_planned_shares_are_followed_when_every_planned_backend_meets_the_slo() -> None:
    policy = make_policy("cost-slo", {"routing_table": table(CHAT_ROW)})
    picks = Counter(policy.choose(ctx()).backend_id for _ in range(1000))
    # smooth weighted round robin: the exact shares over any 10 consecutive requests
    assert picks == {"medium": 700, "slow": 300}
    window = [policy.choose(ctx()).backend_id for _ in range(10)]
    assert window.count("medium") == 7
    # without the table, cost-slo sends everything to the cheapest (slow)
    assert {make_policy("cost-slo").choose(ctx()).backend_id for _ in range(20)} == {"slow"}


def test_a_request_outside_every_row_is_routed_as_without_a_table() -> None:
    policy = make_policy("cost-slo", {"routing_table": table(CHAT_ROW)})
    for c in (ctx(slo_class="other"), ctx(slo_class=None), ctx(DOC)):
        d = policy.choose(c)
        assert d.backend_id == "slow" and "cheapest of 3" in d.reason


def test_spill_over_to_another_planned_backend_then_off_plan() -> None:
    policy = make_policy("cost-slo", {"routing_table": table(CHAT_ROW)})
    slow_e2e = SLOW.predict(CHAT, BackendLoad()).e2e_ms
    medium_e2e = MEDIUM.predict(CHAT, BackendLoad()).e2e_ms
    # slow misses: every request goes to medium, the other planned backend
    tight = Slo(e2e_ms=(slow_e2e + medium_e2e) / 2)
    decisions = [policy.choose(ctx(slo=tight)) for _ in range(10)]
    assert {d.backend_id for d in decisions} == {"medium"}
    assert any("cheapest other planned backend" in d.reason for d in decisions)
    assert not any(d.slo_risk for d in decisions)
    # neither planned backend meets it: the fastest planned one, flagged (spill: planned)...
    tighter = Slo(e2e_ms=(medium_e2e + FAST.predict(CHAT, BackendLoad()).e2e_ms) / 2)
    d = policy.choose(ctx(slo=tighter))
    assert d.backend_id == "medium" and d.slo_risk
    # ...or the cheapest that meets it, off plan (spill: any)
    anywhere = make_policy("cost-slo", {"routing_table": table(CHAT_ROW), "spill": "any"})
    d = anywhere.choose(ctx(slo=tighter))
    assert d.backend_id == "fast" and "off plan" in d.reason and not d.slo_risk
    # a planned backend that is down is skipped; its share goes to the others of the row
    assert {policy.choose(ctx(backends=views(unhealthy=("medium",)))).backend_id
            for _ in range(10)} == {"slow"}


def test_a_request_that_would_push_a_running_request_past_its_slo_is_not_placed_there() -> None:
    running = tuple(RunningSeq(300, 40) for _ in range(4))
    busy = BackendLoad(running=running)
    now = SLOW.predict(CHAT, busy)
    after = SLOW.others_tpot_ms(CHAT, busy)
    step_now = SLOW.decode_step_ms(4, 300)[0]
    assert after > step_now  # a fifth sequence and its prefill slow the four down
    newcomer = Slo(e2e_ms=now.e2e_ms * 10)  # the newcomer itself is fine on slow
    policy = make_policy("cost-slo")
    # the running requests' target sits between their TPOT now and after the newcomer joins
    limit = (step_now + after) / 2
    crowded = views({"slow": busy._replace(tightest_tpot_ms=limit)})
    d = policy.choose(ctx(slo=newcomer, backends=crowded, slo_class=None))
    assert d.backend_id == "medium"
    assert "others' tpot" in dict(d.rejected)["slow"]
    # with a looser target among them (or none), slow takes it again
    for load in (busy._replace(tightest_tpot_ms=after * 1.01), busy):
        d = policy.choose(ctx(slo=newcomer, backends=views({"slow": load}), slo_class=None))
        assert d.backend_id == "slow"
    # the planned path checks it too: slow is picked first, and passed over
    planned = make_policy("cost-slo", {"routing_table": table(
        {**CHAT_ROW, "shares": {"slow": 0.9, "medium": 0.1}})})
    d = planned.choose(ctx(slo=newcomer, backends=crowded))
    assert d.backend_id == "medium" and "slow would miss (others' tpot" in d.reason


def test_the_cost_counts_the_replica_time_taken_from_the_others() -> None:
    busy = BackendLoad(running=tuple(RunningSeq(300, 40) for _ in range(4)))
    c = make_policy("cost-slo").choose(ctx(backends=views({"slow": busy}), slo_class=None))
    p = SLOW.predict(CHAT, busy)
    from profiles.cost import request_cost_usd

    assert p.others_delay_ms > 0
    assert c.cost_usd == pytest.approx(request_cost_usd(p.replica_ms + p.others_delay_ms / 5, 0.2))


@pytest.mark.parametrize(("raw", "field"), [
    ([], "policy.params.routing_table"),
    ([{"shares": {}}], "policy.params.routing_table[0].shares"),
    ([{"shares": {"a": -1}}], "policy.params.routing_table[0].shares.a"),
    ([{"shares": {"a": 0}}], "policy.params.routing_table[0].shares"),
    ([{"shares": {"a": 1}, "prompt_tokens": [10, 5]}], "policy.params.routing_table[0].prompt_tokens"),
    ([{"shares": {"a": 1}, "output_tokens": "all"}], "policy.params.routing_table[0].output_tokens"),
    ([{"shares": {"a": 1}, "bucket": 1}], "policy.params.routing_table[0]"),
])
def test_a_bad_routing_table_names_the_field(raw: list, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as err:
        make_policy("cost-slo", {"routing_table": raw})
    assert err.value.field == field


def test_the_fleet_config_refuses_a_table_that_names_an_unknown_backend() -> None:
    measured = str(ROOT / "profiles" / "tables" / "cpu-onnxruntime.json")
    raw = {"policy": {"name": "cost-slo", "params": {"routing_table": [
               {"slo_class": None, "shares": {"x": 1, "nope": 1}}]}},
           "backends": [{"id": "x", "engine": "onnxruntime", "accelerator": "cpu",
                         "usd_per_hour": 1.0, "profile": measured}]}
    with pytest.raises(ConfigError, match="nope"):
        parse_fleet_config(raw)
    raw["policy"]["params"]["routing_table"][0]["shares"].pop("nope")  # type: ignore[index]
    parse_fleet_config(raw)


def test_the_table_round_trips_through_its_params_form() -> None:
    t = RoutingTable.parse(table(CHAT_ROW, {"slo_class": None, "shares": {"fast": 2}}))
    assert RoutingTable.parse(t.to_params()) == t
    assert t.match("chat", 100, 5) == 0 and t.match(None, 10_000, 10_000) == 1
    assert t.match("chat", 512, 5) == -1  # ranges are half-open


def test_the_simulator_and_the_live_router_follow_the_same_table() -> None:
    """One fleet config with a routing table; the live router's decisions (serving/router.py,
    which the ingress calls) and the simulator's follow the same split, request by request."""
    from backends.interface import SamplingParams
    from serving.config import SloSpec
    from serving.router import Router

    measured = str(ROOT / "profiles" / "tables" / "cpu-onnxruntime.json")
    row = {"slo_class": "chat", "prompt_tokens": [0, None], "output_tokens": [0, None],
           "shares": {"x": 0.25, "y": 0.75}}
    config = parse_fleet_config({
        "slo_classes": {"chat": {"e2e_ms": 1e6}},
        "policy": {"name": "cost-slo", "params": {"routing_table": [row]}},
        "backends": [{"id": i, "engine": "onnxruntime", "accelerator": "cpu",
                      "usd_per_hour": p, "profile": measured} for i, p in (("x", 1.0), ("y", 2.0))]})
    router = Router(config, tokenizer=None, max_model_len=2048)
    for state in router.states.values():
        state.healthy = True
    live = [router.route((1,) * 16, SamplingParams(max_tokens=8), SloSpec(e2e_ms=1e6), "chat",
                         now=float(i)).decision.backend_id for i in range(40)]
    spec = parse_workload({"arrival": {"process": "constant", "rate_rps": 0.5},
                           "mix": [{"prompt_tokens": {"mean": 16}, "output_tokens": {"mean": 8},
                                    "slo_class": "chat"}],
                           "slo_classes": {"chat": {"e2e_ms": 1e6}}, "num_requests": 40})
    model = LatencyModel(router.states["x"].model.profile)
    sim = simulate([SimBackend("x", model, 1.0), SimBackend("y", model, 2.0)],
                   make_policy(config.policy.name, config.policy.params), spec)
    assert [r.backend for r in sim] == live
    assert Counter(live) == {"x": 10, "y": 30}


def test_spill_must_be_planned_or_any() -> None:
    with pytest.raises(ConfigError) as err:
        make_policy("cost-slo", {"routing_table": table(CHAT_ROW), "spill": "nowhere"})
    assert err.value.field == "policy.params.spill"
