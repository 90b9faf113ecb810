"""What the ingress knows of each backend, kept up to date as requests start, stream and
finish (synchronous, no I/O): in-flight requests, the online latency correction, health and
the engine's own load figures; and the observed output lengths (one per router)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from backends.interface import EngineLoad
from profiles.latency import BackendLoad, Correction, LatencyModel, Prediction, RequestShape
from profiles.tracking import InflightTracker
from serving.config import BackendSpec
from serving.policies import BackendView


@dataclass
class OutputLengths:
    """Expected output length: max_tokens, or a running quantile of observed lengths."""

    mode: str = "max_tokens"
    quantile: float = 0.9
    window: deque[int] = field(default_factory=lambda: deque(maxlen=500))

    def expected(self, max_tokens: int) -> int:
        if self.mode != "quantile" or len(self.window) < 20:
            return max_tokens
        ordered = sorted(self.window)
        q = ordered[min(int(self.quantile * len(ordered)), len(ordered) - 1)]
        return max(1, min(max_tokens, q))

    def observe(self, completion_tokens: int) -> None:
        self.window.append(completion_tokens)


class BackendState:
    def __init__(self, spec: BackendSpec, model: LatencyModel) -> None:
        self.spec = spec
        self.model = model
        self.tracker = InflightTracker()
        self.correction = Correction()
        self.healthy = False  # until its replica first answers the ingress's load poll
        self.engine_load: EngineLoad | None = None
        # Running replicas: the configured count, or under autoscaling its minimum until
        # Ray Serve's counts come in (Router.replicas).
        self.replicas = spec.replicas if spec.autoscaling is None else spec.autoscaling.min_replicas

    def view(self, now: float) -> BackendView:
        load = self.tracker.snapshot(now)
        load = self._merge_engine_load(load)
        if self.replicas > 1:  # Ray spreads requests over replicas: one replica's share
            r = self.replicas
            load = BackendLoad(load.running[::r], load.waiting[::r],
                               load.arrival_rate_per_s / r, load.mean_prompt_tokens,
                               load.tightest_tpot_ms)
        return BackendView(self.spec.id, self.spec.usd_per_hour, self.model, load,
                           self.correction, self.healthy and self.replicas > 0)

    def _merge_engine_load(self, load: BackendLoad) -> BackendLoad:
        """Requests the engine has that this ingress did not send (other ingress replicas,
        direct clients) count as waiting requests of the mean shape."""
        figures = self.engine_load
        if figures is None:
            return load
        extra = figures.running + figures.waiting - len(load.running) - len(load.waiting)
        if extra <= 0:
            return load
        shape = RequestShape(int(load.mean_prompt_tokens) or 128, 64)
        return BackendLoad(load.running, load.waiting + (shape,) * extra,
                           load.arrival_rate_per_s, load.mean_prompt_tokens,
                           load.tightest_tpot_ms)

    def started(self, request_id: str, shape: RequestShape, now: float,
                tpot_ms: float | None = None) -> None:
        self.tracker.submit(request_id, shape.prompt_tokens, shape.output_tokens, now, tpot_ms)

    def tokens(self, request_id: str, count: int) -> None:
        self.tracker.tokens(request_id, count)

    def finished(self, request_id: str, predicted: Prediction | None,
                 ttft_ms: float | None, tpot_ms: float | None) -> None:
        self.tracker.finish(request_id)
        if predicted is not None and ttft_ms is not None:
            self.correction = self.correction.update(predicted, ttft_ms, tpot_ms)
