"""The ONNX Runtime engine: continuous batching over the project's ONNX decoder.

One engine thread runs the scheduler; the asyncio side only submits requests and reads
chunks, so ORT's blocking `run` never stalls the event loop. Each loop iteration:

1. take new requests and aborts (an aborted request leaves the batch or the queue at once);
2. admit waiting requests in FIFO order while the caps allow (`max_num_seqs`,
   `max_kv_tokens` reserved as prompt + max_tokens per sequence, `max_prefill_tokens`
   per prefill run), prefill them together (left-padded), emit their first tokens, and
   add their keys/values to the batch's cache (backends/kv_cache.py);
3. run one decode step for every running sequence, emit the new tokens, and drop the
   finished ones.

Works with any execution provider (CPU, CUDA, ROCm/MIGraphX, OpenVINO, CANN, ...): the
providers and their options come from `OnnxRuntimeOptions`, validated at construction.
torch is never imported.

Request trace (debugging, latency studies): with `COSTROUTE_ENGINE_TRACE=PATH` in the
engine's environment, each finished request appends one JSON line to PATH: its lengths and
when it reached the engine, was admitted, had its first token and finished, as
`time.perf_counter()` seconds (CLOCK_MONOTONIC on Linux: comparable between processes on
one host, e.g. with a load tester's send times; `benchmarks/ttft_breakdown.py` does that).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import numpy as np

from backends.detokenizer import IncrementalDetokenizer
from backends.errors import (
    ConfigError,
    EmptyPromptError,
    EngineDeadError,
    EngineError,
    EngineNotStartedError,
    InvalidRequestError,
    PromptTooLongError,
)
from backends.intake import check_request, check_token_ids
from backends.interface import (
    Chunk,
    EngineLoad,
    FinishReason,
    GenerateRequest,
    SamplingParams,
    Usage,
)
from backends.kv_cache import KVCache, left_pad
from backends.providers import ProviderSpec, validate_providers
from backends.sampling import make_rng, sample_batch

_OPT_LEVELS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class OnnxRuntimeOptions:
    """Options of the ONNX Runtime engine. Units are in the names."""

    model: str = "tiny"
    """Model size name ('tiny', 'small') in the cache, or a built model directory."""
    providers: tuple[ProviderSpec, ...] = ("CPUExecutionProvider",)
    """Execution providers in priority order; an entry is a name or (name, {option: value})."""
    intra_op_num_threads: int = 0
    """Threads inside one operator; 0 lets ONNX Runtime choose (one per physical core)."""
    inter_op_num_threads: int = 1
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    allow_spinning: bool = True
    """Let idle ORT threads spin; off saves CPU for neighbours at some latency."""
    max_num_seqs: int = 32
    """Cap on sequences in the running batch; more requests wait (FIFO)."""
    max_kv_tokens: int = 65536
    """KV-cache tokens the engine may reserve (prompt + max_tokens per running sequence)."""
    max_model_len: int | None = None
    """Context length cap (prompt + output); default: the model's max_position_embeddings."""
    max_prefill_tokens: int = 4096
    """Padded prompt tokens per prefill run; bounds how long one prefill stalls decoding."""
    step_delay_ms: float = 0.0
    """Fault knob: extra latency added to every engine step (emulates a slower device)."""

    def __post_init__(self) -> None:
        # From YAML or JSON, providers arrive as lists: [name, {options}] -> (name, {options}).
        object.__setattr__(self, "providers", tuple(
            p if isinstance(p, str) else tuple(p) for p in self.providers))

    def validate(self) -> None:
        ints = {
            "max_num_seqs": (self.max_num_seqs, 1),
            "max_kv_tokens": (self.max_kv_tokens, 1),
            "max_prefill_tokens": (self.max_prefill_tokens, 1),
            "intra_op_num_threads": (self.intra_op_num_threads, 0),
            "inter_op_num_threads": (self.inter_op_num_threads, 0),
        }
        for name, (value, low) in ints.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}", name)
        if self.max_model_len is not None and (
            not isinstance(self.max_model_len, int) or self.max_model_len < 2
        ):
            raise ConfigError(
                f"max_model_len must be an integer >= 2, got {self.max_model_len!r}",
                "max_model_len",
            )
        if self.graph_optimization_level not in _OPT_LEVELS:
            raise ConfigError(
                f"graph_optimization_level must be one of {_OPT_LEVELS}, "
                f"got {self.graph_optimization_level!r}",
                "graph_optimization_level",
            )
        if self.step_delay_ms < 0:
            raise ConfigError(
                f"step_delay_ms must be >= 0, got {self.step_delay_ms!r}", "step_delay_ms"
            )


@dataclass(eq=False)
class _Seq:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    detok: IncrementalDetokenizer
    sink: tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]
    rng: np.random.Generator
    reserved_tokens: int
    arrived: float  # perf_counter at intake; admitted / first token: 0.0 until then
    admitted_at: float = 0.0
    first_token_at: float = 0.0
    output_ids: list[int] = field(default_factory=list)
    last_token: int = 0
    length: int = 0  # tokens in the KV cache
    admitted: bool = False  # holds a KV reservation


class OnnxRuntimeEngine:
    """Continuous-batching engine over ONNX Runtime. See the module docstring."""

    def __init__(self, options: OnnxRuntimeOptions | None = None) -> None:
        self.options = options or OnnxRuntimeOptions()
        self.options.validate()
        self._provider_names, self._provider_options = validate_providers(self.options.providers)
        self._cv = threading.Condition()
        self._inbox: list[_Seq] = []
        self._aborts: set[str] = set()
        self._active: dict[str, _Seq] = {}  # waiting or running, by request id
        self._waiting: deque[_Seq] = deque()
        self._running: list[_Seq] = []
        self._kv_reserved = 0
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._dead: BaseException | None = None
        self._started = False
        self.steps = 0
        self._trace: TextIO | None = None  # COSTROUTE_ENGINE_TRACE, open while started

    # ---- public API -------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        await asyncio.get_running_loop().run_in_executor(None, self._load)
        trace = os.environ.get("COSTROUTE_ENGINE_TRACE")
        self._trace = open(trace, "a", buffering=1) if trace else None  # noqa: SIM115
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="ort-engine", daemon=True)
        self._thread.start()
        self._started = True

    async def shutdown(self) -> None:
        if not self._started:
            return
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._fail_all(EngineNotStartedError("the engine was shut down"))
        if self._trace is not None:
            self._trace.close()
            self._trace = None
        self._started = False

    def health(self) -> None:
        if self._dead is not None:
            raise EngineDeadError(f"the ONNX Runtime engine loop died: {self._dead!r}")
        if not self._started:
            raise EngineNotStartedError("the ONNX Runtime engine is not started; call start()")

    def load(self) -> EngineLoad:
        return EngineLoad(
            running=len(self._running),
            waiting=len(self._waiting) + len(self._inbox),
            kv_tokens_used=self._kv_reserved,
            kv_tokens_capacity=self.options.max_kv_tokens,
            max_num_seqs=self.options.max_num_seqs,
        )

    @property
    def tokenizer(self):  # type: ignore[no-untyped-def]
        return self._tokenizer

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Chunk]:
        self.health()
        seq = self._new_seq(request)
        with self._cv:
            if request.request_id in self._active:
                raise InvalidRequestError(
                    f"request id {request.request_id!r} is already in use", "request_id"
                )
            self._active[request.request_id] = seq
            self._inbox.append(seq)
            self._cv.notify()
        queue = seq.sink[1]
        done = False
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    done = True
                    raise item
                if item.finished:
                    done = True
                yield item
                if done:
                    return
        finally:
            if not done:  # the consumer went away: free the slot
                self._request_abort(request.request_id)

    async def abort(self, request_id: str) -> None:
        self._request_abort(request_id)

    # ---- request intake (caller's thread) ------------------------------------------------

    def _new_seq(self, request: GenerateRequest) -> _Seq:
        params = request.sampling
        params.validate()
        if request.prompt_token_ids is not None:
            ids = list(request.prompt_token_ids)
            check_token_ids(ids, self._vocab_size)
        else:
            if not isinstance(request.prompt, str):
                raise EmptyPromptError("give a prompt (text) or prompt_token_ids", "prompt")
            ids = self._tokenizer.encode(request.prompt)
        check_request(ids, params, self._max_model_len, self._vocab_size)
        reserved = len(ids) + params.max_tokens
        if reserved > self.options.max_kv_tokens:
            raise PromptTooLongError(
                f"the request needs {reserved} KV-cache tokens but the engine holds at most "
                f"{self.options.max_kv_tokens}; lower max_tokens or raise max_kv_tokens",
                "max_tokens",
            )
        loop = asyncio.get_running_loop()
        return _Seq(
            request_id=request.request_id,
            prompt_ids=ids,
            params=params,
            detok=IncrementalDetokenizer(self._tokenizer, stop=params.stop),
            sink=(loop, asyncio.Queue()),
            rng=make_rng(params),
            reserved_tokens=reserved,
            arrived=time.perf_counter(),
        )

    def _request_abort(self, request_id: str) -> None:
        with self._cv:
            if request_id in self._active:
                self._aborts.add(request_id)
                self._cv.notify()

    # ---- loading -----------------------------------------------------------------------------

    def _load(self) -> None:
        import onnxruntime as ort

        from backends.model.build import ONNX_FILE, read_manifest, resolve_model
        from backends.tokenizer import Tokenizer

        model_dir = resolve_model(self.options.model)
        manifest = read_manifest(model_dir)
        recipe = manifest["recipe"]
        self.model_dir: Path = model_dir
        self.manifest = manifest
        self._tokenizer = Tokenizer(model_dir)
        self._vocab_size = int(manifest["vocab_size"])
        self._num_layers = int(recipe["num_hidden_layers"])
        self._kv_heads = int(recipe["num_key_value_heads"])
        self._head_dim = int(recipe["hidden_size"]) // int(recipe["num_attention_heads"])
        model_max = int(recipe["max_position_embeddings"])
        self._max_model_len = min(self.options.max_model_len or model_max, model_max)
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.options.intra_op_num_threads
        so.inter_op_num_threads = self.options.inter_op_num_threads
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.options.graph_optimization_level]
        so.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if self.options.allow_spinning else "0"
        )
        self._session = ort.InferenceSession(
            str(model_dir / ONNX_FILE),
            sess_options=so,
            providers=self._provider_names,
            provider_options=self._provider_options,
        )
        self._kv_in = [
            f"past_key_values.{i}.{k}" for i in range(self._num_layers) for k in ("key", "value")
        ]
        self._out_names = ["logits"] + [
            f"new_key_values.{i}.{k}" for i in range(self._num_layers) for k in ("key", "value")
        ]
        self._cache = self._new_cache()

    def _new_cache(self) -> KVCache:
        return KVCache(2 * self._num_layers, self._kv_heads, self._head_dim)

    # ---- the engine thread -------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while True:
                with self._cv:
                    while not (
                        self._inbox or self._aborts or self._waiting or self._running
                        or self._stopping
                    ):
                        self._cv.wait()
                    if self._stopping:
                        return
                    self._waiting.extend(self._inbox)
                    self._inbox = []
                    aborts, self._aborts = self._aborts, set()
                outbox: list[tuple[_Seq, Any]] = []
                if aborts:
                    self._apply_aborts(aborts, outbox)
                try:
                    self._admit_and_prefill(outbox)
                    if outbox:  # first tokens go out now, not after the next decode step
                        self._deliver(outbox)
                        outbox = []
                    if self._running:
                        self._decode_step(outbox)
                except Exception as exc:  # one bad step fails its requests, not the engine
                    self._fail_running(EngineError(f"engine step failed: {exc!r}"), outbox)
                self._deliver(outbox)
        except BaseException as exc:
            self._dead = exc
            self._fail_all(EngineDeadError(f"the ONNX Runtime engine loop died: {exc!r}"))
            raise

    def _apply_aborts(self, aborts: set[str], outbox: list[tuple[_Seq, Any]]) -> None:
        for seq in [s for s in self._waiting if s.request_id in aborts]:
            self._waiting.remove(seq)
            self._finish(seq, "abort", outbox)
        rows = [i for i, s in enumerate(self._running) if s.request_id in aborts]
        if rows:
            for i in rows:
                self._finish(self._running[i], "abort", outbox)
            self._drop_rows(set(rows))

    def _admit_and_prefill(self, outbox: list[tuple[_Seq, Any]]) -> None:
        opts = self.options
        admitted: list[_Seq] = []
        width = 0
        while self._waiting:
            seq = self._waiting[0]
            if len(self._running) + len(admitted) >= opts.max_num_seqs:
                break
            if self._kv_reserved + seq.reserved_tokens > opts.max_kv_tokens:
                break
            new_width = max(width, len(seq.prompt_ids))
            if admitted and new_width * (len(admitted) + 1) > opts.max_prefill_tokens:
                break
            width = new_width
            admitted.append(self._waiting.popleft())
            seq.admitted = True
            seq.admitted_at = time.perf_counter()
            self._kv_reserved += seq.reserved_tokens
        if not admitted:
            return
        ids, mask, positions = left_pad([s.prompt_ids for s in admitted])
        empty = np.zeros((len(admitted), self._kv_heads, 0, self._head_dim), dtype=np.float32)
        feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        feeds.update({name: empty for name in self._kv_in})
        try:
            outputs = self._session.run(self._out_names, feeds)
        except Exception as exc:
            for seq in admitted:
                self._kv_reserved -= seq.reserved_tokens
                self._active.pop(seq.request_id, None)
                outbox.append((seq, EngineError(f"prefill failed: {exc!r}")))
            return
        self._pace()
        for seq in admitted:
            seq.length = len(seq.prompt_ids)
        keep = self._emit_tokens(admitted, outputs[0], outbox)
        if keep:
            rows = np.asarray(keep)
            self._cache.add_rows([t[rows] for t in outputs[1:]], mask[rows])
            self._running.extend(admitted[i] for i in keep)

    def _decode_step(self, outbox: list[tuple[_Seq, Any]]) -> None:
        cache = self._cache
        n = cache.size
        ids = np.fromiter((s.last_token for s in self._running), dtype=np.int64, count=n)
        positions = np.fromiter((s.length for s in self._running), dtype=np.int64, count=n)
        # numpy inputs are passed to ONNX Runtime without a copy; the past stays in place.
        past, mask = cache.views()
        feeds: dict[str, np.ndarray] = {
            "input_ids": ids.reshape(n, 1),
            "attention_mask": mask,
            "position_ids": positions.reshape(n, 1),
        }
        feeds.update(zip(self._kv_in, past))
        outputs = self._session.run(self._out_names, feeds)
        self._pace()
        cache.append_step(outputs[1:])
        for seq in self._running:
            seq.length += 1
        keep = self._emit_tokens(self._running, outputs[0], outbox)
        if len(keep) < n:
            self._drop_rows(set(range(n)) - set(keep))

    def _emit_tokens(
        self, seqs: list[_Seq], logits: np.ndarray, outbox: list[tuple[_Seq, Any]]
    ) -> list[int]:
        """Sample one token per sequence, queue its chunk; return the rows still running."""
        tokens = sample_batch(logits, [s.params for s in seqs], [s.rng for s in seqs])
        eos = self._tokenizer.eos_token_id
        keep: list[int] = []
        for row, (seq, tok) in enumerate(zip(seqs, tokens)):
            seq.output_ids.append(tok)
            if not seq.first_token_at:
                seq.first_token_at = time.perf_counter()
            seq.last_token = tok
            p = seq.params
            reason: FinishReason | None = None
            if tok in p.stop_token_ids or (tok == eos and not p.ignore_eos):
                reason = "stop"
                text = seq.detok.flush()
            else:
                text = seq.detok.add(tok)
                if seq.detok.stopped:
                    reason = "stop"
                elif len(seq.output_ids) >= p.max_tokens:  # intake checked the context fits
                    reason = "length"
                    text += seq.detok.flush()
            if reason is None:
                outbox.append((seq, Chunk(seq.request_id, text, (tok,))))
                keep.append(row)
            else:
                self._finish(seq, reason, outbox, text, (tok,))
        return keep

    def _finish(
        self,
        seq: _Seq,
        reason: FinishReason,
        outbox: list[tuple[_Seq, Any]],
        text: str = "",
        token_ids: tuple[int, ...] = (),
    ) -> None:
        usage = Usage(len(seq.prompt_ids), len(seq.output_ids))
        if self._trace is not None:
            self._trace.write(json.dumps({
                "engine": "onnxruntime", "pid": os.getpid(), "request_id": seq.request_id,
                "prompt_tokens": len(seq.prompt_ids), "max_tokens": seq.params.max_tokens,
                "output_tokens": len(seq.output_ids), "reason": reason,
                "arrived": seq.arrived, "admitted": seq.admitted_at,
                "first_token": seq.first_token_at, "finished": time.perf_counter()}) + "\n")
        outbox.append((seq, Chunk(seq.request_id, text, token_ids, reason, usage)))
        self._active.pop(seq.request_id, None)
        if seq.admitted:
            seq.admitted = False
            self._kv_reserved -= seq.reserved_tokens

    def _drop_rows(self, rows: set[int]) -> None:
        order = self._cache.remove_rows(rows)
        self._running = [self._running[i] for i in order]

    def _fail_running(self, error: Exception, outbox: list[tuple[_Seq, Any]]) -> None:
        for seq in self._running:
            self._active.pop(seq.request_id, None)
            outbox.append((seq, error))
        self._running = []
        self._kv_reserved = 0
        self._cache = self._new_cache()

    def _fail_all(self, error: Exception) -> None:
        with self._cv:
            seqs = list(self._active.values())
            self._active.clear()
            self._inbox = []
        self._waiting.clear()
        self._running = []
        self._kv_reserved = 0
        self._deliver([(s, error) for s in seqs])

    def _pace(self) -> None:
        self.steps += 1
        if self.options.step_delay_ms:
            time.sleep(self.options.step_delay_ms / 1000)

    @staticmethod
    def _deliver(outbox: list[tuple[_Seq, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[Any], Any]]] = {}
        for seq, item in outbox:
            loop, queue = seq.sink
            by_loop.setdefault(loop, []).append((queue, item))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_put_all, items)
            except RuntimeError:  # that event loop is closed: nobody is listening
                pass


def _put_all(items: list[tuple[asyncio.Queue[Any], Any]]) -> None:
    for queue, item in items:
        queue.put_nowait(item)
