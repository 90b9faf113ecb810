"""What the profiler and the validator drive: an engine in-process, or an OpenAI-compatible
server over HTTP (vLLM's own included). Both report the same timings for one request."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Timing:
    """One request as the client saw it (perf_counter seconds)."""

    sent: float
    token_times: list[float] = field(default_factory=list)  # arrival of each token (or chunk)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None

    @property
    def ttft_ms(self) -> float:
        return (self.token_times[0] - self.sent) * 1e3

    @property
    def e2e_ms(self) -> float:
        return (self.token_times[-1] - self.sent) * 1e3

    @property
    def tpot_ms(self) -> float | None:
        n = self.completion_tokens
        return (self.e2e_ms - self.ttft_ms) / (n - 1) if n > 1 else None


class Target(Protocol):
    """A backend to measure. `on_tokens(count)` is called as tokens arrive (may be None)."""

    async def run(self, prompt_ids: list[int], max_tokens: int, on_tokens: Any = None) -> Timing:
        ...

    def describe(self) -> dict[str, Any]:
        """Engine name/version/provider/options and capacity, as far as known."""
        ...


class EngineTarget:
    """An engine of ours, in this process."""

    def __init__(self, engine: Any, description: dict[str, Any]) -> None:
        self.engine = engine
        self._description = description
        self._ids = 0

    async def run(self, prompt_ids: list[int], max_tokens: int, on_tokens: Any = None) -> Timing:
        from backends.interface import GenerateRequest, SamplingParams

        self._ids += 1
        request = GenerateRequest(
            f"profile-{self._ids}",
            prompt_token_ids=tuple(prompt_ids),
            sampling=SamplingParams(max_tokens=max_tokens, ignore_eos=True),
        )
        timing = Timing(sent=time.perf_counter(), prompt_tokens=len(prompt_ids))
        try:
            async for chunk in self.engine.generate(request):
                now = time.perf_counter()
                if chunk.token_ids:
                    timing.token_times.extend([now] * len(chunk.token_ids))
                    if on_tokens is not None:
                        on_tokens(len(chunk.token_ids))
                if chunk.usage is not None:
                    timing.completion_tokens = chunk.usage.completion_tokens
        except Exception as exc:  # recorded, the sweep goes on
            timing.error = repr(exc)
        return timing

    def describe(self) -> dict[str, Any]:
        return self._description


class HttpTarget:
    """An OpenAI-compatible server: streams `/v1/completions` with prompt token ids."""

    def __init__(self, base_url: str, model: str, description: dict[str, Any],
                 headers: dict[str, str] | None = None) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.model = model
        self._description = description
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(600.0), headers=headers or {},
                                         limits=httpx.Limits(max_connections=1024,
                                                             max_keepalive_connections=1024))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(self, prompt_ids: list[int], max_tokens: int, on_tokens: Any = None) -> Timing:
        body = {
            "model": self.model,
            "prompt": prompt_ids,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        timing = Timing(sent=time.perf_counter(), prompt_tokens=len(prompt_ids))
        try:
            async with self._client.stream("POST", f"{self.base_url}/v1/completions",
                                           json=body) as response:
                if response.status_code != 200:
                    timing.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                    return timing
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    now = time.perf_counter()
                    data = json.loads(line[6:])
                    if data.get("choices") and data["choices"][0].get("text") is not None:
                        timing.token_times.append(now)
                        if on_tokens is not None:
                            on_tokens(1)
                    usage = data.get("usage")
                    if usage:
                        timing.prompt_tokens = usage.get("prompt_tokens", timing.prompt_tokens)
                        timing.completion_tokens = usage.get("completion_tokens", 0)
        except Exception as exc:
            timing.error = repr(exc)
        if not timing.completion_tokens:
            timing.completion_tokens = len(timing.token_times)
        return timing

    def describe(self) -> dict[str, Any]:
        return self._description
