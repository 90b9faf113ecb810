"""Policies on plain data: SLO filtering, cost ordering, fallback, ties, baselines."""

from __future__ import annotations

import pytest

from backends.errors import ConfigError
from profiles.latency import BackendLoad, LatencyModel, RequestShape, RunningSeq
from serving.policies import BackendView, Policy, RoutingContext, Slo, make_policy
from tests.profiles.synthetic import synthetic_profile

# fast and dear, medium, slow and cheap
FAST = LatencyModel(synthetic_profile(0.01, 1.0, 0.05, 0.1, backend_id="fast"))
MEDIUM = LatencyModel(synthetic_profile(0.03, 3.0, 0.2, 0.3, backend_id="medium"))
SLOW = LatencyModel(synthetic_profile(0.08, 8.0, 0.5, 0.8, backend_id="slow"))
REQ = RequestShape(64, 32)


IDLE = BackendLoad()


def _views(load: BackendLoad = IDLE, **prices: float) -> tuple[BackendView, ...]:
    p = {"fast": 4.0, "medium": 1.0, "slow": 0.2, **prices}
    return (
        BackendView("fast", p["fast"], FAST, load),
        BackendView("medium", p["medium"], MEDIUM, load),
        BackendView("slow", p["slow"], SLOW, load),
    )


def _ctx(slo: Slo, backends=None, fallback="fastest", seq=0) -> RoutingContext:  # type: ignore[no-untyped-def]
    return RoutingContext(REQ, slo, backends or _views(), fallback, seq)


def _e2e(model: LatencyModel) -> float:
    return model.predict(REQ, BackendLoad()).e2e_ms


def test_registry_lists_every_policy() -> None:
    assert set(Policy.registry) >= {"cost-slo", "round-robin", "least-loaded", "fastest", "cheapest"}


def test_loose_slo_goes_to_the_cheapest() -> None:
    d = make_policy("cost-slo").choose(_ctx(Slo(e2e_ms=10 * _e2e(SLOW))))
    assert d.backend_id == "slow" and not d.slo_risk
    assert {b for b, _ in d.rejected} == {"fast", "medium"}


def test_tight_slo_filters_out_the_slow_backends() -> None:
    slo = Slo(e2e_ms=(_e2e(FAST) + _e2e(MEDIUM)) / 2)
    d = make_policy("cost-slo").choose(_ctx(slo))
    assert d.backend_id == "fast" and not d.slo_risk
    why = dict(d.rejected)
    assert "e2e" in why["medium"] and "e2e" in why["slow"]


def test_tight_ttft_and_tpot_targets_are_each_checked() -> None:
    ttft_fast = FAST.predict(REQ, BackendLoad()).ttft_ms
    assert make_policy("cost-slo").choose(_ctx(Slo(ttft_ms=ttft_fast * 1.01))).backend_id == "fast"
    tpot_medium = MEDIUM.predict(REQ, BackendLoad()).tpot_ms
    assert make_policy("cost-slo").choose(_ctx(Slo(tpot_ms=tpot_medium * 1.01))).backend_id == "medium"


def test_cost_ordering_follows_prices() -> None:
    views = _views(fast=0.01)  # the fast backend is now also the cheapest
    d = make_policy("cost-slo").choose(_ctx(Slo(e2e_ms=1e9), views))
    assert d.backend_id == "fast"


def test_tie_on_cost_goes_to_the_lowest_e2e() -> None:
    views = _views(fast=0.0, medium=0.0, slow=0.0)
    assert make_policy("cost-slo").choose(_ctx(Slo(), views)).backend_id == "fast"


def test_load_moves_traffic_off_a_busy_backend() -> None:
    busy = BackendLoad(running=tuple(RunningSeq(500, 400) for _ in range(8)))
    views = (
        BackendView("fast", 4.0, FAST, BackendLoad()),
        BackendView("slow", 0.2, SLOW, busy),  # full: a new request queues for ~400 steps
    )
    slo = Slo(ttft_ms=1000)
    d = make_policy("cost-slo").choose(_ctx(slo, views))
    assert d.backend_id == "fast"
    assert "ttft" in dict(d.rejected)["slow"]


def test_fallback_fastest_flags_the_risk() -> None:
    d = make_policy("cost-slo").choose(_ctx(Slo(e2e_ms=0.001)))
    assert d.backend_id == "fast" and d.slo_risk


def test_fallback_reject() -> None:
    d = make_policy("cost-slo").choose(_ctx(Slo(e2e_ms=0.001), fallback="reject"))
    assert d.backend_id is None and d.slo_risk and len(d.rejected) == 3


def test_safety_margin_makes_the_policy_stricter() -> None:
    slo = Slo(e2e_ms=_e2e(SLOW) * 1.1)
    assert make_policy("cost-slo").choose(_ctx(slo)).backend_id == "slow"
    strict = make_policy("cost-slo", {"safety_margin": 1.5}).choose(_ctx(slo))
    assert strict.backend_id != "slow"


def test_unhealthy_backends_are_skipped() -> None:
    views = list(_views())
    views[2] = BackendView("slow", 0.2, SLOW, BackendLoad(), healthy=False)
    d = make_policy("cost-slo").choose(_ctx(Slo(e2e_ms=1e9), tuple(views)))
    assert d.backend_id == "medium"


def test_baselines() -> None:
    ctx = _ctx(Slo(e2e_ms=1e9))
    assert make_policy("fastest").choose(ctx).backend_id == "fast"
    assert make_policy("cheapest").choose(ctx).backend_id == "slow"
    rr = make_policy("round-robin")
    assert [rr.choose(_ctx(Slo(), seq=i)).backend_id for i in range(4)] == \
        ["fast", "medium", "slow", "fast"]
    views = (BackendView("fast", 4.0, FAST, BackendLoad(running=(RunningSeq(10, 10),))),
             BackendView("slow", 0.2, SLOW, BackendLoad(running=(RunningSeq(10, 10),) * 3)))
    assert make_policy("least-loaded").choose(_ctx(Slo(), views)).backend_id == "fast"


def test_every_decision_carries_predictions_and_cost() -> None:
    for name in Policy.registry:
        d = make_policy(name).choose(_ctx(Slo(e2e_ms=1e9)))
        assert d.prediction is not None and d.cost_usd > 0 and d.reason


def test_unknown_policy_and_bad_params() -> None:
    with pytest.raises(ConfigError, match="cost-slo"):
        make_policy("cheapest-ever")
    with pytest.raises(ConfigError, match="safety_margin"):
        make_policy("cost-slo", {"safety_margin": -1})
    with pytest.raises(ConfigError):
        make_policy("fastest", {"x": 1})
    assert make_policy("serving.policies.baselines:FastestPolicy").name == "fastest"


def test_a_pinned_request_goes_where_it_is_pinned() -> None:
    from serving.policies.base import pinned

    ctx = _ctx(Slo(e2e_ms=1e9))
    chosen = make_policy("cost-slo").choose(ctx).backend_id
    other = next(v.id for v in ctx.backends if v.id != chosen)
    d = pinned(ctx, other)
    assert d.backend_id == other and d.prediction is not None and d.cost_usd > 0
    assert d.reason == "pinned by the request"
