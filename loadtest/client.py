"""The async HTTP client: one streaming request to any OpenAI-compatible server -> a Record.

Failures are data: an HTTP error keeps its status and the server's message (OpenAI's error
shape or the raw body), an in-band SSE error after the first token keeps the message, a
connection error or timeout gets status 0. Nothing raised here stops a run.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Literal, cast

import httpx
import numpy as np

from loadtest.records import Record
from loadtest.workload import Planned

_CONNECTIONS_PER_POOL = 32
SloHeaders = Literal["targets", "class", "none"]
_WORDS = ("the quick brown fox jumps over a lazy dog while seven bright stars watch "
          "quiet rivers run past old stone bridges").split()


class TokenPool:
    """Deterministic prompt token ids: request i takes a slice of one seeded pool, so no
    two requests share a prefix (no prefix-cache hits) and nothing is stored per request."""

    def __init__(self, seed: int, low: int, high: int, size: int = 1 << 20) -> None:
        rng = np.random.default_rng([seed, 7])
        self._pool = rng.integers(low, high, size=size).tolist()
        self._offsets = rng.integers(0, size, size=4096)

    def ids(self, index: int, n: int) -> list[int]:
        start = int(self._offsets[index % len(self._offsets)] + index * 131) % len(self._pool)
        out = self._pool[start:start + n]
        while len(out) < n:
            out += self._pool[: n - len(out)]
        return out


class OpenAIClient:
    """Streams `/v1/completions` (token-id or text prompts) or `/v1/chat/completions`."""

    def __init__(self, base_url: str, model: str, *, pool: TokenPool,
                 endpoint: Literal["completions", "chat"] = "completions",
                 ignore_eos: bool = True, slo_headers: SloHeaders = "targets",
                 timeout_s: float = 600.0, max_connections: int = 1024,
                 api_key: str | None = None,
                 extra_headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[:-3]
        self.model = model
        self.endpoint = endpoint
        self.ignore_eos = ignore_eos
        self.slo_headers = slo_headers
        self._pool = pool
        headers = {"content-type": "application/json", "accept": "text/event-stream",
                   **{k.lower(): v for k, v in (extra_headers or {}).items()}}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._headers = headers
        self._timeout = {"connect": 30.0, "read": timeout_s, "write": timeout_s,
                         "pool": timeout_s}
        # httpx's transport, not its Client: a load generator needs no cookies, redirects,
        # auth flows or event hooks, and on the request's critical path (send -> first byte
        # read) they cost ~0.2 ms, which a TTFT measurement would count.
        # httpcore's pool scans all its connections for every request: past a few dozen
        # connections that scan dominates. Several small pools, used in turn, keep it short.
        shards = max(1, math.ceil(max_connections / _CONNECTIONS_PER_POOL))
        per_pool = math.ceil(max_connections / shards)
        self._transports = [httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool))
            for _ in range(shards)]
        self._url = httpx.URL(self.base_url + ("/v1/chat/completions" if endpoint == "chat"
                                               else "/v1/completions"))

    async def aclose(self) -> None:
        for transport in self._transports:
            await transport.aclose()

    def body(self, plan: Planned) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model, "max_tokens": plan.output_tokens, "stream": True,
            "stream_options": {"include_usage": True}, "temperature": 0.0,
        }
        if self.ignore_eos:
            body["ignore_eos"] = True  # vLLM's extension (costroute's too): exact output length
        if self.endpoint == "chat":
            text = plan.prompt if plan.prompt is not None else _words(plan.index,
                                                                      plan.prompt_tokens)
            body["messages"] = [{"role": "user", "content": text}]
        else:
            body["prompt"] = (plan.prompt if plan.prompt is not None
                              else self._pool.ids(plan.index, plan.prompt_tokens))
        return body

    def headers(self, plan: Planned) -> dict[str, str]:
        if self.slo_headers == "none":
            return {}
        out = {f"x-slo-{k.removesuffix('_ms')}-ms": f"{v:g}" for k, v in plan.slo.items()}
        if self.slo_headers == "class" and plan.slo_class is not None:
            out["x-slo-class"] = plan.slo_class
        return out

    async def send(self, plan: Planned, t0: float, scheduled: float | None) -> Record:
        body, headers = self.body(plan), self.headers(plan)
        sent = time.perf_counter()
        record = Record(
            index=plan.index, sent_s=sent - t0,
            scheduled_s=None if scheduled is None else scheduled - t0,
            component=plan.component, slo_class=plan.slo_class, slo=dict(plan.slo),
            warmup=plan.warmup, planned_prompt_tokens=plan.prompt_tokens,
            planned_output_tokens=plan.output_tokens)
        try:
            transport = self._transports[plan.index % len(self._transports)]
            request = httpx.Request("POST", self._url, headers={**self._headers, **headers},
                                    content=json.dumps(body).encode(),
                                    extensions={"timeout": self._timeout})
            response = await transport.handle_async_request(request)
            stream = cast(httpx.AsyncByteStream, response.stream)
            try:
                record.status = response.status_code
                record.headers = {k: v for k, v in response.headers.items()
                                  if k.startswith("x-costroute-")}
                if response.status_code != 200:
                    record.error = _error_message(b"".join([c async for c in stream]))
                else:
                    await self._read_stream(stream, record, sent)
            finally:
                await response.aclose()
        except Exception as exc:  # recorded; the run goes on
            if record.status == 200:
                record.error = f"stream broke: {type(exc).__name__}: {exc}"
            else:
                record.status = 0
                kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection"
                record.error = f"{kind}: {type(exc).__name__}: {exc}".rstrip(": ")
        record.done_s = time.perf_counter() - sent
        if record.error is None and not record.token_s:
            record.error = "the stream ended with no tokens"
        if not record.usage_from_server:
            record.prompt_tokens = plan.prompt_tokens
            record.completion_tokens = len(record.token_s)
        return record

    async def _read_stream(self, stream: httpx.AsyncByteStream, record: Record,
                           sent: float) -> None:
        """Server-sent events, split here from the raw bytes (client CPU per chunk 4.4 -> 2.8
        us against httpx's text line decoder). Every event in a network read gets the time of
        that read: it is when those tokens reached the client."""
        tail = b""
        async for raw in stream:
            now = time.perf_counter() - sent
            lines = (tail + raw).split(b"\n")
            tail = lines.pop()
            for line in lines:
                if line.startswith(b"data:"):
                    _event(line[5:].strip(), record, now)
        if tail.startswith(b"data:"):  # a last event with no newline after it
            _event(tail[5:].strip(), record, time.perf_counter() - sent)


def _event(data: bytes, record: Record, at_s: float) -> None:
    """One SSE `data:` payload into the record."""
    if data == b"[DONE]":
        return  # the body is still read to its end: the connection goes back to the pool
    try:
        event = json.loads(data)
    except ValueError:
        record.error = f"malformed SSE event: {data[:120]!r}"
        return
    if not isinstance(event, dict):
        record.error = f"malformed SSE event: {data[:120]!r}"
        return
    if "error" in event:
        record.error = _error_message(data)
        return
    if event.get("choices"):
        # as vllm bench serve: every chunk carrying a choice is a token event, even one whose
        # text is empty (a detokenizer holding back part of a character)
        record.token_s.append(at_s)
        record.end_s = at_s
    usage = event.get("usage")
    if usage:
        record.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        record.completion_tokens = int(usage.get("completion_tokens") or 0)
        record.usage_from_server = True


def _error_message(raw: bytes) -> str:
    try:
        body = json.loads(raw)
        error = body.get("error", body) if isinstance(body, dict) else body
        if isinstance(error, dict):
            return str(error.get("message") or error)[:500]
        return str(error)[:500]
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw[:500].decode(errors="replace") or "(empty body)"


def _words(index: int, n: int) -> str:
    return " ".join(_WORDS[(index + i) % len(_WORDS)] for i in range(max(n, 1)))
