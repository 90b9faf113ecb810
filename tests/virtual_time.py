"""An asyncio loop on a virtual clock, for tests whose fake backends stand for time with
`asyncio.sleep`: when nothing is ready, the clock jumps to the next timer instead of waiting
for it, so every sleep takes exactly its length and a busy CI machine cannot stretch it."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _JumpingSelector:
    """Polls the real selector without blocking; a wait for a timer becomes a clock jump."""

    def __init__(self, loop: _VirtualTimeLoop, real: selectors.BaseSelector) -> None:
        self._loop, self._real = loop, real

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = self._real.select(0)
        if not events and timeout:
            self._loop.now += timeout
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self._selector = _JumpingSelector(self, self._selector)  # type: ignore[has-type]

    def time(self) -> float:
        return self.now


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on a virtual clock; fakes read it with `now()`."""
    with asyncio.Runner(loop_factory=_VirtualTimeLoop) as runner:
        return runner.run(main)


def now() -> float:
    """The running loop's clock: virtual under `run_virtual`, monotonic otherwise."""
    return asyncio.get_running_loop().time()
