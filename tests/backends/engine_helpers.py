"""Helpers shared by the engine tests: drive any `backends.interface.Engine`."""

from __future__ import annotations

import asyncio
from typing import Any

from backends.interface import Chunk, Engine, GenerateRequest, SamplingParams


async def run(engine: Engine, rid: str, ids: list[int] | None = None,
              prompt: str | None = None, **sampling: Any) -> list[Chunk]:
    """One request's chunks."""
    request = GenerateRequest(rid, prompt=prompt,
                              prompt_token_ids=None if ids is None else tuple(ids),
                              sampling=SamplingParams(**sampling))
    return [c async for c in engine.generate(request)]


async def wait_idle(engine: Engine) -> None:
    """Until nothing runs or waits (aborts are applied at the next step)."""
    for _ in range(200):
        if engine.load().running == 0 and engine.load().waiting == 0:
            return
        await asyncio.sleep(0.01)


def tokens(chunks: list[Chunk]) -> list[int]:
    return [t for c in chunks for t in c.token_ids]
