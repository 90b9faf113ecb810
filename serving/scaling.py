"""Autoscaling policies (pure, synchronous): how many replicas each backend should have now.

One interface for both policies here, and for whatever carries a decision out (the
simulator's scaling loop, loadtest/simulator.py; the live fleet):

    scaler.arrive(now, slo_class, prompt_tokens, output_tokens)   # every routed request
    decision = scaler.decide(now, {backend_id: Replicas(...)})     # every scaler.interval_s
    decision.target          # backend id -> replicas it should have (starting ones count)
    decision.routing_table   # the cost-slo policy's table to follow, or None (no table)

The caller adds replicas at once (each serves after its start-up time) and removes the ones a
target drops by draining them: no new requests, released when their last one finishes.

`CostAwareScaler` (costroute's): the request rate of every bucket (SLO class x prompt range x
output range, serving/sizing.py's edges) is smoothed and forecast a start-up time ahead; the
integer program of serving/sizing.py then gives the cheapest replicas per backend that serve
those rates within each bucket's SLO, and its split of each bucket over the backends becomes
the routing table (once the replicas it counts on are up). Growth happens at once, on the
cheapest capacity the program finds; a backend shrinks only after the program has wanted
fewer of it for `downscale_hold_s` (to the most it wanted meanwhile: no flapping on a noisy
rate), only once no replica is still starting (the replacement capacity is up), and one
backend per decision, the dearest first. A backend whose `min_replicas` is 0 may go to zero;
the router sends its requests elsewhere meanwhile (a backend without a ready replica is
unhealthy to it).

`OngoingRequestsScaler`: Ray Serve's default policy (ray.serve.autoscaling_policy, Ray
2.60), per backend: desired = ongoing requests averaged over `look_back_s` divided by
`target_ongoing_requests`, applied after `upscale_delay_s` / `downscale_delay_s` of the same
wish. It knows no prices and no SLOs; it is here so the simulator can compare the two.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from profiles.latency import LatencyModel
from serving.sizing import (
    OUTPUT_EDGES,
    PROMPT_EDGES,
    Bucket,
    Offer,
    Plan,
    bin_index,
    capacity_rps,
    edge_bucket,
    routing_table,
    solve,
)


class Replicas(NamedTuple):
    """One backend's replicas now, as the caller sees them."""

    starting: int = 0
    ready: int = 0
    draining: int = 0  # on their way out: they take no new requests
    ongoing: int = 0  # requests in flight on the ready replicas

    @property
    def provisioned(self) -> int:
        """What a target counts: the replicas that stay (starting and ready)."""
        return self.starting + self.ready


@dataclass(frozen=True)
class ScaledBackend:
    """A backend as the scaler sees it. Units are in the names."""

    id: str
    usd_per_hour: float  # per replica
    model: LatencyModel | None = None  # its profile (capacities); None: `capacity` must say
    min_replicas: int = 1
    max_replicas: int | None = None
    startup_s: float = 0.0  # from the order to serving


@dataclass(frozen=True)
class ScalingDecision:
    target: dict[str, int]
    routing_table: list[dict[str, Any]] | None = None
    reason: str = ""


class Autoscaler:
    """The interface (see the module docstring)."""

    interval_s: float = 10.0

    def arrive(self, now: float, slo_class: str | None, prompt_tokens: int,
               output_tokens: int) -> None:
        """A request was routed (the cost-aware policy counts it; the default ignores it)."""

    def decide(self, now: float, replicas: Mapping[str, Replicas]) -> ScalingDecision:
        raise NotImplementedError


# ---- costroute's: the integer program on forecast bucket rates ---------------------------


@dataclass(frozen=True)
class CostAwareSettings:
    interval_s: float = 10.0  # between decisions
    halflife_s: float = 30.0  # of the smoothed rate per bucket
    trend_halflife_s: float = 60.0  # of the total rate's smoothed slope (a rise is forecast)
    noise_z: float = 2.0  # provision for the smoothed total rate + z standard deviations
    margin: float = 0.05  # and x (1 + margin) beyond that: forecast error
    downscale_hold_s: float = 120.0  # fewer replicas only after wanting fewer this long
    resolve_change: float = 0.05  # re-solve only when a bucket's forecast moved this much
    utilisation: float = 0.85  # of serving/sizing.py's closed-form capacities
    headroom: float = 0.8
    follow_plan: bool = True  # hand the plan's split to the router as its routing table


@dataclass
class _Track:
    """One bucket's rate: the arrivals of the current interval, the smoothed rate, and its
    recent request lengths (the representative shape is their 90th percentile)."""

    bucket: Bucket  # rate 0; shape and ranges
    count: int = 0
    level: float | None = None  # req/s
    lengths: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=256))

    def shape(self) -> tuple[int, int]:
        prompts = sorted(p for p, _ in self.lengths)
        outputs = sorted(o for _, o in self.lengths)
        k = min(int(0.9 * len(prompts)), len(prompts) - 1)
        return prompts[k], outputs[k]


class CostAwareScaler(Autoscaler):
    """See the module docstring. `slos`: SLO class -> its targets (ttft_ms, tpot_ms,
    e2e_ms); requests of other classes bucket as class-less, without targets. `capacity`:
    bucket label -> backend id -> req/s per replica (e.g. the planner's calibrated figures),
    taken over the closed form where given."""

    def __init__(self, backends: Sequence[ScaledBackend],
                 slos: Mapping[str | None, Mapping[str, float]] | None = None,
                 settings: CostAwareSettings | None = None,
                 capacity: Mapping[str, Mapping[str, float]] | None = None) -> None:
        self.backends = list(backends)
        self.settings = settings or CostAwareSettings()
        self.interval_s = self.settings.interval_s
        self.slos = {k: dict(v) for k, v in (slos or {}).items()}
        self.capacity = {k: dict(v) for k, v in (capacity or {}).items()}
        self._tracks: dict[tuple[str | None, int, int], _Track] = {}
        self._last: float | None = None
        self._trend = 0.0  # of the total rate, req/s per s
        self._plans: tuple[Plan, Plan] | None = None
        self._solved_for: dict[str, float] = {}
        self._solved_with: dict[str, int] = {}
        self._buckets: list[Bucket] = []
        self._caps: dict[tuple[str, int, int, str], float] = {}
        self._wanted: dict[str, deque[tuple[float, int]]] = {b.id: deque() for b in backends}
        self._below_since: dict[str, float | None] = {b.id: None for b in backends}
        self._table: list[dict[str, Any]] | None = None
        self._lookahead_s = max((b.startup_s for b in backends), default=0.0) + self.interval_s

    def arrive(self, now: float, slo_class: str | None, prompt_tokens: int,
               output_tokens: int) -> None:
        if self._last is None:  # the first interval starts with the first request
            self._last = now
        cls = slo_class if slo_class in self.slos else None
        key = (cls, bin_index(prompt_tokens, PROMPT_EDGES), bin_index(output_tokens, OUTPUT_EDGES))
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = _Track(edge_bucket(cls, dict(self.slos.get(cls, {})),
                                                           *key[1:]))
        track.count += 1
        track.lengths.append((prompt_tokens, max(output_tokens, 1)))

    def forecast(self) -> dict[str, float]:
        """Bucket label -> the rate to provision for (req/s), as of the last decision."""
        s = self.settings
        total = sum(t.level for t in self._tracks.values() if t.level is not None)
        if total <= 0:
            return {t.bucket.label: 0.0 for t in self._tracks.values() if t.level is not None}
        # A rise of the total rate, forecast a start-up ahead, lifts every bucket alike: a
        # slope per bucket would add each one's noise (only its rises count) to the forecast.
        rise = max(self._trend, 0.0) * self._lookahead_s / total
        # The smoothed rate of Poisson arrivals varies by (rate / interval x a / (2 - a))^0.5
        # (a: the smoothing weight per interval): relatively less the more requests there are.
        a = 1.0 - 0.5 ** (self.interval_s / s.halflife_s)
        noise = s.noise_z * math.sqrt(total / self.interval_s * a / (2.0 - a)) / total
        factor = (1.0 + rise) * (1.0 + noise) * (1.0 + s.margin)
        return {t.bucket.label: t.level * factor for t in self._tracks.values()
                if t.level is not None}

    def decide(self, now: float, replicas: Mapping[str, Replicas]) -> ScalingDecision:
        self._observe(now)
        current = {b.id: replicas.get(b.id, Replicas()).provisioned for b in self.backends}
        solved = self._solve(current)
        if isinstance(solved, str):
            return ScalingDecision(current, self._table, solved)
        best, grown = solved
        starting = any(replicas.get(b.id, Replicas()).starting for b in self.backends)
        target = dict(current)
        grows = False
        downs = []
        for b in self.backends:
            if grown.replicas.get(b.id, 0) > current[b.id]:  # the fleet cannot serve it
                target[b.id] = grown.replicas[b.id]
                grows = True
            want = best.replicas.get(b.id, 0)
            history = self._wanted[b.id]
            history.append((now, want))
            while history[0][0] < now - self.settings.downscale_hold_s:
                history.popleft()
            if want >= current[b.id]:
                self._below_since[b.id] = None
                continue
            since = self._below_since[b.id]
            if since is None:
                since = self._below_since[b.id] = now
            if now - since >= self.settings.downscale_hold_s - 1e-9:
                downs.append(b)
        if downs and not starting and not grows:
            dearest = max(downs, key=lambda b: b.usd_per_hour)
            held = max(n for _, n in self._wanted[dearest.id])
            if held < current[dearest.id]:
                target[dearest.id] = held
                self._below_since[dearest.id] = None
        if self.settings.follow_plan and not starting and not grows:
            self._table = routing_table(self._buckets, grown) or None
        changes = [f"{b.id} {current[b.id]}->{target[b.id]}" for b in self.backends
                   if target[b.id] != current[b.id]]
        reason = (f"cheapest ${best.usd_per_hour:.2f}/h {dict(sorted(best.replicas.items()))}; "
                  + ("; ".join(changes) if changes else "no change"))
        return ScalingDecision(target, self._table, reason)

    # ---- internals ---------------------------------------------------------------------

    def _observe(self, now: float) -> None:
        last, self._last = self._last, now
        if last is None or now <= last:
            return
        dt = now - last
        s = self.settings
        alpha = 1.0 - 0.5 ** (dt / s.halflife_s)
        beta = 1.0 - 0.5 ** (dt / s.trend_halflife_s)
        before = after = 0.0
        for t in self._tracks.values():
            rate = t.count / dt
            t.count = 0
            if t.level is None:
                t.level = rate
                continue
            before += t.level
            t.level += alpha * (rate - t.level)
            after += t.level
        self._trend += beta * ((after - before) / dt - self._trend)

    def _solve(self, current: Mapping[str, int]) -> tuple[Plan, Plan] | str:
        """(the cheapest fleet for the forecast, the cheapest that keeps every replica of
        `current`: what to grow to, and the split to route by while the rest waits for its
        hold), or why there is none. The last answer stands while no bucket's forecast moved
        by `resolve_change` and the fleet is the same."""
        forecast = self.forecast()
        key = dict(current)
        if self._plans is not None and key == self._solved_with and _close(
                forecast, self._solved_for, self.settings.resolve_change):
            return self._plans
        buckets = []
        for t in self._tracks.values():
            rate = forecast.get(t.bucket.label, 0.0)
            if rate > 1e-9 and t.lengths:
                p, o = t.shape()
                buckets.append(dataclasses.replace(t.bucket, prompt_tokens=p, output_tokens=o,
                                                   rate_rps=rate))
        capacity = {b.label: {o.id: self._capacity(b, o) for o in self.backends}
                    for b in buckets}
        offers = [Offer(b.id, b.model, b.usd_per_hour, b.max_replicas,
                        min_replicas=b.min_replicas) for b in self.backends]
        best = solve(buckets, offers, capacity)
        if best.status != "optimal":
            return f"no fleet serves the forecast: {best.note}"
        keep = [Offer(o.id, o.model, o.usd_per_hour, o.max_replicas,
                      min_replicas=max(o.min_replicas, min(current.get(o.id, 0),
                                                           o.max_replicas or 1 << 30)))
                for o in offers]
        grown = solve(buckets, keep, capacity)
        if grown.status != "optimal":
            return f"no growth of the fleet serves the forecast: {grown.note}"
        self._plans, self._solved_for, self._solved_with = (best, grown), forecast, key
        self._buckets = buckets
        return best, grown

    def _capacity(self, bucket: Bucket, backend: ScaledBackend) -> float:
        given = self.capacity.get(bucket.label, {}).get(backend.id)
        if given is not None:
            return given
        if backend.model is None:
            return 0.0
        key = (bucket.label, bucket.prompt_tokens, bucket.output_tokens, backend.id)
        cap = self._caps.get(key)
        if cap is None:
            s = self.settings
            cap = self._caps[key] = capacity_rps(backend.model, bucket, s.utilisation, s.headroom)
        return cap


def _close(a: Mapping[str, float], b: Mapping[str, float], tolerance: float) -> bool:
    """Every rate of `a` within `tolerance` (relative) of `b`'s, and the same keys."""
    if a.keys() != b.keys():
        return False
    return all(abs(a[k] - b[k]) <= tolerance * max(b[k], 1e-9) for k in a)


# ---- Ray Serve's default, for comparison ----------------------------------------------------


class OngoingRequestsScaler(Autoscaler):
    """Ray Serve's default policy per backend (see the module docstring): the mean ongoing
    requests over `look_back_s` over `target_ongoing_requests` (per backend id, or one
    figure for all), each wish applied after it held for the delay of its direction."""

    def __init__(self, backends: Sequence[ScaledBackend],
                 target_ongoing_requests: float | Mapping[str, float] = 2.0,
                 upscale_delay_s: float = 30.0, downscale_delay_s: float = 600.0,
                 look_back_s: float = 30.0, interval_s: float = 2.0) -> None:
        self.backends = list(backends)
        self.interval_s = interval_s
        self.targets = ({b.id: float(target_ongoing_requests[b.id]) for b in backends}
                        if isinstance(target_ongoing_requests, Mapping)
                        else {b.id: float(target_ongoing_requests) for b in backends})
        self.upscale_delay_s, self.downscale_delay_s = upscale_delay_s, downscale_delay_s
        self.look_back_s = look_back_s
        self._samples: dict[str, deque[tuple[float, int]]] = {b.id: deque() for b in backends}
        self._wish: dict[str, tuple[int, float] | None] = {b.id: None for b in backends}

    def decide(self, now: float, replicas: Mapping[str, Replicas]) -> ScalingDecision:
        target = {}
        for b in self.backends:
            r = replicas.get(b.id, Replicas())
            samples = self._samples[b.id]
            samples.append((now, r.ongoing))
            while samples[0][0] < now - self.look_back_s:
                samples.popleft()
            mean = sum(n for _, n in samples) / len(samples)
            current = r.provisioned
            desired = math.ceil(mean / self.targets[b.id] - 1e-9)
            desired = max(b.min_replicas, min(desired, b.max_replicas or desired))
            if current == 0 and mean > 0:  # Ray's cold start: at once
                target[b.id] = max(desired, 1)
                self._wish[b.id] = None
                continue
            direction = (desired > current) - (desired < current)
            wish = self._wish[b.id]
            if direction == 0:
                self._wish[b.id] = None
                target[b.id] = current
                continue
            if wish is None or wish[0] != direction:
                wish = self._wish[b.id] = (direction, now)
            delay = self.upscale_delay_s if direction > 0 else self.downscale_delay_s
            if now - wish[1] >= delay - 1e-9:
                # Ray goes below one replica only from one (1 -> 0), never in one step
                target[b.id] = desired if direction > 0 or current == 1 else max(desired, 1)
                self._wish[b.id] = None
            else:
                target[b.id] = current
        return ScalingDecision(target, None, "ongoing requests / target per backend")
