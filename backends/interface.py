"""The engine interface: the same async API for every engine (ONNX Runtime, vLLM, ...).

An engine is built from its options, then:

    await engine.start()                      # load weights, start the engine loop
    async for chunk in engine.generate(req):  # stream the answer
        ...                                   # chunk.text / chunk.token_ids are deltas
    await engine.abort(request_id)            # stop a request; its slot is freed
    engine.health()                           # raises EngineDeadError if the loop died
    engine.load()                             # EngineLoad: running, waiting, KV tokens
    await engine.shutdown()

`generate` yields `Chunk`s. Every chunk carries the new text and token ids since the last
one (either may be empty). The last chunk has `finish_reason` set ("stop", "length" or
"abort") and `usage`. Bad input raises an `InvalidRequestError` from the first iteration,
before anything is generated; it never disturbs other requests.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from backends.errors import InvalidSamplingError

FinishReason = Literal["stop", "length", "abort"]


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. Defaults are greedy decoding of up to 16 tokens."""

    max_tokens: int = 16
    temperature: float = 0.0  # 0 means greedy (argmax)
    top_p: float = 1.0  # nucleus sampling mass, in (0, 1]
    top_k: int = 0  # 0 disables top-k
    seed: int | None = None  # per-request seed: same seed, same tokens
    stop: tuple[str, ...] = ()  # stop strings; not included in the output
    stop_token_ids: tuple[int, ...] = ()  # extra stop tokens besides EOS
    ignore_eos: bool = False  # keep generating past EOS (benchmarks)

    def __post_init__(self) -> None:
        # Accept lists from callers but store tuples (frozen, hashable).
        object.__setattr__(self, "stop", tuple(self.stop))
        object.__setattr__(self, "stop_token_ids", tuple(self.stop_token_ids))

    def validate(self) -> None:
        """Raise InvalidSamplingError naming the first bad field."""
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int):
            raise InvalidSamplingError(
                f"max_tokens must be an integer, got {self.max_tokens!r}", "max_tokens"
            )
        if self.max_tokens < 1:
            raise InvalidSamplingError(
                f"max_tokens must be at least 1, got {self.max_tokens}", "max_tokens"
            )
        if not _finite(self.temperature) or self.temperature < 0:
            raise InvalidSamplingError(
                f"temperature must be a finite number >= 0, got {self.temperature!r}",
                "temperature",
            )
        if not _finite(self.top_p) or not 0 < self.top_p <= 1:
            raise InvalidSamplingError(
                f"top_p must be in (0, 1], got {self.top_p!r}", "top_p"
            )
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise InvalidSamplingError(
                f"top_k must be an integer >= 0 (0 disables it), got {self.top_k!r}", "top_k"
            )
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise InvalidSamplingError(f"seed must be an integer, got {self.seed!r}", "seed")
        for s in self.stop:
            if not isinstance(s, str) or not s:
                raise InvalidSamplingError(
                    f"stop strings must be non-empty strings, got {s!r}", "stop"
                )
        for t in self.stop_token_ids:
            if isinstance(t, bool) or not isinstance(t, int) or t < 0:
                raise InvalidSamplingError(
                    f"stop_token_ids must be non-negative integers, got {t!r}", "stop_token_ids"
                )


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class GenerateRequest:
    """One generation. Give `prompt` (text) or `prompt_token_ids` (then `prompt` is ignored)."""

    request_id: str
    prompt: str | None = None
    prompt_token_ids: tuple[int, ...] | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)

    def __post_init__(self) -> None:
        if self.prompt_token_ids is not None:
            object.__setattr__(self, "prompt_token_ids", tuple(self.prompt_token_ids))


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Chunk:
    """A streamed piece of one request's output (deltas since the previous chunk)."""

    request_id: str
    text: str = ""
    token_ids: tuple[int, ...] = ()
    finish_reason: FinishReason | None = None
    usage: Usage | None = None  # set on the last chunk only

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass(frozen=True)
class EngineLoad:
    """What an engine reports of its own load, for the router."""

    running: int  # sequences in the running batch
    waiting: int  # admitted requests queued behind it (FIFO)
    kv_tokens_used: int  # KV-cache tokens held (reserved) by running sequences
    kv_tokens_capacity: int  # KV-cache tokens the engine may hold
    max_num_seqs: int  # cap on concurrent sequences

    @property
    def kv_usage(self) -> float:
        return self.kv_tokens_used / self.kv_tokens_capacity if self.kv_tokens_capacity else 0.0


@runtime_checkable
class Engine(Protocol):
    """What every engine implements. All methods are async except the cheap reads."""

    async def start(self) -> None:
        """Load the model and start the engine loop. Idempotent."""

    def generate(self, request: GenerateRequest) -> AsyncIterator[Chunk]:
        """Stream the answer to `request`. Breaking out of the iteration aborts it."""
        ...

    async def abort(self, request_id: str) -> None:
        """Stop `request_id` (running or waiting); its stream ends with finish_reason "abort"."""

    def health(self) -> None:
        """Return if the engine can serve; raise EngineError otherwise."""

    def load(self) -> EngineLoad:
        """Current load figures."""
        ...

    async def shutdown(self) -> None:
        """Stop the engine loop and release the model. Idempotent."""
