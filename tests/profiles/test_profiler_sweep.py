"""The profiler's schedule (pure asyncio; the target answers at once): idle before prefills."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from profiles.profiler import SweepPlan, sweep
from profiles.targets import Timing
from tests.virtual_time import now, run_virtual

PLAN = SweepPlan(prefill_batch=(1,), prefill_tokens=(16,), decode_batch=(1,),
                 decode_context=(16,), decode_steps=2, repetitions=3, warmup=0)


class _Instant:
    """Answers every request at once and notes when each was sent and finished."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float, int]] = []  # (sent, done, max_tokens)

    async def run(self, prompt_ids: list[int], max_tokens: int, on_tokens: Any = None) -> Timing:
        sent = time.perf_counter()
        await asyncio.sleep(0)
        times = [time.perf_counter() + 1e-4 * i for i in range(max_tokens)]
        self.calls.append((sent, times[-1], max_tokens))
        return Timing(sent, times, len(prompt_ids), max_tokens)

    def describe(self) -> dict[str, Any]:
        return {}


def _gaps_before_prefills(target: _Instant) -> list[float]:
    calls = target.calls
    return [calls[i][0] - calls[i - 1][1] for i in range(1, len(calls)) if calls[i][2] == 1]


def test_idle_before_each_prefill_measurement() -> None:
    target = _Instant()
    asyncio.run(sweep(target, PLAN, vocab_size=512, idle_s=0.05))
    gaps = _gaps_before_prefills(target)
    assert len(gaps) == PLAN.repetitions - 1  # the first prefill has nothing before it
    assert min(gaps) >= 0.05


def test_back_to_back_by_default() -> None:
    target = _Instant()
    asyncio.run(sweep(target, PLAN, vocab_size=512))
    assert max(_gaps_before_prefills(target)) < 0.05


class _Streaming:
    """Streams a token every 2 ms; a request's first token takes 5 ms plus 4 ms for every
    other request in flight when it was sent (what a shared serving path does to a join)."""

    def __init__(self) -> None:
        self.in_flight = 0

    async def run(self, prompt_ids: list[int], max_tokens: int, on_tokens: Any = None) -> Timing:
        timing = Timing(now(), prompt_tokens=len(prompt_ids))
        others = self.in_flight
        self.in_flight += 1
        try:
            await asyncio.sleep(0.005 + 0.004 * others)
            for i in range(max_tokens):
                if i:
                    await asyncio.sleep(0.002)
                timing.token_times.append(now())
                if on_tokens is not None:
                    on_tokens(1)
        finally:
            self.in_flight -= 1
        timing.completion_tokens = max_tokens
        return timing

    def describe(self) -> dict[str, Any]:
        return {}


def test_join_measures_a_prefill_while_others_decode() -> None:
    plan = SweepPlan(prefill_batch=(1,), prefill_tokens=(16,), decode_batch=(1,),
                     decode_context=(16,), decode_steps=2, repetitions=3, warmup=0,
                     join_batch=(1, 4))
    join = run_virtual(sweep(_Streaming(), plan, vocab_size=512)).join
    assert join is not None and join.batch == (1, 4) and join.tokens == (16,)
    one, four = join.ms[0][0], join.ms[1][0]
    # TTFT less half the running requests' step: 5 + 4 b - 1 ms
    assert (one, four) == (pytest.approx(8.0), pytest.approx(20.0))
    assert plan.fitted(max_num_seqs=4, max_model_len=512).join_batch == (1,)


class _Stalls:
    """Streams tokens 2 ms apart, except every fourth gap, which stalls for 8 ms."""

    async def run(self, prompt_ids: list[int], max_tokens: int, on_tokens: Any = None) -> Timing:
        timing = Timing(now(), prompt_tokens=len(prompt_ids), completion_tokens=max_tokens)
        await asyncio.sleep(0.005)
        timing.token_times.append(now())
        for i in range(1, max_tokens):
            await asyncio.sleep(0.008 if i % 4 == 0 else 0.002)
            timing.token_times.append(now())
        return timing

    def describe(self) -> dict[str, Any]:
        return {}


def test_decode_step_is_the_mean_gap_as_tpot_is() -> None:
    plan = SweepPlan(prefill_batch=(1,), prefill_tokens=(16,), decode_batch=(1,),
                     decode_context=(16,), decode_steps=8, repetitions=1, warmup=0)
    decode = run_virtual(sweep(_Stalls(), plan, vocab_size=512)).decode
    assert decode.ms[0][0] == pytest.approx((6 * 2 + 2 * 8) / 8)  # the median gap would be 2


class _Varying:
    """A first token after 30, 30, 34, 41 ms in turn (one request after another); 1 ms a token."""

    def __init__(self) -> None:
        self.ttft = iter([0.030, 0.030, 0.034, 0.041] * 10)

    async def run(self, prompt_ids: list[int], max_tokens: int, on_tokens: Any = None) -> Timing:
        timing = Timing(now(), prompt_tokens=len(prompt_ids), completion_tokens=max_tokens)
        await asyncio.sleep(next(self.ttft))
        timing.token_times.append(now())
        for _ in range(max_tokens - 1):
            await asyncio.sleep(0.001)
            timing.token_times.append(now())
        return timing

    def describe(self) -> dict[str, Any]:
        return {}


def test_path_jitter_is_every_lone_prefill_less_its_cells_median() -> None:
    plan = SweepPlan(prefill_batch=(1, 2), prefill_tokens=(16, 64), decode_batch=(1,),
                     decode_context=(16,), decode_steps=2, repetitions=4, warmup=0)
    swept = run_virtual(sweep(_Varying(), plan, vocab_size=512))
    assert swept.prefill.ms[0] == (pytest.approx(32.0), pytest.approx(32.0))  # median of four
    # batch 1 only (a batch of two waits for the slower of two draws), both prompt lengths
    assert swept.path_jitter_ms == pytest.approx((-2, -2, -2, -2, 2, 2, 9, 9))
