"""Workloads: arrival processes, length distributions, SLO mix, bounds, traces (pure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backends.errors import ConfigError
from loadtest.workload import (
    ArrivalSpec,
    LengthSpec,
    Planned,
    bounded_plans,
    chat_doc_preset,
    parse_workload,
    plan_requests,
    read_trace,
    write_trace,
)


def spec(**over):  # type: ignore[no-untyped-def]
    raw = {"arrival": {"process": "poisson", "rate_rps": 10.0},
           "mix": [{"prompt_tokens": {"mean": 32}, "output_tokens": {"mean": 8}}],
           "num_requests": 100}
    raw.update(over)
    return parse_workload(raw)


def gaps(arrival: ArrivalSpec, n: int = 200_000) -> np.ndarray:
    return arrival.gaps(np.random.default_rng(3), n)


def test_poisson_gaps_have_mean_and_variance_of_an_exponential() -> None:
    g = gaps(ArrivalSpec(process="poisson", rate_rps=50.0))
    assert g.mean() == pytest.approx(1 / 50, rel=0.01)
    assert g.var() == pytest.approx(1 / 50**2, rel=0.03)  # CV 1


@pytest.mark.parametrize("burstiness", [0.25, 4.0])
def test_gamma_keeps_the_rate_and_sets_the_variance(burstiness: float) -> None:
    g = gaps(ArrivalSpec(process="gamma", rate_rps=20.0, burstiness=burstiness))
    assert g.mean() == pytest.approx(1 / 20, rel=0.01)
    # gamma(k, 1/(r k)): variance 1 / (k r^2): burstier (k < 1) is more variable
    assert g.var() == pytest.approx(1 / (burstiness * 20**2), rel=0.05)


def test_constant_arrivals_are_evenly_spaced() -> None:
    g = gaps(ArrivalSpec(process="constant", rate_rps=4.0), 10)
    assert np.all(g == 0.25)


def test_lengths_fixed_uniform_lognormal() -> None:
    rng = np.random.default_rng(0)
    assert set(LengthSpec(mean=7).sample(rng, 50)) == {7}
    u = LengthSpec(dist="uniform", mean=100, range_ratio=0.2).sample(rng, 50_000)
    assert u.min() == 80 and u.max() == 120 and u.mean() == pytest.approx(100, rel=0.01)
    ln = LengthSpec(dist="lognormal", mean=200, sigma=0.5).sample(rng, 200_000)
    assert ln.mean() == pytest.approx(200, rel=0.02)
    assert np.log(ln).std() == pytest.approx(0.5, rel=0.03)
    clipped = LengthSpec(dist="lognormal", mean=200, sigma=1.0, min=50, max=300).sample(rng, 5000)
    assert clipped.min() >= 50 and clipped.max() <= 300


@pytest.mark.parametrize(("text", "want"), [
    ("64", LengthSpec(mean=64)),
    ("fixed:64", LengthSpec(mean=64)),
    ("uniform:64:0.5", LengthSpec(dist="uniform", mean=64, range_ratio=0.5)),
    ("lognormal:64:0.8", LengthSpec(dist="lognormal", mean=64, sigma=0.8)),
])
def test_length_shorthand(text: str, want: LengthSpec) -> None:
    assert LengthSpec.parse(text, "prompt_tokens") == want


@pytest.mark.parametrize("text", ["x", "uniform:64", "uniform:64:1.5", "gauss:3:1", "0"])
def test_bad_length_shorthand_names_the_flag(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        LengthSpec.parse(text, "output_tokens")
    assert err.value.field == "output_tokens" and repr(text) in str(err.value)


def test_same_seed_same_plans_other_seed_other_plans() -> None:
    a = list(bounded_plans(spec(seed=5)))
    assert a == list(bounded_plans(spec(seed=5)))
    assert a != list(bounded_plans(spec(seed=6)))
    assert len(a) == 100 and all(p.at_s is not None for p in a)
    times = [p.at_s for p in a]
    assert times == sorted(times)


def test_mix_and_slo_mix_shares() -> None:
    s = spec(mix=[c.model_dump() for c in chat_doc_preset()], num_requests=20_000,
             slo_classes={"fast": {"ttft_ms": 100}, "slow": {"e2e_ms": 9000}},
             slo_mix={"fast": 1, "slow": 3})
    plans = list(bounded_plans(s))
    doc = [p for p in plans if p.component == "document"]
    assert len(doc) / len(plans) == pytest.approx(0.3, abs=0.015)
    assert all(576 <= p.prompt_tokens <= 960 for p in doc)
    fast = [p for p in plans if p.slo_class == "fast"]
    assert len(fast) / len(plans) == pytest.approx(0.25, abs=0.015)
    assert fast[0].slo == {"ttft_ms": 100.0}


def test_duration_bound_and_warmup() -> None:
    s = spec(num_requests=None, duration_s=20.0, warmup_s=5.0, arrival={"process": "constant",
                                                                         "rate_rps": 2.0})
    plans = list(bounded_plans(s))
    warm = [p for p in plans if p.warmup]
    assert [p.at_s for p in warm] == pytest.approx([0.5 * k for k in range(1, 10)])
    assert len(plans) - len(warm) == 40  # 5 s .. 25 s at 2/s (the one due at 25 s is out)
    assert max(p.at_s or 0 for p in plans) < 25.0


def test_request_count_bound_counts_measured_requests_only() -> None:
    s = spec(num_requests=10, warmup_s=1.0, arrival={"process": "constant", "rate_rps": 4.0})
    plans = list(bounded_plans(s))
    assert sum(not p.warmup for p in plans) == 10 and sum(p.warmup for p in plans) == 3


def test_closed_loop_has_no_schedule() -> None:
    s = spec(arrival={"process": "closed", "concurrency": 4})
    first = next(plan_requests(s))
    assert first.at_s is None


@pytest.mark.parametrize(("over", "field"), [
    ({"num_requests": None}, "(top level)"),
    ({"arrival": {"process": "poisson"}}, "arrival"),
    ({"arrival": {"process": "closed"}}, "arrival"),
    ({"arrival": {"process": "poisson", "rate_rps": 1, "burstiness": 2}}, "arrival"),
    ({"slo_mix": {"gold": 1}}, "slo_mix"),
    ({"token_id_range": (5, 5)}, "token_id_range"),
    ({"max_in_flight": 0}, "max_in_flight"),
    ({"arrival": {"process": "poisson", "rate_rps": -1}}, "arrival.rate_rps"),
])
def test_bad_specs_name_the_field(over: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        spec(**over)
    assert str(err.value).startswith(f"workload: {field}")


def test_trace_round_trip(tmp_path: Path) -> None:
    s = spec(slo_classes={"fast": {"ttft_ms": 100}}, slo_mix={"fast": 1}, num_requests=50)
    plans = list(bounded_plans(s))
    plans.append(Planned(50, 99.0, 0, 5, "chat", None, {"e2e_ms": 500.0}, prompt="hello there"))
    write_trace(tmp_path / "t.jsonl", plans)
    back = read_trace(tmp_path / "t.jsonl", {})
    assert back == plans


def test_trace_replays_through_a_spec(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text(
        '{"arrival_s": 10.5, "prompt_tokens": 12, "output_tokens": 3, "slo_class": "fast"}\n'
        '{"arrival_s": 10.0, "prompt": "hi", "output_tokens": 4, "slo": {"tpot_ms": 9}}\n')
    s = spec(trace=str(tmp_path / "t.jsonl"), slo_classes={"fast": {"ttft_ms": 100}})
    plans = list(bounded_plans(s))
    assert [(p.at_s, p.prompt, p.slo) for p in plans] == [
        (0.0, "hi", {"tpot_ms": 9.0}), (0.5, None, {"ttft_ms": 100.0})]


def test_a_trace_is_its_own_bound_and_its_rows_may_carry_their_own_targets(
        tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text(
        '{"arrival_s": 0, "prompt_tokens": 5, "output_tokens": 3, "slo_class": "fast"}\n'
        '{"arrival_s": 1, "prompt_tokens": 5, "output_tokens": 3, "slo_class": "gold", '
        '"slo": {"e2e_ms": 700}}\n')
    s = parse_workload({"arrival": {"rate_rps": 1}, "trace": str(tmp_path / "t.jsonl"),
                        "mix": [{"prompt_tokens": {"mean": 1}, "output_tokens": {"mean": 1}}],
                        "slo_classes": {"fast": {"ttft_ms": 100}}})
    assert s.duration_s is None and s.num_requests is None
    plans = list(bounded_plans(s))  # every row, then the end of the trace
    assert [(p.slo_class, p.slo) for p in plans] == [("fast", {"ttft_ms": 100.0}),
                                                     ("gold", {"e2e_ms": 700.0})]
    with pytest.raises(ConfigError) as err:  # without a bound nor a trace: refused, named
        parse_workload({"arrival": {"rate_rps": 1},
                        "mix": [{"prompt_tokens": {"mean": 1}, "output_tokens": {"mean": 1}}]})
    assert "bound" in str(err.value)


@pytest.mark.parametrize(("line", "field"), [
    ('{"arrival_s": 0, "output_tokens": 3}', "prompt_tokens"),
    ('{"arrival_s": -1, "prompt_tokens": 3, "output_tokens": 3}', "arrival_s"),
    ('{"arrival_s": 0, "prompt_tokens": 3, "output_tokens": 2.5}', "output_tokens"),
    ('{"arrival_s": 0, "prompt_tokens": 3, "output_tokens": 2, "colour": 1}', "colour"),
    ('{"arrival_s": 0, "prompt_tokens": 3, "output_tokens": 2, "slo": {"ttft": 1}}', "slo"),
    ('{"arrival_s": 0, "prompt_tokens": 3, "output_tokens": 2, "slo_class": "gold"}', "slo_class"),
    ("not json", "trace"),
])
def test_bad_trace_lines_name_line_and_field(tmp_path: Path, line: str, field: str) -> None:
    (tmp_path / "t.jsonl").write_text('{"arrival_s": 0, "prompt_tokens": 1, "output_tokens": 1}\n'
                                      + line + "\n")
    with pytest.raises(ConfigError) as err:
        read_trace(tmp_path / "t.jsonl", {"fast": parse_workload(
            {"arrival": {"rate_rps": 1}, "mix": [{"prompt_tokens": {"mean": 1},
                                                  "output_tokens": {"mean": 1}}],
             "num_requests": 1, "slo_classes": {"fast": {"ttft_ms": 1}}}).slo_classes["fast"]})
    assert err.value.field == field and "line 2" in str(err.value)


def test_a_component_can_carry_its_own_slo_class() -> None:
    mix = [{"name": "chat", "share": 1, "prompt_tokens": {"mean": 8}, "output_tokens": {"mean": 8},
            "slo_class": "fast"},
           {"name": "doc", "share": 1, "prompt_tokens": {"mean": 900},
            "output_tokens": {"mean": 8}}]
    s = spec(mix=mix, slo_classes={"fast": {"ttft_ms": 100}, "slow": {"e2e_ms": 9000}},
             slo_mix={"slow": 1}, num_requests=500)
    plans = list(bounded_plans(s))
    assert {p.slo_class for p in plans if p.component == "chat"} == {"fast"}
    assert {p.slo_class for p in plans if p.component == "doc"} == {"slow"}
    with pytest.raises(ConfigError) as err:
        spec(mix=mix)
    assert err.value.field == "mix" and "'fast'" in str(err.value)


def _counts(s, edges):  # type: ignore[no-untyped-def]
    times = np.array([p.at_s for p in bounded_plans(s)])
    return np.histogram(times, bins=edges)[0]


def test_a_rate_curve_shapes_the_arrivals_over_time() -> None:
    """A daily shape compressed to 200 s: 5 req/s at night, 20 at noon (linear between),
    repeating; each 20 s window holds about the curve's mean rate there."""
    curve = ((0.0, 0.5), (100.0, 2.0))
    s = spec(arrival={"process": "poisson", "rate_rps": 10.0, "rate_curve": curve,
                      "period_s": 200.0}, num_requests=None, duration_s=400.0, seed=3)
    edges = np.arange(0.0, 401.0, 20.0)
    counts = _counts(s, edges)
    mids = (edges[:-1] + edges[1:]) / 2
    expected = 20.0 * 10.0 * s.arrival.factor(mids)  # the factor is linear inside each window
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))
    assert counts[4] > 2.3 * counts[0]  # before noon (x1.85) against after midnight (x0.65)
    assert abs(counts[:10].sum() - counts[10:].sum()) < 4 * np.sqrt(counts.sum())  # it repeats
    assert s.arrival.peak_rate_rps() == pytest.approx(20.0)


def test_a_burst_multiplies_the_rate_for_its_stretch_and_a_gamma_keeps_its_burstiness() -> None:
    s = spec(arrival={"process": "constant", "rate_rps": 10.0,
                      "bursts": [{"at_s": 10.0, "duration_s": 5.0, "factor": 3.0}]},
             num_requests=None, duration_s=30.0)
    counts = _counts(s, [0.0, 10.0, 15.0, 30.0])
    assert list(counts) == pytest.approx([100, 150, 150], abs=1)
    assert s.arrival.peak_rate_rps() == pytest.approx(30.0)
    flat = spec(arrival={"process": "gamma", "rate_rps": 50.0, "burstiness": 0.25},
                num_requests=4000, seed=1)
    warped = spec(arrival={"process": "gamma", "rate_rps": 50.0, "burstiness": 0.25,
                           "rate_curve": [[0, 2.0]]}, num_requests=4000, seed=1)
    a = np.diff([p.at_s for p in bounded_plans(flat)])
    b = np.diff([p.at_s for p in bounded_plans(warped)])
    assert b == pytest.approx(a / 2, rel=1e-6, abs=1e-6)  # twice the rate, the same shape


@pytest.mark.parametrize(("arrival", "message"), [
    ({"rate_curve": [[5, 1.0]]}, "first point"),
    ({"rate_curve": [[0, 1.0], [0, 2.0]]}, "increase"),
    ({"rate_curve": [[0, 1.0], [10, 0.0]]}, "factor"),
    ({"rate_curve": [[0, 1.0], [10, 2.0]], "period_s": 10}, "period_s"),
    ({"period_s": 10}, "period_s needs rate_curve"),
    ({"bursts": [{"at_s": 1, "duration_s": 0, "factor": 2}]}, "duration_s"),
])
def test_bad_rate_curves_are_named(arrival: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        spec(arrival={"process": "poisson", "rate_rps": 1.0, **arrival})
    assert str(err.value).startswith("workload: arrival")


def test_a_trace_replays_faster_with_trace_speedup(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text(
        '{"arrival_s": 100, "prompt_tokens": 12, "output_tokens": 3}\n'
        '{"arrival_s": 700, "prompt_tokens": 12, "output_tokens": 3}\n')
    s = spec(trace=str(tmp_path / "t.jsonl"), trace_speedup=60.0)
    assert [p.at_s for p in bounded_plans(s)] == [0.0, 10.0]
    assert "at 60x" in s.describe()
    with pytest.raises(ConfigError, match="trace_speedup needs a trace"):
        spec(trace_speedup=2.0)
