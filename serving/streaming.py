"""Streaming in batches across Ray: every message between a backend replica and the ingress
costs CPU beside the engine (a Ray object report, a pickle, a wake-up on each side), so a
backend sends the chunks that are ready as one list instead of one message per token.

    async for batch in batched(engine.generate(request), interval_s=0.02):
        yield batch                     # list[Chunk], in order, never empty

The first item goes out alone the moment it exists (TTFT pays nothing), and the source's end
is sent the moment it comes (E2E pays nothing); between them a batch leaves at most once per
`interval_s`, holding whatever the engine produced meanwhile. `interval_s=0` sends whatever is
ready at each wake-up. The same idea as Ray Serve LLM's stream batching interval; the clock
is the running loop's (virtual in tests).

Closing the batched stream (the client went away, Ray cancelled the call) cancels the task
that reads the source, so the engine's own generator runs its `finally` and aborts the request.
An error from the source is raised after the items that came before it were sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")


async def batched(source: AsyncIterator[T], interval_s: float) -> AsyncIterator[list[T]]:
    """Lists of `source`'s items, in order: the first alone, then at most one list per
    `interval_s` (the last as soon as the source ends); see the module docstring."""
    loop = asyncio.get_running_loop()
    buffer: list[T] = []
    ready = asyncio.Event()  # the buffer holds something, or the source ended
    ended = asyncio.Event()
    error: list[BaseException] = []

    async def pump() -> None:
        try:
            async for item in source:
                buffer.append(item)
                ready.set()
        except Exception as exc:  # raised to the reader after what came before it
            error.append(exc)
        finally:
            ended.set()
            ready.set()

    task = loop.create_task(pump())
    next_flush = float("-inf")
    try:
        while True:
            await ready.wait()
            wait_s = next_flush - loop.time()
            if wait_s > 0 and not ended.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ended.wait(), wait_s)
            if buffer:
                items = buffer[:]
                buffer.clear()
                if not ended.is_set():
                    ready.clear()
                next_flush = loop.time() + interval_s
                yield items
            elif ended.is_set():
                break
            else:
                ready.clear()
        if error:
            raise error[0]
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
