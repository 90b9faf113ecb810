"""The vLLM engine: our engine interface over vLLM v1's `AsyncLLM`.

vLLM does the batching, scheduling, KV-cache paging and detokenization; this module maps
our types onto it:

- input is validated here first (typed errors with `field`, as the ONNX Runtime engine
  raises them), so a bad request never reaches vLLM and never disturbs other requests;
- a text prompt is tokenized once with vLLM's own tokenizer (as vLLM's completions path
  would) and passed with its token ids (vLLM's `TokensInput`), so the length checks are exact;
- our `SamplingParams` become vLLM's with `RequestOutputKind.DELTA`, and every
  `RequestOutput` becomes one `Chunk` (text and token-id deltas; the last one carries
  `finish_reason` and `usage`);
- leaving the stream early (break, `aclose`, cancellation) aborts the request in vLLM.

Load figures (`load()`): `running + waiting` is exact (vLLM's front-end count of unfinished
requests, updated in this process). The split between them and the KV-cache use come from
the scheduler statistics the engine core sends with every step; they lag by at most one
step while the engine works, and once nothing is unfinished all three are reported as 0.
`kv_tokens_used` is block-granular: vLLM's block usage fraction times the capacity.
`kv_tokens_capacity` (blocks x block size) and `max_num_seqs` are exact.

vLLM is imported only in `start()`, which runs the import and the engine start-up (~20 s
on CPU) in a thread so the event loop keeps serving. It spawns an engine-core process (and
a worker on CPU), so scripts that start this engine need an `if __name__ == "__main__":`
guard. Before that, `start()` points vLLM's cache, temp files and ZMQ sockets into
$COSTROUTE_HOME and its log to stderr (environment variables, where unset); `shutdown()`
removes the engine's socket files, which vLLM itself leaves behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.errors import (
    ConfigError,
    EmptyPromptError,
    EngineDeadError,
    EngineError,
    EngineNotStartedError,
    InvalidRequestError,
    InvalidSamplingError,
    ModelNotFoundError,
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

_DTYPES = ("auto", "float32", "float16", "bfloat16", "float", "half")
_DEFAULT_CPU_KV_CACHE_BYTES = 1 << 30
_KV_ENV = "VLLM_CPU_KVCACHE_SPACE"
_RPC_ENV = "VLLM_RPC_BASE_PATH"
# Engine arguments set from VllmOptions fields; `engine_args` may not repeat them.
_OWN_ARGS = frozenset({
    "model", "dtype", "max_model_len", "max_num_seqs", "kv_cache_memory_bytes",
    "enforce_eager", "tensor_parallel_size",
})
_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "abort": "abort",
    "repetition": "stop",  # vLLM's repetition detector stopped it
}


@dataclass(frozen=True)
class VllmOptions:
    """Options of the vLLM engine. Units are in the names."""

    model: str = "tiny"
    """Model size name ('tiny', 'small') in the cache, or a directory with an HF-format model."""
    dtype: str = "float32"
    """Weight and activation dtype; the project's models are float32."""
    max_model_len: int | None = None
    """Context length cap (prompt + output); default: the model's (2048 for the project's)."""
    max_num_seqs: int | None = None
    """Cap on sequences in the running batch; more requests wait. Default: vLLM's choice."""
    kv_cache_memory_bytes: int | None = None
    """KV-cache size in bytes. On CPU the default, when neither this nor
    `kv_cache_space_gib` nor VLLM_CPU_KVCACHE_SPACE is set, is 1 GiB (vLLM's own default
    tries to reserve most of the RAM and fails); on GPUs vLLM sizes it from free memory."""
    kv_cache_space_gib: int | None = None
    """KV-cache size in whole GiB, the alternative to `kv_cache_memory_bytes`: on CPU it sets
    VLLM_CPU_KVCACHE_SPACE (process-wide), elsewhere it becomes `kv_cache_memory_bytes`."""
    enforce_eager: bool = True
    """Skip torch.compile and graph capture: on CPU compiling costs ~45 s and gains nothing."""
    tensor_parallel_size: int = 1
    """Devices one replica shards the model over."""
    engine_args: Mapping[str, Any] = field(default_factory=dict)
    """Further `vllm.AsyncEngineArgs` fields, passed as given (e.g. {"block_size": 32})."""

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field (engine_args keys are checked at start)."""
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"model must be a size name or a directory, got {self.model!r}",
                              "model")
        if self.dtype not in _DTYPES:
            raise ConfigError(f"dtype must be one of {_DTYPES}, got {self.dtype!r}", "dtype")
        optional_ints = {
            "max_model_len": (self.max_model_len, 2),
            "max_num_seqs": (self.max_num_seqs, 1),
            "kv_cache_memory_bytes": (self.kv_cache_memory_bytes, 1 << 20),
            "kv_cache_space_gib": (self.kv_cache_space_gib, 1),
        }
        for name, (value, low) in optional_ints.items():
            if value is not None and (_not_int(value) or value < low):
                raise ConfigError(f"{name} must be an integer >= {low} (or unset), got {value!r}",
                                  name)
        if self.kv_cache_memory_bytes is not None and self.kv_cache_space_gib is not None:
            raise ConfigError(
                f"give kv_cache_memory_bytes ({self.kv_cache_memory_bytes}) or "
                f"kv_cache_space_gib ({self.kv_cache_space_gib}), not both",
                "kv_cache_space_gib",
            )
        if _not_int(self.tensor_parallel_size) or self.tensor_parallel_size < 1:
            raise ConfigError(
                f"tensor_parallel_size must be an integer >= 1, got {self.tensor_parallel_size!r}",
                "tensor_parallel_size",
            )
        if not isinstance(self.enforce_eager, bool):
            raise ConfigError(f"enforce_eager must be true or false, got {self.enforce_eager!r}",
                              "enforce_eager")
        if not isinstance(self.engine_args, Mapping):
            raise ConfigError(f"engine_args must be a mapping, got {self.engine_args!r}",
                              "engine_args")
        for key in self.engine_args:
            if key in _OWN_ARGS:
                raise ConfigError(
                    f"engine_args may not set {key!r}: use the option of that name instead",
                    f"engine_args.{key}",
                )


def _not_int(value: object) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)


class _SchedulerStats:
    """The latest scheduler figures per engine core, written by vLLM's stat-logger hook."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_engine: dict[int, tuple[int, int, float]] = {}

    def record(self, engine: int, running: int, waiting: int, kv_usage: float) -> None:
        with self._lock:
            self._by_engine[engine] = (running, waiting, kv_usage)

    def totals(self) -> tuple[int, int, float]:
        """(running, waiting, mean KV usage fraction) over the engine cores."""
        with self._lock:
            values = list(self._by_engine.values())
        if not values:
            return 0, 0, 0.0
        return (sum(v[0] for v in values), sum(v[1] for v in values),
                sum(v[2] for v in values) / len(values))


def _stat_logger_factory(stats: _SchedulerStats):  # type: ignore[no-untyped-def]
    """A vLLM per-engine stat-logger factory that feeds `stats` (vLLM imported by the caller)."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class _LoadRecorder(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            self.engine_index = engine_index

        def record(self, scheduler_stats: Any, iteration_stats: Any,
                   mm_cache_stats: Any = None, engine_idx: int = 0) -> None:
            if scheduler_stats is not None:
                stats.record(
                    engine_idx,
                    scheduler_stats.num_running_reqs,
                    scheduler_stats.num_waiting_reqs + scheduler_stats.num_skipped_waiting_reqs,
                    float(scheduler_stats.kv_cache_usage),
                )

        def log_engine_initialized(self) -> None:
            pass

    return _LoadRecorder


class VllmEngine:
    """Our engine interface over vLLM's `AsyncLLM`. See the module docstring."""

    def __init__(self, options: VllmOptions | None = None) -> None:
        self.options = options or VllmOptions()
        self.options.validate()
        self._llm: Any = None  # vllm.v1.engine.async_llm.AsyncLLM once started
        self._start_lock = asyncio.Lock()
        self._stats = _SchedulerStats()
        self._requests: set[str] = set()  # our request ids between intake and the last chunk
        self._stopping = False
        self._tokenizer: Any = None
        self._socket_dir: Path | None = None
        self.model_dir: Path | None = None

    # ---- public API -------------------------------------------------------------------

    async def start(self) -> None:
        async with self._start_lock:
            if self._llm is not None:
                return
            model_dir = _resolve_model_dir(self.options.model)
            # Importing vLLM (~6 s) and starting its engine core (~15 s) block: keep them off
            # the event loop. AsyncLLM starts its output handler on the first request.
            llm = await _in_thread(self._build, model_dir)
            self.model_dir = model_dir
            self._llm = llm
            self._stopping = False
            cache = llm.vllm_config.cache_config
            self._block_size = int(cache.block_size)
            # vLLM reserves one block as its null block; usage is counted over the rest.
            self._kv_capacity = max(int(cache.num_gpu_blocks or 0) - 1, 0) * self._block_size
            self._max_num_seqs = int(llm.vllm_config.scheduler_config.max_num_seqs)
            self._max_model_len = int(llm.model_config.max_model_len)
            vllm_tok = llm.tokenizer
            self._vllm_tokenizer = vllm_tok
            tok_vocab = int(vllm_tok.max_token_id) + 1 if vllm_tok is not None else 0
            # vLLM accepts ids below the larger of the model's and the tokenizer's vocabularies.
            self._vocab_size = max(int(llm.model_config.get_vocab_size()), tok_vocab)

    async def shutdown(self) -> None:
        async with self._start_lock:
            llm = self._llm
            if llm is None:
                return
            self._stopping = True
            if self._requests:  # their streams end with EngineNotStartedError
                await llm.abort(list(self._requests))
                await asyncio.sleep(0)
            self._llm = None
            if llm.output_handler is not None:  # stop it before the engine core goes away
                llm.output_handler.cancel()
                await asyncio.sleep(0)
            await _in_thread(llm.shutdown)
            del llm
            gc.collect()  # AsyncLLM sits in reference cycles; its __del__ fails at exit
            self._remove_socket_dir()

    def health(self) -> None:
        llm = self._llm
        if llm is None:
            raise EngineNotStartedError("the vLLM engine is not started; call start()")
        if llm.errored:
            raise EngineDeadError(
                "the vLLM engine core died; restart the engine (see the log for its error)"
            )

    def load(self) -> EngineLoad:
        llm = self._llm
        if llm is None:
            return EngineLoad(0, 0, 0, 0, self.options.max_num_seqs or 0)
        unfinished = int(llm.get_num_unfinished_requests())
        running, _, kv_usage = self._stats.totals()
        running = min(running, unfinished)
        return EngineLoad(
            running=running,
            waiting=unfinished - running,
            kv_tokens_used=round(kv_usage * self._kv_capacity) if unfinished else 0,
            kv_tokens_capacity=self._kv_capacity,
            max_num_seqs=self._max_num_seqs,
        )

    @property
    def tokenizer(self):  # type: ignore[no-untyped-def]
        """The project's tokenizer for the model (text and chat template, no transformers)."""
        if self._tokenizer is None:
            if self.model_dir is None:
                raise EngineNotStartedError("the vLLM engine is not started; call start()")
            from backends.tokenizer import Tokenizer

            self._tokenizer = Tokenizer(self.model_dir)
        return self._tokenizer

    @property
    def max_model_len(self) -> int:
        self.health()
        return self._max_model_len

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Chunk]:
        self.health()
        llm = self._llm
        prompt_ids, prompt = self._intake(request)
        rid = request.request_id
        if rid in self._requests:
            raise InvalidRequestError(f"request id {rid!r} is already in use", "request_id")
        params = self._vllm_sampling(request.sampling)
        from vllm.exceptions import VLLMClientError
        from vllm.v1.engine.exceptions import EngineDeadError as VllmDeadError

        self._requests.add(rid)
        stream = llm.generate(prompt, params, rid)
        produced = 0
        try:
            async for out in stream:
                completion = out.outputs[0] if out.outputs else None
                token_ids = tuple(completion.token_ids) if completion is not None else ()
                text = completion.text if completion is not None else ""
                produced += len(token_ids)
                if not out.finished:
                    yield Chunk(rid, text, token_ids)
                    continue
                reason = completion.finish_reason if completion is not None else "abort"
                if reason == "abort" and self._stopping:
                    raise EngineNotStartedError("the engine was shut down")
                if reason not in _FINISH:
                    raise EngineError(f"vLLM failed request {rid!r} (finish_reason {reason!r})")
                yield Chunk(rid, text, token_ids, _FINISH[reason],
                            Usage(len(prompt_ids), produced))
                return
            raise EngineError(f"vLLM ended request {rid!r} without a final output")
        except VllmDeadError as exc:
            raise EngineDeadError(f"the vLLM engine core died: {exc}; restart the engine") from exc
        except VLLMClientError as exc:  # our intake checks should have caught it
            raise InvalidRequestError(f"vLLM rejected request {rid!r}: {exc}",
                                      getattr(exc, "parameter", None)) from exc
        except EngineError:
            raise
        except Exception as exc:  # vLLM's EngineGenerateError and the like
            if llm.errored:
                raise EngineDeadError(f"the vLLM engine core died: {exc!r}") from exc
            raise EngineError(f"vLLM failed request {rid!r}: {exc!r}") from exc
        finally:
            self._requests.discard(rid)
            # Closing vLLM's stream before its last output aborts the request there.
            await stream.aclose()

    async def abort(self, request_id: str) -> None:
        llm = self._llm
        if llm is not None and request_id in self._requests:
            await llm.abort(request_id)

    # ---- request intake -----------------------------------------------------------------

    def _intake(self, request: GenerateRequest) -> tuple[list[int], Any]:
        """Validate `request`; return its prompt token ids and the prompt for vLLM."""
        params = request.sampling
        params.validate()  # before tokenizing: a bad field is named even with a bad prompt
        text: str | None = None
        if request.prompt_token_ids is not None:
            ids = list(request.prompt_token_ids)
            check_token_ids(ids, self._vocab_size)
        else:
            if not isinstance(request.prompt, str):
                raise EmptyPromptError("give a prompt (text) or prompt_token_ids", "prompt")
            text = request.prompt
            ids = list(self._vllm_tokenizer.encode(text, add_special_tokens=True)) if text else []
        check_request(ids, params, self._max_model_len, self._vocab_size)
        from vllm.inputs import tokens_input

        # The rendered form (what vLLM's renderer makes of a TokensPrompt for a text-only
        # model): vLLM takes it as is, without its deprecated raw-prompt path.
        return ids, tokens_input(ids, prompt=text)

    @staticmethod
    def _vllm_sampling(params: SamplingParams) -> Any:
        from vllm.sampling_params import RequestOutputKind
        from vllm.sampling_params import SamplingParams as VllmSamplingParams

        try:
            return VllmSamplingParams(
                n=1,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k,
                seed=params.seed,
                max_tokens=params.max_tokens,
                stop=list(params.stop) or None,
                stop_token_ids=list(params.stop_token_ids) or None,
                ignore_eos=params.ignore_eos,
                output_kind=RequestOutputKind.DELTA,
            )
        except ValueError as exc:  # vLLM's own range checks (VLLMValidationError)
            raise InvalidSamplingError(
                f"vLLM rejected the sampling parameters: {exc}", getattr(exc, "parameter", None)
            ) from exc

    # ---- start-up (runs in a worker thread) ---------------------------------------------

    def _build(self, model_dir: Path) -> Any:
        self._socket_dir = _prepare_environment()
        try:
            return self._build_llm(model_dir)
        except BaseException:
            self._remove_socket_dir()
            raise

    def _remove_socket_dir(self) -> None:
        if self._socket_dir is None:
            return
        shutil.rmtree(self._socket_dir, ignore_errors=True)
        if os.environ.get(_RPC_ENV) == str(self._socket_dir):  # no later engine took it over
            del os.environ[_RPC_ENV]
        self._socket_dir = None

    def _build_llm(self, model_dir: Path) -> Any:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        kwargs = self._engine_kwargs(model_dir, on_cpu=current_platform.is_cpu())
        known = {f.name for f in dataclasses.fields(AsyncEngineArgs)}
        for key in kwargs:
            if key not in known:
                raise ConfigError(f"{key!r} is not a vLLM engine argument (vllm.AsyncEngineArgs)",
                                  f"engine_args.{key}")
        try:
            args = AsyncEngineArgs(**kwargs)
            return AsyncLLM.from_engine_args(
                args, stat_loggers=[_stat_logger_factory(self._stats)]
            )
        except ValueError as exc:
            raise ConfigError(f"vLLM rejected the engine options: {exc}") from exc
        except Exception as exc:
            raise EngineError(
                f"vLLM failed to start: {exc!r}; its engine-core log above says why"
            ) from exc

    def _engine_kwargs(self, model_dir: Path, on_cpu: bool) -> dict[str, Any]:
        o = self.options
        kwargs: dict[str, Any] = {
            "model": str(model_dir),
            "dtype": o.dtype,
            "enforce_eager": o.enforce_eager,
            "tensor_parallel_size": o.tensor_parallel_size,
            # Default stat loggers off: ours (load figures) and Prometheus stay on.
            "disable_log_stats": True,
        }
        if o.max_model_len is not None:
            kwargs["max_model_len"] = o.max_model_len
        if o.max_num_seqs is not None:
            kwargs["max_num_seqs"] = o.max_num_seqs
        kv_bytes = o.kv_cache_memory_bytes
        if o.kv_cache_space_gib is not None:
            if on_cpu:
                os.environ[_KV_ENV] = str(o.kv_cache_space_gib)
            else:
                kv_bytes = o.kv_cache_space_gib << 30
        elif on_cpu:
            if kv_bytes is not None:
                # vLLM lets the legacy variable override the argument; the option wins here.
                os.environ.pop(_KV_ENV, None)
            elif not os.environ.get(_KV_ENV):
                kv_bytes = _DEFAULT_CPU_KV_CACHE_BYTES
        if kv_bytes is not None:
            kwargs["kv_cache_memory_bytes"] = kv_bytes
        kwargs.update(o.engine_args)
        return kwargs


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run blocking `fn` in a thread of its own and await its result.

    Neither the thread nor the future it settles keeps the result: modules that vLLM
    imports on the way keep import-time tracebacks, hence this thread's frames, alive, and
    an AsyncLLM kept alive past `shutdown()` runs its `__del__` at interpreter exit and fails.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    box: dict[str, Any] = {}

    def wake() -> None:
        if not done.done():
            done.set_result(None)

    def run() -> None:
        try:
            box["result"] = fn(*args)
        except BaseException as exc:
            box["error"] = exc
        finally:
            loop.call_soon_threadsafe(wake)

    threading.Thread(target=run, name="vllm-engine-io", daemon=True).start()
    await done
    if "error" in box:
        raise box.pop("error")
    return box.pop("result")


def _resolve_model_dir(model: str) -> Path:
    from backends.model.build import resolve_model
    from backends.model.recipe import RECIPES

    if model in RECIPES:
        return resolve_model(model)  # raises ModelNotFoundError with the build command
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"no HF-format model at {path} (config.json missing): pass a size name "
            f"({', '.join(sorted(RECIPES))}) or a directory made by `costroute model build`"
        )
    return path


def _prepare_environment() -> Path | None:
    """Keep vLLM's files under $COSTROUTE_HOME (its cache, ZMQ sockets and temp files) and
    its log on stderr.

    VLLM_CACHE_ROOT, TMPDIR and VLLM_LOGGING_STREAM are set where unset (process-wide; a
    caller's choice wins).
    vLLM leaves its ZMQ socket files behind, so each engine gets a socket directory of its
    own through VLLM_RPC_BASE_PATH, unless the caller set that variable elsewhere. Returns
    that directory (None when the caller's setting stands) for `shutdown()` to remove, and
    unset the variable. Must run before vLLM starts its processes, which inherit the
    environment; start the engines of one process one at a time.
    """
    from backends.model.build import costroute_home

    home = costroute_home()
    tmp = home / "tmp" / "vllm"
    tmp.mkdir(parents=True, exist_ok=True)
    cache = home / "vllm"
    cache.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("VLLM_CACHE_ROOT", str(cache))
    os.environ.setdefault("TMPDIR", str(tmp))
    # vLLM logs to stdout by default, into the middle of whatever its host prints there.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    callers = os.environ.get(_RPC_ENV)
    if callers and not Path(callers).is_relative_to(tmp):
        return None
    sockets = Path(tempfile.mkdtemp(prefix=f"sockets-{os.getpid()}-", dir=tmp))
    os.environ[_RPC_ENV] = str(sockets)
    return sockets
