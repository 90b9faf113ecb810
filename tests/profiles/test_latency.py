"""The latency model on synthetic tables: monotone in load and length, queueing, flags, correction."""

from __future__ import annotations

import dataclasses

import pytest

from profiles.latency import BackendLoad, Correction, LatencyModel, RequestShape, RunningSeq
from tests.profiles.synthetic import synthetic_profile

MODEL = LatencyModel(synthetic_profile())
REQ = RequestShape(prompt_tokens=64, output_tokens=32)


def _running(n: int, remaining: int = 50, context: int = 100) -> BackendLoad:
    return BackendLoad(running=tuple(RunningSeq(context, remaining) for _ in range(n)))


def test_idle_backend_matches_the_table() -> None:
    p = MODEL.predict(REQ, BackendLoad())
    prefill, _ = MODEL.prefill_ms(1, 64)
    assert p.ttft_ms == pytest.approx(prefill)
    assert p.queue_ms == 0
    # 31 decode steps alone, context growing from 64 to 95.
    step, _ = MODEL.decode_step_ms(1, 64 + 31 / 2)
    assert p.e2e_ms == pytest.approx(prefill + 31 * step)
    assert p.tpot_ms == pytest.approx(step)
    assert not p.extrapolated


def test_monotonic_in_load() -> None:
    preds = [MODEL.predict(REQ, _running(n)) for n in range(0, 7)]
    for a, b in zip(preds, preds[1:]):
        assert b.ttft_ms >= a.ttft_ms
        assert b.tpot_ms >= a.tpot_ms
        assert b.e2e_ms >= a.e2e_ms


def test_monotonic_in_length() -> None:
    load = _running(3)
    by_prompt = [MODEL.predict(RequestShape(n, 32), load) for n in (16, 64, 256, 1000)]
    assert all(b.ttft_ms > a.ttft_ms for a, b in zip(by_prompt, by_prompt[1:]))
    by_output = [MODEL.predict(RequestShape(64, n), load) for n in (2, 8, 64, 256)]
    assert all(b.e2e_ms > a.e2e_ms for a, b in zip(by_output, by_output[1:]))


def test_a_full_batch_queues_until_a_slot_frees() -> None:
    full = BackendLoad(running=tuple(RunningSeq(100, 40 + i) for i in range(8)))  # cap is 8
    p = MODEL.predict(REQ, full)
    step, _ = MODEL.decode_step_ms(8, 100 + 20)
    assert p.queue_ms > 39 * step  # waits ~40 steps for the first sequence to finish
    assert p.ttft_ms > p.queue_ms


def test_waiting_requests_ahead_delay_the_first_token() -> None:
    ahead = BackendLoad(
        running=tuple(RunningSeq(100, 100 + 10 * i) for i in range(8)),
        waiting=(RequestShape(64, 32),) * 3,
    )
    fewer = BackendLoad(running=ahead.running, waiting=(RequestShape(64, 32),))
    assert MODEL.predict(REQ, ahead).queue_ms > MODEL.predict(REQ, fewer).queue_ms


def test_joining_slows_the_others_and_costs_a_share() -> None:
    alone = MODEL.predict(REQ, BackendLoad())
    shared = MODEL.predict(REQ, _running(4, remaining=100))
    assert alone.others_delay_ms == 0
    assert shared.others_delay_ms > 0
    # Sharing decode steps with 4 others: less replica time than running alone.
    assert shared.replica_ms < alone.replica_ms


def test_outside_the_grid_is_flagged() -> None:
    p = MODEL.predict(RequestShape(prompt_tokens=4000, output_tokens=8), BackendLoad())
    assert p.extrapolated


def test_single_token_request() -> None:
    p = MODEL.predict(RequestShape(64, 1), _running(2))
    assert p.e2e_ms == p.ttft_ms and p.tpot_ms == 0


def test_correction_converges_and_stays_bounded() -> None:
    c = Correction()
    base = MODEL.predict(REQ, BackendLoad())
    for _ in range(400):  # reality is 1.3x slower on TTFT and 0.8x on TPOT
        predicted = MODEL.predict(REQ, BackendLoad(), c)
        c = c.update(predicted, base.ttft_ms * 1.3, base.tpot_ms * 0.8)
    assert c.ttft_factor == pytest.approx(1.3, rel=1e-3)
    assert c.tpot_factor == pytest.approx(0.8, rel=1e-3)
    corrected = MODEL.predict(REQ, BackendLoad(), c)
    assert corrected.ttft_ms == pytest.approx(base.ttft_ms * 1.3, rel=1e-3)
    for _ in range(200):  # absurd observations: the factor stops at its bound
        c = c.update(MODEL.predict(REQ, BackendLoad(), c), base.ttft_ms * 50, base.tpot_ms / 50)
    assert c.ttft_factor == c.high and c.tpot_factor == c.low


def test_later_arrivals_stretch_decoding() -> None:
    quiet = MODEL.predict(REQ, _running(2))
    busy_load = BackendLoad(running=_running(2).running, arrival_rate_per_s=20.0,
                            mean_prompt_tokens=256)
    busy = MODEL.predict(REQ, busy_load)
    prefill, _ = MODEL.prefill_ms(1, 256)
    assert busy.tpot_ms == pytest.approx(quiet.tpot_ms / (1 - 20 * prefill / 1e3))


@pytest.mark.parametrize("load", [
    BackendLoad(),
    BackendLoad(arrival_rate_per_s=20.0, mean_prompt_tokens=256),
    BackendLoad(arrival_rate_per_s=3.0, mean_prompt_tokens=5000),  # extrapolated prefill
])
@pytest.mark.parametrize("request_shape", [
    REQ, RequestShape(64, 1), RequestShape(4096, 300), RequestShape(1, 2)])
def test_the_idle_shortcut_is_the_walk(load: BackendLoad, request_shape: RequestShape) -> None:
    """An idle backend is answered without walking the schedule: the same numbers."""
    from profiles.latency import _walk

    p = MODEL.predict(request_shape, load)
    assert (p.ttft_ms, p.queue_ms, p.e2e_ms, p.replica_ms, p.others_delay_ms,
            p.extrapolated) == _walk(MODEL, load, request_shape)


def test_joining_a_running_batch_costs_what_the_join_surface_measured() -> None:
    joined = LatencyModel(synthetic_profile(join_ms_per_running=3.0))
    # idle: the join surface plays no part
    assert joined.predict(REQ, BackendLoad()) == MODEL.predict(REQ, BackendLoad())
    for n in (1, 2, 4):
        load = _running(n)
        extra = joined.predict(REQ, load).ttft_ms - MODEL.predict(REQ, load).ttft_ms
        assert extra == pytest.approx(3.0 * n)
    # a queue ahead: the group that joins pays it once, the target's first token with it
    ahead = BackendLoad(running=_running(2).running, waiting=(RequestShape(64, 32),))
    assert (joined.predict(REQ, ahead).ttft_ms - MODEL.predict(REQ, ahead).ttft_ms
            == pytest.approx(6.0))
    assert joined.join_extra_ms(0, 64) == (0.0, False)
    assert MODEL.join_extra_ms(4, 64) == (0.0, False)


def test_only_a_table_measured_through_a_server_has_a_serving_path() -> None:
    table = synthetic_profile()  # prefill 1 + 0.05 x tokens: 1.8 ms at 16, 4.2 ms at 64
    assert LatencyModel(table).path_ms == 0.0  # measured in-process: engine time only
    http = dataclasses.replace(table, engine={"name": "openai-http", "url": "http://x"})
    assert LatencyModel(http).path_ms == pytest.approx(1.0)  # the line's zero-token intercept
