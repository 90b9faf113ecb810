"""Metric arithmetic against hand-computed cases (pure)."""

from __future__ import annotations

import pytest

from loadtest.metrics import Pricing, stats, summarize, window_s
from loadtest.records import Record


def rec(index: int, sent: float, tokens: list[float], *, n: int | None = None, status: int = 200,
        error: str | None = None, slo: dict | None = None, cls: str | None = None,
        backend: str = "a", cost: str | None = None, warmup: bool = False,
        scheduled: float | None = None, prompt: int = 10) -> Record:
    headers = {"x-costroute-backend": backend}
    if cost is not None:
        headers["x-costroute-cost-usd"] = cost
    return Record(index=index, sent_s=sent, scheduled_s=scheduled, token_s=tokens,
                  end_s=tokens[-1] if tokens else None,
                  done_s=(tokens[-1] if tokens else 0.5), completion_tokens=len(tokens) if n is None else n,
                  prompt_tokens=prompt, usage_from_server=True, status=status, error=error,
                  slo=slo or {}, slo_class=cls, headers=headers, warmup=warmup)


def test_per_request_metrics_follow_vllm_bench_serve() -> None:
    r = rec(0, 0.0, [0.100, 0.130, 0.150, 0.220])
    assert r.ttft_ms == pytest.approx(100)
    assert r.e2e_ms == pytest.approx(220)
    assert r.tpot_ms == pytest.approx((220 - 100) / 3)
    assert r.itl_ms == pytest.approx([30, 20, 70])


def test_tpot_uses_the_servers_token_count_not_the_chunks() -> None:
    # 2 chunks carried 5 tokens: TPOT divides by completion_tokens - 1, like vLLM
    r = rec(0, 0.0, [0.1, 0.5], n=5)
    assert r.tpot_ms == pytest.approx(400 / 4)
    assert rec(0, 0.0, [0.1], n=1).tpot_ms is None


def test_slo_checks_every_target_and_errors_are_misses() -> None:
    ok = rec(0, 0.0, [0.1, 0.2, 0.3], slo={"ttft_ms": 150, "tpot_ms": 100})
    assert ok.met_slo()
    assert not rec(0, 0.0, [0.1, 0.2, 0.6], slo={"ttft_ms": 150, "tpot_ms": 100}).met_slo()
    assert not rec(0, 0.0, [0.1, 0.2], slo={"e2e_ms": 150}).met_slo()
    assert rec(0, 0.0, [0.1]).met_slo()  # no targets: a pass
    assert not rec(0, 0.0, [], status=503, error="busy").met_slo()
    assert not rec(0, 0.0, [0.1], error="stream broke").met_slo()


def test_stats_are_numpys_linear_percentiles() -> None:
    s = stats([1.0, 2.0, 3.0, 4.0, None])
    assert s == {"count": 4, "mean": 2.5, "median": 2.5, "p90": pytest.approx(3.7),
                 "p99": pytest.approx(3.97)}
    assert stats([])["median"] is None


def test_summary_by_hand() -> None:
    records = [
        rec(0, 0.0, [0.5, 0.9], warmup=True),  # excluded from everything
        rec(1, 1.0, [0.1, 0.2, 0.3], cls="fast", slo={"ttft_ms": 200}, backend="a", cost="0.001",
            scheduled=0.999),
        rec(2, 2.0, [0.3, 0.4, 0.5, 0.6], cls="fast", slo={"ttft_ms": 200}, backend="b",
            cost="0.002", scheduled=1.998),
        rec(3, 2.5, [0.2, 0.3], cls="bulk", slo={"e2e_ms": 1000}, backend="b", cost="0.003",
            scheduled=2.5),
        rec(4, 3.0, [], status=429, error="no backend can meet the SLO", cls="fast",
            slo={"ttft_ms": 200}, backend="unknown", scheduled=2.9),
    ]
    s = summarize(records, pricing=Pricing(3.6, "test", {"a": 1.8, "b": 1.8}), target_rate_rps=1.0)
    # window: first measured send (1.0) to last finish (2.0 + 0.6 = 2.6 ... 3.0 + 0.5 = 3.5)
    assert s["window_s"] == pytest.approx(2.5) == window_s(records)
    assert s["requests"] == {"total": 5, "warmup": 1, "measured": 4, "completed": 3, "failed": 1,
                             "usage_from_server": 3}
    assert s["latency_ms"]["ttft"]["median"] == pytest.approx(200)
    assert s["latency_ms"]["ttft"]["mean"] == pytest.approx(200)
    assert s["latency_ms"]["e2e"]["median"] == pytest.approx(300)
    # TPOT: (300-100)/2 = 100, (600-300)/3 = 100, (300-200)/1 = 100
    assert s["latency_ms"]["tpot"]["mean"] == pytest.approx(100)
    assert s["latency_ms"]["itl"]["count"] == 2 + 3 + 1
    assert s["throughput"]["requests_per_s"] == pytest.approx(3 / 2.5)
    assert s["throughput"]["output_tokens_per_s"] == pytest.approx(9 / 2.5)
    assert s["throughput"]["total_tokens_per_s"] == pytest.approx(39 / 2.5)
    # SLO: #1 met (ttft 100), #2 missed (ttft 300), #3 met (e2e 200), #4 error = miss
    assert s["slo"]["attainment"] == pytest.approx(0.5)
    assert s["slo"]["goodput_rps"] == pytest.approx(2 / 2.5)
    assert s["slo"]["classes"]["fast"] == {"requests": 3, "met": 1, "attainment": pytest.approx(1 / 3),
                                           "goodput_rps": pytest.approx(0.4),
                                           "targets": {"ttft_ms": 200}}
    assert s["slo"]["classes"]["bulk"]["attainment"] == 1.0
    assert s["backends"]["b"]["requests"] == 2 and s["backends"]["b"]["share"] == 0.5
    assert s["backends"]["unknown"]["completed"] == 0
    # provisioned: $3.6/h x 2.5 s = $0.0025; 9 output tokens, 39 total, 5 output tokens met SLO
    prov = s["cost"]["provisioned"]
    assert prov["usd"] == pytest.approx(0.0025)
    assert prov["usd_per_1m_output_tokens"] == pytest.approx(0.0025 / 9 * 1e6)
    assert prov["usd_per_1m_total_tokens"] == pytest.approx(0.0025 / 39 * 1e6)
    assert prov["usd_per_1m_output_tokens_meeting_slo"] == pytest.approx(0.0025 / 5 * 1e6)
    assert "provisioned" in prov["what"]
    attr = s["cost"]["attributed"]
    assert attr["usd"] == pytest.approx(0.006) and attr["requests_priced"] == 3
    assert attr["usd_per_1m_output_tokens"] == pytest.approx(0.006 / 9 * 1e6)
    assert "attributed" in attr["what"]
    assert s["errors"] == {"count": 1, "by_status": {"429": 1},
                           "examples": ["HTTP 429: no backend can meet the SLO"]}
    lag = s["pacing"]["schedule_lag_ms"]
    assert lag["max"] == pytest.approx(100) and lag["median"] == pytest.approx(1.5)
    assert s["pacing"]["achieved_rate_rps"] == pytest.approx(3 / 2.0)


def test_no_pricing_and_no_cost_headers_give_no_cost() -> None:
    s = summarize([rec(0, 0.0, [0.1, 0.2])])
    assert s["cost"] == {"provisioned": None, "attributed": None}


def test_nothing_measured() -> None:
    s = summarize([rec(0, 0.0, [0.1], warmup=True)])
    assert s["requests"]["measured"] == 0 and s["window_s"] == 0.0
    assert s["slo"]["attainment"] is None and s["latency_ms"]["ttft"]["count"] == 0
