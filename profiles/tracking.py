"""In-flight request tracking per backend (pure, synchronous): what the router and the
profile validator know of a backend's load from the requests they sent it.

A request is *waiting* from submission until its first token, then *running* until it
finishes. Snapshots give the latency model its `BackendLoad`.
"""

from __future__ import annotations

from dataclasses import dataclass

from profiles.latency import BackendLoad, RequestShape, RunningSeq


@dataclass
class _Flight:
    prompt_tokens: int
    expected_output: int
    generated: int = 0
    started: bool = False


class InflightTracker:
    def __init__(self) -> None:
        self._flights: dict[str, _Flight] = {}  # insertion order = arrival order

    def __len__(self) -> int:
        return len(self._flights)

    def submit(self, request_id: str, prompt_tokens: int, expected_output: int) -> None:
        self._flights[request_id] = _Flight(prompt_tokens, max(expected_output, 1))

    def tokens(self, request_id: str, count: int = 1) -> None:
        f = self._flights.get(request_id)
        if f is not None:
            f.started = True
            f.generated += count

    def finish(self, request_id: str) -> None:
        self._flights.pop(request_id, None)

    def snapshot(self) -> BackendLoad:
        running = []
        waiting = []
        for f in self._flights.values():
            if f.started:
                remaining = max(f.expected_output - f.generated, 1)
                running.append(RunningSeq(f.prompt_tokens + f.generated, remaining))
            else:
                waiting.append(RequestShape(f.prompt_tokens, f.expected_output))
        return BackendLoad(tuple(running), tuple(waiting))
