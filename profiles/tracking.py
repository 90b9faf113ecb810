"""In-flight request tracking per backend (pure, synchronous): what the router and the
profile validator know of a backend's load from the requests they sent it.

A request is *waiting* from submission until its first token, then *running* until it
finishes. Snapshots give the latency model its `BackendLoad`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from profiles.latency import BackendLoad, RequestShape, RunningSeq


@dataclass
class _Flight:
    prompt_tokens: int
    expected_output: int
    tpot_ms: float = math.inf  # its TPOT target (inf: none)
    generated: int = 0
    started: bool = False


class InflightTracker:
    """Times are the caller's clock in seconds (monotonic); nothing here reads a clock."""

    def __init__(self, rate_window_s: float = 10.0) -> None:
        self._flights: dict[str, _Flight] = {}  # insertion order = arrival order
        self._arrivals = ArrivalRate(rate_window_s)

    def __len__(self) -> int:
        return len(self._flights)

    def submit(
        self, request_id: str, prompt_tokens: int, expected_output: int, now: float | None = None,
        tpot_ms: float | None = None,
    ) -> None:
        self._flights[request_id] = _Flight(prompt_tokens, max(expected_output, 1),
                                            math.inf if tpot_ms is None else tpot_ms)
        if now is not None:
            self._arrivals.add(now, prompt_tokens)

    def tokens(self, request_id: str, count: int = 1) -> None:
        f = self._flights.get(request_id)
        if f is not None:
            f.started = True
            f.generated += count

    def finish(self, request_id: str) -> None:
        self._flights.pop(request_id, None)

    def snapshot(self, now: float | None = None) -> BackendLoad:
        running = []
        waiting = []
        tightest = math.inf
        for f in self._flights.values():
            if f.tpot_ms < tightest:
                tightest = f.tpot_ms
            if f.started:
                remaining = max(f.expected_output - f.generated, 1)
                running.append(RunningSeq(f.prompt_tokens + f.generated, remaining))
            else:
                waiting.append(RequestShape(f.prompt_tokens, f.expected_output))
        rate, mean_prompt = self._arrivals.read(now) if now is not None else (0.0, 0.0)
        return BackendLoad(tuple(running), tuple(waiting), rate, mean_prompt, tightest)


class ArrivalRate:
    """Recent arrivals over a sliding window: their rate (per second) and mean prompt."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._arrivals: deque[tuple[float, int]] = deque()  # (time, prompt tokens)
        self._prompt_sum = 0

    def add(self, now: float, prompt_tokens: int) -> None:
        self._arrivals.append((now, prompt_tokens))
        self._prompt_sum += prompt_tokens

    def read(self, now: float) -> tuple[float, float]:
        while self._arrivals and self._arrivals[0][0] < now - self.window_s:
            self._prompt_sum -= self._arrivals.popleft()[1]
        if not self._arrivals:
            return 0.0, 0.0
        span = max(now - self._arrivals[0][0], 0.25)
        return (len(self._arrivals) / min(span, self.window_s),
                self._prompt_sum / len(self._arrivals))
