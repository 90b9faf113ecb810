"""The simulator (pure): closed forms, batching, determinism, and the policy registry it
shares with the live ingress."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from loadtest.records import Record
from loadtest.simulator import SimBackend, simulate
from loadtest.workload import parse_workload
from profiles.interference import InterferenceTable, Slowdown
from profiles.latency import LatencyModel
from profiles.table import Surface
from serving.policies import Decision, Policy, RoutingContext, evaluate, make_policy
from serving.policies.base import decide
from tests.profiles.synthetic import synthetic_profile

ROOT = Path(__file__).parents[2]


def flat(step_ms: float = 2.0, prefill_ms: float = 1.0, seqs: int = 1, bid: str = "a",
         price: float = 1.0, replicas: int = 1) -> SimBackend:
    table = synthetic_profile(prefill_ms_per_token=0.0, step_base_ms=step_ms, step_per_seq_ms=0.0,
                              step_per_kctx_ms=0.0, max_num_seqs=seqs, backend_id=bid)
    # prefill is 1.0 ms in the synthetic table when per-token cost is 0
    assert prefill_ms == 1.0
    return SimBackend(bid, LatencyModel(table), price, replicas)


def workload(**over):  # type: ignore[no-untyped-def]
    raw = {"arrival": {"process": "poisson", "rate_rps": 30.0},
           "mix": [{"prompt_tokens": {"mean": 32}, "output_tokens": {"mean": 11}}],
           "num_requests": 20_000, "seed": 1}
    raw.update(over)
    return parse_workload(raw)


def test_one_request_at_a_time_is_an_m_d_1_queue() -> None:
    # service S = prefill 1 ms + 10 decode steps x 2 ms = 21 ms; Poisson at 30/s: rho = 0.63
    records = simulate([flat()], make_policy("round-robin"), workload())
    s, lam = 0.021, 30.0
    rho = lam * s
    wait = rho * s / (2 * (1 - rho))  # Pollaczek-Khinchine, deterministic service
    ttft = np.array([r.ttft_ms for r in records])
    assert ttft.mean() == pytest.approx((wait + 0.001) * 1e3, rel=0.04)
    e2e_minus_ttft = np.array([(r.e2e_ms or 0) - (r.ttft_ms or 0) for r in records])
    assert np.allclose(e2e_minus_ttft, 20.0)
    assert all(r.completion_tokens == 11 and r.tpot_ms == pytest.approx(2.0) for r in records)


def test_spaced_arrivals_see_the_bare_service_time() -> None:
    spec = workload(arrival={"process": "constant", "rate_rps": 10.0}, num_requests=20)
    for r in simulate([flat()], make_policy("round-robin"), spec):
        assert (r.ttft_ms, r.e2e_ms) == (pytest.approx(1.0), pytest.approx(21.0))


def test_requests_arriving_together_are_prefilled_together_and_batched() -> None:
    table = synthetic_profile(max_num_seqs=8)
    model = LatencyModel(table)
    spec = workload(arrival={"process": "constant", "rate_rps": 1e6}, num_requests=4)
    records = simulate([SimBackend("a", model, 1.0)], make_policy("round-robin"), spec)
    # the first arrives alone at an idle engine; the other three queue behind its prefill and
    # are prefilled together at its end, then all four decode in one batch
    first, rest = records[0], records[1:]
    assert first.ttft_ms == pytest.approx(model.prefill_ms(1, 32)[0], rel=1e-6)
    t_rest = first.ttft_ms + model.prefill_ms(3, 32)[0]
    assert all(r.ttft_ms == pytest.approx(t_rest, abs=0.01) for r in rest)  # sent 1 us apart
    assert len({round(r.e2e_ms - r.ttft_ms, 6) for r in rest}) == 1


def test_a_prefill_that_joins_a_running_batch_pays_the_join_surface() -> None:
    # two requests 5 ms apart: the second arrives while the first decodes (1 running)
    spec = workload(arrival={"process": "constant", "rate_rps": 200.0}, num_requests=2)
    plain, joined = (
        simulate([SimBackend("a", LatencyModel(synthetic_profile(
            max_num_seqs=8, join_ms_per_running=j)), 1.0)], make_policy("round-robin"), spec)
        for j in (None, 4.0))
    assert joined[0].ttft_ms == pytest.approx(plain[0].ttft_ms)  # arrived at an idle engine
    assert joined[1].ttft_ms - plain[1].ttft_ms == pytest.approx(4.0)


def served(path_ms: float) -> LatencyModel:
    """A table as if measured through a server: every prefill and join `path_ms` longer (2 ms
    steps, 0.05 ms per prompt token, a join adds 4 ms per running sequence)."""
    t = synthetic_profile(step_per_seq_ms=0.0, step_per_kctx_ms=0.0, join_ms_per_running=4.0)
    assert t.join is not None

    def longer(s: Surface) -> Surface:
        return dataclasses.replace(s, ms=tuple(tuple(v + path_ms for v in row) for row in s.ms))

    return LatencyModel(dataclasses.replace(t, engine={"name": "openai-http"},
                                            prefill=longer(t.prefill), join=longer(t.join)))


def test_the_serving_path_delays_a_joiner_without_stalling_the_running_batch() -> None:
    model = served(20.0)
    assert model.path_ms == pytest.approx(21.0)  # the synthetic 1 ms intercept + 20
    # arrivals at 0 and 30 ms, 32 prompt tokens, 41 out: the first decodes 40 x 2 ms from
    # 22.6 ms (prefill 1 + 1.6 + 20); the second reaches its engine at 30 + 21 (path) + 4
    # (join) = 55 ms, is admitted at the next step boundary (56.6) and takes the engine
    # only for its prefill less the path (1.6 ms)
    spec = workload(arrival={"process": "constant", "rate_rps": 1 / 0.03}, num_requests=2,
                    mix=[{"prompt_tokens": {"mean": 32}, "output_tokens": {"mean": 41}}])
    first, second = simulate([SimBackend("a", model, 1.0)], make_policy("round-robin"), spec)
    assert first.ttft_ms == pytest.approx(22.6)  # a lone request: its table's TTFT
    assert first.e2e_ms == pytest.approx(22.6 + 80.0 + 1.6)  # stalled by the engine's part
    assert second.ttft_ms == pytest.approx(56.6 + 1.6 - 30.0)


def test_each_request_draws_its_serving_path_from_the_tables_jitter() -> None:
    jitter = (-1.0, 0.0, 5.0)
    model = served(20.0)
    jittery = LatencyModel(dataclasses.replace(model.profile, path_jitter_ms=jitter))
    in_process = LatencyModel(dataclasses.replace(synthetic_profile(), path_jitter_ms=jitter))
    assert in_process.path_jitter_ms == ()  # no serving path, nothing to vary
    spec = workload(arrival={"process": "constant", "rate_rps": 10.0}, num_requests=300)

    def ttfts(m: LatencyModel) -> list[float]:
        return [r.ttft_ms or 0.0 for r in simulate([SimBackend("a", m, 1.0)],
                                                   make_policy("round-robin"), spec)]

    lone = ttfts(model)[0]  # 100 ms apart: each request alone, the table's TTFT
    drawn = ttfts(jittery)
    deviations = [round(t - lone, 6) for t in drawn]
    assert sorted(set(deviations)) == [-1.0, 0.0, 5.0]
    assert min(deviations.count(j) for j in jitter) > 60  # each about a third of the time
    assert drawn == ttfts(jittery)  # seeded by the workload: the same draws again
    assert ttfts(in_process) == ttfts(LatencyModel(synthetic_profile()))


def interference(while_prefilling: float, while_decoding: float) -> InterferenceTable:
    """a and b slow each other by these factors while the other prefills / decodes."""
    return InterferenceTable("node", tuple(
        Slowdown(me, (other,), op, f, f) for me, other in (("a", "b"), ("b", "a"))
        for op, f in (("prefill", while_prefilling), ("decode", while_decoding))),
        "now", "tests", {})


def test_backends_that_share_a_machine_slow_each_other_down() -> None:
    # a (2 ms steps) and b (1 ms steps) each get one request at t=0 (1 us apart); each runs
    # at half speed while the other works. Prefill: 1 ms of work each -> both at 2 ms. Decode:
    # 10 steps, b's 10 ms of work ends at 2 + 20 = 22 ms, when a has done 10 of its 20 ms;
    # a's last 10 ms run alone: 32 ms.
    backends = [flat(bid="a"), SimBackend("b", flat(step_ms=1.0, bid="b").model, 1.0)]
    spec = workload(arrival={"process": "constant", "rate_rps": 1e6}, num_requests=2)
    policy = make_policy("round-robin")

    def run(table: InterferenceTable | None) -> dict[str, Record]:
        return {r.headers["x-costroute-backend"]: r
                for r in simulate(backends, policy, spec, interference=table)}

    alone, shared = run(None), run(interference(2.0, 2.0))
    assert (alone["a"].e2e_ms, alone["b"].e2e_ms) == (pytest.approx(21.0, abs=0.01),
                                                      pytest.approx(11.0, abs=0.01))
    assert shared["a"].ttft_ms == pytest.approx(2.0, abs=0.01)
    assert shared["b"].ttft_ms == pytest.approx(2.0, abs=0.01)
    assert shared["b"].e2e_ms == pytest.approx(22.0, abs=0.01)
    assert shared["a"].e2e_ms == pytest.approx(32.0, abs=0.01)
    # only a decoding neighbour slows: prefills at full speed (1 ms), then b ends at
    # 1 + 20 = 21 ms and a at 31 ms
    decoding = run(interference(1.0, 2.0))
    assert (decoding["a"].ttft_ms, decoding["b"].ttft_ms) == (pytest.approx(1.0, abs=0.01),
                                                              pytest.approx(1.0, abs=0.01))
    assert (decoding["a"].e2e_ms, decoding["b"].e2e_ms) == (pytest.approx(31.0, abs=0.01),
                                                            pytest.approx(21.0, abs=0.01))
    # a backend the table does not name is not slowed
    other = [flat(bid="a"), SimBackend("c", flat(step_ms=1.0, bid="c").model, 1.0)]
    assert [r.to_json() for r in simulate(other, policy, spec, interference=interference(2, 2))] \
        == [r.to_json() for r in simulate(other, policy, spec)]


def test_interference_grows_with_the_neighbours_requests_in_flight() -> None:
    # One sequence at a time. Round robin: a gets requests 0 and 2, b request 1, all at ~0.
    # a (not slowed): prefill [0, 1], decode [1, 21] with 2 in flight, prefill [21, 22] and
    # decode [22, 42] with 1. b's 10 ms of decode from t=1 runs at the factor for a's load.
    backends = [flat(bid="a"), SimBackend("b", flat(step_ms=1.0, bid="b").model, 1.0)]
    spec = workload(arrival={"process": "constant", "rate_rps": 1e6}, num_requests=3)

    def b_e2e(*levels: tuple[int, float]) -> float:
        table = InterferenceTable("node", tuple(Slowdown("b", ("a",), "decode", 1.0, f, {}, n)
                                                for n, f in levels), "now", "tests", {})
        records = simulate(backends, make_policy("round-robin"), spec, interference=table)
        return next(r.e2e_ms for r in records if r.headers["x-costroute-backend"] == "b") or 0

    # x3 while a has 2 in flight: 20/3 ms of work by t=21, 1 ms alone, 7/3 at x1.5
    assert b_e2e((1, 1.5), (2, 3.0)) == pytest.approx(21 + 1 + 3.5, abs=0.01)
    assert b_e2e((1, 1.5)) == pytest.approx(1 + 15.0, abs=0.01)  # one count measured: used for all
    assert b_e2e((2, 3.0)) == pytest.approx(21 + 1 + 7.0, abs=0.01)


def test_interference_slows_the_part_of_a_step_a_lone_request_would_take() -> None:
    # Round robin at ~0: a (one sequence at a time, not slowed) gets requests 0 and 2 and
    # decodes in [1, 21] and [22, 42], prefilling in between; b gets 1 and 3, prefills them
    # in [0, 1] and [1, 2], then decodes both: 10 steps of 4 ms (3 ms for one sequence).
    # While a decodes, b's steps run at 1 + (2 - 1) x 3/4 = 1.75: 19/1.75 ms of work by 21,
    # 1 ms alone, 20/1.75 by 42, and the rest of the 40 ms alone.
    b_model = LatencyModel(synthetic_profile(prefill_ms_per_token=0.0, step_base_ms=2.0,
                                             step_per_seq_ms=1.0, step_per_kctx_ms=0.0,
                                             max_num_seqs=4, backend_id="b"))
    backends = [flat(bid="a"), SimBackend("b", b_model, 1.0)]
    table = InterferenceTable("node", (Slowdown("b", ("a",), "decode", 1.0, 2.0),), "now",
                              "tests", {})
    spec = workload(arrival={"process": "constant", "rate_rps": 1e6}, num_requests=4)
    records = simulate(backends, make_policy("round-robin"), spec, interference=table)
    b_done = [r.e2e_ms for r in records if r.headers["x-costroute-backend"] == "b"]
    alone = 40 - 19 / 1.75 - 1 - 20 / 1.75
    assert b_done == [pytest.approx(42 + alone, abs=0.01)] * 2


def test_a_bigger_batch_decodes_slower_per_step() -> None:
    model = LatencyModel(synthetic_profile(max_num_seqs=8))
    one = simulate([SimBackend("a", model, 1.0)], make_policy("round-robin"),
                   workload(arrival={"process": "constant", "rate_rps": 1.0}, num_requests=3))
    many = simulate([SimBackend("a", model, 1.0)], make_policy("round-robin"),
                    workload(arrival={"process": "constant", "rate_rps": 1e6}, num_requests=8))
    assert max(r.tpot_ms for r in many) > max(r.tpot_ms for r in one)


def test_same_seed_same_run() -> None:
    backends = [flat(seqs=4, bid="a"), flat(step_ms=4.0, seqs=4, bid="b", price=0.1)]
    spec = workload(num_requests=2000, slo_classes={"i": {"ttft_ms": 30}}, slo_mix={"i": 1})
    a = simulate(backends, make_policy("cost-slo"), spec)
    b = simulate(backends, make_policy("cost-slo"), spec)
    assert [r.to_json() for r in a] == [r.to_json() for r in b]
    other = simulate(backends, make_policy("cost-slo"), workload(num_requests=2000, seed=2,
                     slo_classes={"i": {"ttft_ms": 30}}, slo_mix={"i": 1}))
    assert [r.to_json() for r in a] != [r.to_json() for r in other]


def test_cost_slo_prefers_the_cheap_backend_until_it_would_miss() -> None:
    backends = [flat(seqs=1, bid="fast", price=1.0), flat(step_ms=4.0, seqs=1, bid="cheap",
                                                          price=0.1)]
    spec = workload(arrival={"process": "poisson", "rate_rps": 40.0}, num_requests=3000,
                    slo_classes={"i": {"e2e_ms": 120}}, slo_mix={"i": 1})
    records = simulate(backends, make_policy("cost-slo"), spec)
    share = sum(r.backend == "cheap" for r in records) / len(records)
    assert 0.3 < share < 0.95  # cheap first, fast when cheap's queue would miss the SLO
    # most meet it (the online correction, learned as live, trims some of the model's margin)
    assert sum(r.met_slo() for r in records) / len(records) > 0.9
    assert all(r.cost_usd is not None for r in records)


def test_replicas_share_the_load() -> None:
    one = simulate([flat(replicas=1)], make_policy("round-robin"), workload(num_requests=3000))
    two = simulate([flat(replicas=2)], make_policy("round-robin"), workload(num_requests=3000))
    assert np.mean([r.ttft_ms for r in two]) < 0.5 * np.mean([r.ttft_ms for r in one])


def test_reject_fallback_records_429s() -> None:
    spec = workload(num_requests=50, slo_classes={"i": {"ttft_ms": 0.5}}, slo_mix={"i": 1})
    records = simulate([flat()], make_policy("cost-slo"), spec, fallback="reject")
    assert all(r.status == 429 and not r.ok for r in records)


def test_closed_loop_keeps_the_concurrency() -> None:
    spec = workload(arrival={"process": "closed", "concurrency": 3}, num_requests=30)
    records = simulate([flat(seqs=8)], make_policy("round-robin"), spec)
    assert len(records) == 30 and all(r.ok for r in records)
    # three start at 0, together; each later one starts when one finishes
    assert sorted(r.sent_s for r in records)[:3] == [0.0, 0.0, 0.0]


class PickLast(Policy):
    """A policy defined outside serving/: registered by subclassing, like the built-ins."""

    name: ClassVar[str] = "test-pick-last"

    def choose(self, ctx: RoutingContext) -> Decision:
        candidates = evaluate(ctx)
        return decide(candidates[-1], candidates, "the last backend")


def test_the_simulator_and_the_live_ingress_share_one_policy_registry() -> None:
    from serving.config import parse_fleet_config
    from serving.router import Router

    # the live ingress builds its policy through make_policy, from the same registry...
    measured = str(ROOT / "profiles" / "tables" / "cpu-onnxruntime.json")
    config = parse_fleet_config({
        "policy": {"name": "test-pick-last"},
        "backends": [{"id": i, "engine": "onnxruntime", "accelerator": "cpu",
                      "usd_per_hour": 1.0, "profile": measured} for i in ("x", "y")]})
    router = Router(config, tokenizer=None, max_model_len=2048)
    assert type(router.policy) is PickLast and Policy.registry["test-pick-last"] is PickLast
    # ...and the simulator runs that very class
    records = simulate([flat(bid="x"), flat(bid="y")], make_policy("test-pick-last"),
                       workload(num_requests=20))
    assert {r.backend for r in records} == {"y"}
