"""The profiler's schedule (pure asyncio; the target answers at once): idle before prefills."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from profiles.profiler import SweepPlan, sweep
from profiles.targets import Timing

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
