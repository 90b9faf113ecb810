"""The Ray Serve application: one deployment per backend (its engine in-process in each
replica) and a FastAPI ingress that routes every request with the configured policy and
streams the answer back through `DeploymentHandle.options(stream=True)`.

    build_app(config)         -> a bound application for serve.run()
    app_builder({"config": PATH})  for Ray Serve's own CLI: `serve run deploy/serve-local.yaml`
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from backends.errors import EngineError, InvalidRequestError
from backends.interface import Chunk, GenerateRequest, Usage
from serving import openai_api as api
from serving import ray_scaling
from serving.config import FleetConfig, load_fleet_config
from serving.router import Routed, Router
from serving.streaming import batched

POLL_INTERVAL_S = 0.5
REPLICAS_INTERVAL_S = 2.0  # how often the ingress reads the replica counts (Ray's autoscaling)
LOAD_TIMEOUT_S = 5.0  # a backend whose load() takes longer counts as unhealthy
LONG_PROMPT_CHARS = 4096  # longer prompts are tokenized in a worker thread, off the event loop
OVERHEAD_HEADER = "x-costroute-overhead-ms"  # the ingress's own time on this request


def deployment_name(backend_id: str) -> str:
    """The Ray Serve deployment of a backend (defined before the deployments: Ray pickles
    their classes, with the module names they use, when they are decorated)."""
    return f"backend-{backend_id}"


# No access log lines: one per request and one per load poll (two a second per backend).
_LOGGING = {"enable_access_log": False}


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256,
                  graceful_shutdown_timeout_s=5, logging_config=_LOGGING)
class BackendDeployment:
    """One backend's engine, in-process in this replica."""

    # Ray actors may construct asynchronously.
    async def __init__(  # type: ignore[misc]
        self, backend_id: str, engine: str, engine_options: dict[str, Any],
        stream_interval_ms: float,
    ) -> None:
        from backends.registry import make_engine

        self.backend_id = backend_id
        self.engine = make_engine(engine, engine_options)
        self.stream_interval_s = stream_interval_ms / 1e3
        await self.engine.start()

    async def generate(self, request: GenerateRequest) -> AsyncIterator[list[Chunk]]:
        """The engine's chunks in batches (serving/streaming.py): one Ray message per batch."""
        async for batch in batched(self.engine.generate(request), self.stream_interval_s):
            yield batch

    async def abort(self, request_id: str) -> None:
        await self.engine.abort(request_id)

    def load(self) -> Any:
        return self.engine.load()

    def check_health(self) -> None:  # Ray Serve's health-check hook
        self.engine.health()

    async def __del__(self) -> None:
        await self.engine.shutdown()


class _Run:
    """One routed request's stream from its backend (batches of chunks), with timing,
    tracking and the ingress's own time: `overhead_s` counts what the ingress spends on the
    request outside waiting for the backend (parsing, routing, encoding the answer)."""

    def __init__(self, router: Router, routed: Routed, stream: Any, sent: float,
                 overhead_s: float) -> None:
        self.router, self.routed, self.stream, self.sent = router, routed, stream, sent
        self.overhead_s = overhead_s
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.completion_tokens = 0
        self.done = False
        self._resumed: float | None = None  # when the ingress took over the last batch

    async def next(self) -> list[Chunk] | None:
        """The next batch (never empty), or None when the stream has ended."""
        if self._resumed is not None:
            self.overhead_s += time.monotonic() - self._resumed
            self._resumed = None
        try:
            batch: list[Chunk] = await self.stream.__anext__()
        except StopAsyncIteration:
            return None
        now = self._resumed = time.monotonic()
        count = sum(len(c.token_ids) for c in batch)
        if count:
            self.first_at = self.first_at or now
            self.last_at = now
            self.router.tokens(self.routed, count)
        usage = batch[-1].usage
        if usage is not None:
            self.completion_tokens = usage.completion_tokens
        return batch

    def finish(self, outcome: str) -> None:
        if self.done:
            return
        self.done = True
        if self._resumed is not None:
            self.overhead_s += time.monotonic() - self._resumed
        if outcome != "ok":
            self.stream.cancel()  # a client that went away aborts its request in the engine
        ttft = (self.first_at - self.sent) * 1e3 if self.first_at else None
        e2e = (self.last_at - self.sent) * 1e3 if self.last_at else None
        self.router.finished(self.routed, outcome, ttft, e2e, self.completion_tokens,
                             self.overhead_s * 1e3)


def _api_error(exc: BaseException) -> api.ApiError:
    """Our errors (also when Ray wraps them: RayTaskError subclasses the original) -> HTTP."""
    if isinstance(exc, api.ApiError):
        return exc
    if isinstance(exc, InvalidRequestError):
        return api.ApiError.from_invalid_request(exc)
    if isinstance(exc, EngineError):
        return api.ApiError.service_unavailable(f"the backend cannot serve now: {exc}", 1)
    return api.ApiError(500, f"internal error: {exc!r}", "server_error")


fastapi_app = FastAPI(title="costroute", docs_url=None, redoc_url=None)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1024,
                  graceful_shutdown_timeout_s=5, logging_config=_LOGGING)
@serve.ingress(fastapi_app)
class Ingress:
    def __init__(self, config: dict[str, Any], handles: dict[str, DeploymentHandle]) -> None:
        from backends.model import read_manifest, resolve_model
        from backends.tokenizer import Tokenizer

        self.config = FleetConfig.model_validate(config)
        self.handles = handles
        model = self.config.backends[0].engine_options.get("model", "tiny")
        model_dir = resolve_model(str(model))
        manifest = read_manifest(model_dir)
        self.tokenizer = Tokenizer(model_dir)
        max_len = int(manifest["recipe"]["max_position_embeddings"])
        self.router = Router(self.config, self.tokenizer, max_len, manifest["checksum"])
        self._poller: asyncio.Task[None] | None = None
        self._polled = asyncio.Event()  # the poller's first round is done
        self._scaling: asyncio.Task[None] | None = None

    # ---- endpoints ----------------------------------------------------------------------

    @fastapi_app.post("/v1/completions", openapi_extra=api.request_body(api.CompletionRequest))
    async def completions(self, request: Request) -> Response:
        return await self._serve(request, chat=False)

    @fastapi_app.post("/v1/chat/completions", openapi_extra=api.request_body(api.ChatCompletionRequest))
    async def chat_completions(self, request: Request) -> Response:
        return await self._serve(request, chat=True)

    @fastapi_app.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{
            "id": self.config.served_model_name, "object": "model", "created": 0,
            "owned_by": "costroute", "max_model_len": self.router.max_model_len}]}

    @fastapi_app.get("/health")
    async def health(self) -> Response:
        await self._ready()
        states = {bid: s.healthy for bid, s in self.router.states.items()}
        ok = any(states.values())
        replicas = {bid: s.replicas for bid, s in self.router.states.items()}
        return JSONResponse({"status": "ok" if ok else "unavailable", "backends": states,
                             "replicas": replicas}, status_code=200 if ok else 503)

    @fastapi_app.get("/metrics")
    async def metrics(self) -> Response:
        return PlainTextResponse(self.router.metrics.render().decode(),
                                 media_type="text/plain; version=0.0.4")

    # ---- one request ----------------------------------------------------------------------

    async def _serve(self, request: Request, chat: bool) -> Response:
        sent = time.monotonic()
        await self._ready()
        try:
            body = await request.body()
            if chat:
                parsed = api.parse_chat(body, self.config.served_model_name,
                                        self.tokenizer.apply_chat_template)
            else:
                parsed = api.parse_completion(body, self.config.served_model_name)
            slo, slo_class = api.resolve_slo(parsed, request.headers, self.config.slo_classes,
                                             self.config.default_slo_class)
            if parsed.prompt_token_ids is None and len(parsed.prompt or "") > LONG_PROMPT_CHARS:
                ids, max_tokens = await asyncio.to_thread(  # keep the event loop serving
                    self.router.prepare, parsed.prompt, None, parsed.max_tokens)
            else:
                ids, max_tokens = self.router.prepare(parsed.prompt, parsed.prompt_token_ids,
                                                      parsed.max_tokens)
            if parsed.sampling is None:  # "up to the context": now that the length is known
                parsed = parsed.with_max_tokens(max_tokens)
            assert parsed.sampling is not None
            pin = api.pinned_backend(request.headers, self.router.states)
            routed = self.router.route(ids, parsed.sampling, slo, slo_class, pin=pin)
            if routed.decision.backend_id is None:
                p = routed.decision.prediction
                retry = max(1.0, (p.queue_ms if p else 1000) / 1000)
                raise api.ApiError.slo_unmeetable(retry, routed.decision.reason)
        except Exception as exc:
            err = _api_error(exc)
            return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

        handle = self.handles[routed.decision.backend_id]  # type: ignore[index]
        gen_request = GenerateRequest(routed.request_id, prompt_token_ids=routed.prompt_token_ids,
                                      sampling=routed.sampling)
        stream = handle.options(stream=True).generate.remote(gen_request)
        self.router.started(routed, sent)
        headers = self.router.response_headers(routed)
        run = _Run(self.router, routed, stream, sent, time.monotonic() - sent)
        try:
            first = await run.next()  # errors before the first token become HTTP errors
        except Exception as exc:
            run.finish("error")
            err = _api_error(exc)
            return JSONResponse(err.body(), status_code=err.status, headers=headers)
        if parsed.stream:  # the headers leave now: they can only hold the time before the engine
            headers[OVERHEAD_HEADER] = f"{run.overhead_s * 1e3:.3f}"
            return StreamingResponse(
                self._sse(run, first, parsed, chat), media_type="text/event-stream",
                headers={**headers, "cache-control": "no-cache"})
        return await self._complete(run, first, parsed, chat, headers)

    async def _complete(self, run: _Run, first: list[Chunk] | None, parsed: Any, chat: bool,
                        headers: dict[str, str]) -> Response:
        chunks = list(first or ())
        try:
            while chunks and not chunks[-1].finished:
                batch = await run.next()
                if batch is None:
                    break
                chunks.extend(batch)
        except Exception as exc:
            run.finish("error")
            err = _api_error(exc)
            return JSONResponse(err.body(), status_code=err.status, headers=headers)
        last = chunks[-1] if chunks else None
        usage = last.usage if last and last.usage else Usage(len(run.routed.prompt_token_ids),
                                                             run.completion_tokens)
        build = api.chat_response if chat else api.completion_response
        body = build(run.routed.request_id, int(time.time()), self.config.served_model_name,
                     "".join(c.text for c in chunks),
                     (last.finish_reason if last else None) or "abort", usage)
        run.finish("ok")
        headers[OVERHEAD_HEADER] = f"{run.overhead_s * 1e3:.3f}"
        return JSONResponse(body, headers=headers)

    async def _sse(self, run: _Run, first: list[Chunk] | None, parsed: Any,
                   chat: bool) -> AsyncIterator[str]:
        """One write per batch: its chunks' SSE events (one per chunk, as before) together."""
        encoder = api.StreamEncoder(parsed, run.routed.request_id, int(time.time()),
                                    self.config.served_model_name)
        batch = first
        outcome = "aborted"  # stays so if the client goes away mid-stream
        try:
            while batch is not None:
                events = "".join(piece for chunk in batch for piece in encoder.feed(chunk))
                if events:
                    yield events
                if batch[-1].finished:
                    break
                batch = await run.next()
            outcome = "ok"
        except Exception as exc:  # the stream has started: report in-band, like vLLM
            outcome = "error"
            yield "".join(encoder.error(_api_error(exc)))
        finally:
            run.finish(outcome)

    # ---- backend load and health ------------------------------------------------------------

    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        if any(b.autoscaling for b in self.config.backends) and (
                self._scaling is None or self._scaling.done()):
            self._scaling = asyncio.get_running_loop().create_task(self._scale())

    async def _ready(self) -> None:
        """Start the poller; until its first round is done, wait for it (a bounded time): a
        backend counts as healthy only once it has answered."""
        self._ensure_poller()
        if not self._polled.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._polled.wait(), LOAD_TIMEOUT_S + 1)

    async def _poll(self) -> None:
        while True:
            await asyncio.gather(*(self._poll_one(bid, h) for bid, h in self.handles.items()))
            self._polled.set()
            await asyncio.sleep(POLL_INTERVAL_S)

    async def _poll_one(self, backend_id: str, handle: DeploymentHandle) -> None:
        state = self.router.states[backend_id]
        if state.replicas == 0:  # scaled to zero: a call would queue and wake it up
            state.healthy = False
            return
        try:
            state.engine_load = await asyncio.wait_for(handle.load.remote(), LOAD_TIMEOUT_S)
            state.healthy = True
        except Exception:
            state.healthy = False

    async def _scale(self) -> None:
        """The replica counts from Ray Serve, for the router; with the fleet's autoscaler,
        its decision, published for the backends' custom policy (serving/ray_scaling.py)."""
        app = serve.get_replica_context().app_name
        spec = self.config.autoscaler
        interval = spec.interval_s if spec is not None else REPLICAS_INTERVAL_S
        scaled = {b.id for b in self.config.backends if b.autoscaling is not None}
        while True:
            try:
                counts = await asyncio.to_thread(ray_scaling.replica_counts, app)
                by_id = {bid: counts[deployment_name(bid)] for bid in self.router.states
                         if deployment_name(bid) in counts}
                decision = self.router.scale(time.monotonic(), by_id)
                if decision is not None:
                    targets = {deployment_name(bid): n for bid, n in decision.target.items()
                               if bid in scaled}
                    await asyncio.to_thread(ray_scaling.publish, app, targets)
            except Exception as exc:  # keep scaling on the next round; say why
                logging.getLogger("ray.serve").warning("costroute autoscaler: %r", exc)
            await asyncio.sleep(interval)


def build_app(config: FleetConfig) -> Any:
    """The bound application: backend deployments and the ingress that routes to them."""
    handles = {}
    for b in config.backends:
        options: dict[str, Any] = {
            "name": deployment_name(b.id),
            "ray_actor_options": b.ray_actor_options.model_dump(exclude_defaults=False),
            "max_ongoing_requests": b.max_ongoing_requests,
        }
        a = b.autoscaling
        if a is not None:
            options["autoscaling_config"] = (
                ray_scaling.autoscaling_config(a.min_replicas, a.max_replicas)
                if config.autoscaler is not None else
                a.model_dump(include={"min_replicas", "max_replicas", "target_ongoing_requests"}))
            options["graceful_shutdown_timeout_s"] = a.drain_timeout_s
        else:
            options["num_replicas"] = b.replicas
        handles[b.id] = BackendDeployment.options(**options).bind(  # type: ignore[attr-defined]
            b.id, b.engine, dict(b.engine_options), b.stream_interval_ms)
    return Ingress.options(name="ingress").bind(  # type: ignore[attr-defined]
        config.model_dump(), handles)


def app_builder(args: dict[str, Any]) -> Any:
    """For Ray Serve's CLI: `serve run deploy/serve-local.yaml` (args: {config: PATH})."""
    return build_app(load_fleet_config(args.get("config", "deploy/local.yaml")))
