"""Batched streaming (serving/streaming.py) on a virtual clock: a fake engine that makes one
token every 5 ms, read in batches of at most one per 20 ms."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from serving.streaming import batched
from tests.virtual_time import now, run_virtual


class _Engine:
    """Yields `count` tokens, one every `step_s`; records when its stream was closed."""

    def __init__(self, count: int, step_s: float = 0.005, fail_at: int | None = None) -> None:
        self.count, self.step_s, self.fail_at = count, step_s, fail_at
        self.closed_at: float | None = None
        self.produced = 0

    async def generate(self) -> AsyncIterator[int]:
        try:
            for i in range(self.count):
                await asyncio.sleep(self.step_s)
                if i == self.fail_at:
                    raise RuntimeError("engine failed")
                self.produced += 1
                yield i
        finally:
            self.closed_at = now()


async def _collect(engine: _Engine, interval_s: float) -> list[tuple[float, list[int]]]:
    return [(now(), batch) async for batch in batched(engine.generate(), interval_s)]


def test_first_item_alone_then_one_batch_per_interval_and_the_end_at_once() -> None:
    batches = run_virtual(_collect(_Engine(10), 0.020))
    # tokens at 5, 10, ..., 50 ms: the first alone at 5 ms, then what 20 ms gathered, and
    # the end (50 ms) without waiting for the interval.
    assert [b for _, b in batches] == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]
    assert [round(t * 1e3, 6) for t, _ in batches] == [5, 25, 45, 50]


def test_every_item_once_in_order_at_any_interval() -> None:
    for interval in (0.0, 0.003, 0.020, 1.0):
        batches = run_virtual(_collect(_Engine(37), interval))
        assert [x for _, b in batches for x in b] == list(range(37))
        assert all(b for _, b in batches)


def test_interval_zero_sends_each_item_when_the_reader_keeps_up() -> None:
    batches = run_virtual(_collect(_Engine(5), 0.0))
    assert [b for _, b in batches] == [[0], [1], [2], [3], [4]]


def test_an_error_comes_after_the_items_before_it() -> None:
    engine = _Engine(10, fail_at=6)
    seen: list[int] = []

    async def main() -> None:
        async for batch in batched(engine.generate(), 0.020):
            seen.extend(batch)

    with pytest.raises(RuntimeError, match="engine failed"):
        run_virtual(main())
    assert seen == list(range(6))


def test_closing_the_batched_stream_closes_the_engine_stream_at_once() -> None:
    engine = _Engine(100)

    async def main() -> float:
        stream = batched(engine.generate(), 0.020)
        async for _ in stream:
            if engine.produced >= 5:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        return now()

    closed = run_virtual(main())
    assert engine.closed_at == closed  # aborted then, not left running
    assert engine.produced < 10


def test_cancelling_the_reader_task_closes_the_engine_stream() -> None:
    engine = _Engine(100)

    async def main() -> None:
        async def read() -> None:
            async for _ in batched(engine.generate(), 0.020):
                pass

        task = asyncio.get_running_loop().create_task(read())
        await asyncio.sleep(0.033)  # mid-interval: tokens are waiting in the buffer
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_virtual(main())
    assert engine.closed_at is not None and engine.closed_at == pytest.approx(0.033)
    assert engine.produced == 6
