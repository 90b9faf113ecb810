"""What-if simulator (pure, discrete-event): a fleet, a workload, a policy -> the records a
load test would have written, and the same summary.

Each backend replica is the continuous-batching engine the latency model describes, now driven
by real arrivals: at a step boundary it admits queued requests in FIFO order while the caps
allow (sequences, KV tokens reserved for prompt + output), prefills them together
(prefill(group, longest prompt) from the profile, which gives each its first token, plus what
joining the running batch adds where the profile measured it), then runs
decode steps for the whole batch (decode(batch, mean context)). Between events the batch is
constant, so a decode phase runs to the next finish in one event; an arrival that can be
admitted cuts the phase at the next step boundary. Time is exact to the profile; nothing here
reads a clock.

A table measured through a server (`costroute profile measure --url`) holds more than engine
time: every TTFT includes the serving path (client -> proxy -> ingress -> replica and the
first token back, `LatencyModel.path_ms`), and what joining a running batch adds to it is
mostly the joiner waiting in that path while the replica streams the others' tokens. Neither
keeps the engine from the requests it runs, so with such a table a request reaches its
replica's queue that long after it was routed (path, plus the join's extra if the replica has
sequences running), and its prefill takes the engine for the table's time less the path.
Alone, its TTFT is the table's, plus one draw from the table's path jitter (a lone request's
TTFT less the median of its cell, every batch-1 sample the profiler or its probes took): the
serving path varies from one request to the next, and the draws, seeded by the workload's
seed, keep a run reproducible.

Routing is the live router's: for each request the policy (`serving.policies.make_policy`,
the same registry and code the ingress uses) gets a `RoutingContext` built as the ingress
builds it, with each backend's load as the router would see it (requests waiting for their
first token, running ones with their context and remaining tokens, recent arrivals), and the
same online correction learned from what the simulated replicas really did. A backend may have
two profiles: the router's (`model`, what the policy predicts with) and the replicas' truth
(`truth`, e.g. one measured through the serving path). Within a backend a request goes to the
replica with the fewest requests, as Ray Serve's power-of-two-choices does on average.

Backends that share a machine slow each other down. With an interference table
(profiles/interference.py) a replica's work runs slower by the measured factor while its
neighbours work, by what they do (a decoding neighbour, which streams tokens, may cost more
than a prefilling one) and how many requests each has in flight: each op's progress is kept in
undisturbed-machine milliseconds, and when what a neighbour does or its requests in flight
(up to the most the table measured) change, every running op on the node is re-timed from
where it got to. The factors were measured on a lone request, so they slow the part of an op
that a lone request would take (prefill(group, prompt); a decode step of one sequence). The
rest, what joining a running batch adds to a prefill and what b sequences add to a step,
is the backend's own contention for the same cores, measured in its profile, and is not
slowed again: pace = 1 + (factor - 1) x that part / the op's time.
"""

from __future__ import annotations

import gc
import heapq
import math
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from loadtest.records import BACKEND_HEADER, COST_HEADER, Record
from loadtest.workload import Planned, WorkloadSpec, bounded_plans, plan_requests
from profiles.interference import InterferenceTable, Kind
from profiles.latency import (
    BackendLoad,
    Correction,
    LatencyModel,
    Prediction,
    RequestShape,
    RunningSeq,
)
from profiles.tracking import ArrivalRate
from serving.policies import BackendView, Policy, RoutingContext, Slo
from serving.policies.base import Fallback
from serving.scaling import Autoscaler, Replicas


@dataclass(frozen=True)
class SimBackend:
    id: str
    model: LatencyModel  # the router's profile (what the policy predicts with)
    usd_per_hour: float  # per replica
    replicas: int = 1  # at the start (a scaler changes it)
    truth: LatencyModel | None = None  # what the replicas really do; None: the same profile
    startup_s: float = 0.0  # a replica a scaler adds serves this long after the order

    @property
    def engine(self) -> LatencyModel:
        return self.truth or self.model


@dataclass
class _Req:
    plan: Planned
    sent: float
    record: Record
    backend: int = -1
    prediction: Prediction | None = None
    ready: float = 0.0  # when it reaches the engine, after the serving path (LatencyModel.path_ms)
    tpot_ms: float = math.inf  # its TPOT target (inf: none)


# A running sequence in a replica's heap: (finish step, order, start step, start context,
# KV tokens reserved, request). `order` is unique, so the request is never compared.
_Seq = tuple[int, int, int, int, int, _Req]


class _Replica:
    """One engine. `step` counts decode steps; a sequence's context at step s is
    start_context + s - start_step, so advancing k steps touches no sequence."""

    def __init__(self, model: LatencyModel, index: int, up_s: float = 0.0,
                 state: str = "ready") -> None:
        self.m = model
        self.index = index  # among its backend's replicas
        self.state = state  # "starting", "ready" (routed to), "draining", "gone"
        self.up_s = up_s  # billed from
        self.down_s: float | None = None  # billed until (None: still provisioned)
        self.step = 0
        self.heap: list[_Seq] = []
        self.context_sum = 0
        self.reserved = 0
        self.waiting: deque[_Req] = deque()
        self.prefilling: list[_Req] = []
        self.op: str | None = None  # None (idle), "prefill", "decode"
        self.op_t0 = 0.0  # start of the op, or when its pace last changed
        self.op_end = 0.0
        self.work_ms = 0.0  # the op's work, in milliseconds of an undisturbed machine
        self.done_ms = 0.0  # of which done by op_t0
        self.pace = 1.0  # wall milliseconds per work millisecond (neighbours' interference)
        self.share = 1.0  # of the op's work, the part the neighbours slow (a lone request's)
        self.step_ms = 0.0  # decode phase: time per step
        self.phase_steps = 0  # decode phase: steps planned
        self.version = 0  # bumps invalidate scheduled events
        self.order = 0

    def count(self) -> int:
        return len(self.heap) + len(self.waiting) + len(self.prefilling)

    def view(self, now: float) -> tuple[tuple[RunningSeq, ...], tuple[RequestShape, ...], float]:
        """What the router knows: running sequences (context, remaining), requests still
        waiting for their first token (queued or in a prefill), in arrival order, and the
        tightest TPOT target among them all."""
        cur = self.step
        if self.op == "decode" and self.step_ms > 0:
            cur += min(int(self.progress_ms(now) / self.step_ms), self.phase_steps)
        tightest = math.inf
        for seq in self.heap:
            if seq[5].tpot_ms < tightest:
                tightest = seq[5].tpot_ms
        running = tuple([RunningSeq(context + cur - start, finish - cur if finish - cur > 1 else 1)
                         for finish, _, start, context, _, _ in self.heap])
        queued = (*self.prefilling, *self.waiting)
        for r in queued:
            if r.tpot_ms < tightest:
                tightest = r.tpot_ms
        waiting = tuple([RequestShape(r.plan.prompt_tokens, r.plan.output_tokens) for r in queued])
        return running, waiting, tightest

    def progress_ms(self, now: float) -> float:
        return self.done_ms + (now - self.op_t0) * 1e3 / self.pace

    def steps_to(self, at: float) -> int:
        """Decode phase: the steps done by the first step boundary after `at`."""
        return math.floor(self.progress_ms(at) / self.step_ms) + 1

    def can_admit(self, req: _Req, extra_seqs: int, extra_kv: int) -> bool:
        need = req.plan.prompt_tokens + req.plan.output_tokens
        if len(self.heap) + extra_seqs >= self.m.max_num_seqs:
            return False
        return self.reserved + extra_kv + need <= self.m.kv_tokens or not (self.heap or extra_seqs)


class Simulation:
    """One run. `run()` returns the records, one per planned request, in index order.

    With `target` (an attainment, with the arrivals given as `plans`), the run stops as soon
    as more measured (not warm-up) requests have missed their SLO than the target allows
    (`miss_budget`): `stopped` is then True, `attainment_bound` the most it could have
    reached (below the target), and the records of requests not yet finished or sent are
    missing or incomplete. A caller that only asks whether the fleet meets the target gets
    the same answer without simulating the rest of an overloaded run, whose queues make it
    the slowest kind."""

    def __init__(self, backends: list[SimBackend], policy: Policy, spec: WorkloadSpec,
                 fallback: Fallback = "fastest",
                 interference: InterferenceTable | None = None,
                 plans: list[Planned] | None = None, target: float | None = None,
                 scaler: Autoscaler | None = None) -> None:
        self.backends = backends
        self._given = plans  # explicit open-loop arrivals instead of the spec's
        self.policy = policy
        self.spec = spec
        self.fallback = fallback
        self.replicas = [[_Replica(b.engine, r) for r in range(b.replicas)] for b in backends]
        self.active = [list(reps) for reps in self.replicas]  # ready: the ones routed to
        self.scaler = scaler
        self._timers: list[tuple[float, int, int, int]] = []  # (t, order, backend, replica | -1: tick)
        self.scaling: list[tuple[float, dict[str, int], str]] = []  # (t, target, reason) per tick
        self._table: list[dict[str, Any]] | None = None  # the routing table the policy follows
        self._index = {b.id: i for i, b in enumerate(backends)}
        self.rates = [ArrivalRate() for _ in backends]
        self.corrections = [Correction() for _ in backends]  # learned as the live router does
        self._idle_views: list[BackendView | None] = [None] * len(backends)
        self._slots = [(spec.id, spec.usd_per_hour, spec.model, self.active[b], self.rates[b])
                       for b, spec in enumerate(backends)]
        self.interference = interference
        shared = set(interference.backends) if interference is not None else set()
        self._near = [tuple(c for c, o in enumerate(backends) if o.id in shared and c != b)
                      if spec.id in shared else () for b, spec in enumerate(backends)]
        self._ops = [[0, 0] for _ in backends]  # per backend: replicas prefilling, decoding
        # What each backend's neighbours see it do (`_state`), as of its last event.
        self._seen = [0] * len(backends)
        self._levels = interference.max_streams if interference is not None else 1
        self._paces: dict[tuple[int, str, int], float] = {}
        self.events: list[tuple[float, int, int, int, int]] = []  # (t, order, backend, replica, version)
        self.order = 0
        self.records: list[Record] = []
        self.sequence = 0
        self.decisions_ms = 0.0
        self._path_rng = random.Random(spec.seed)
        self.measured_plans = 0
        self.miss_budget: int | None = None
        if target is not None:
            if plans is None:
                raise ValueError("a target needs the run's arrivals (plans)")
            self.measured_plans = sum(1 for p in plans if not p.warmup)
            self.miss_budget = miss_budget(self.measured_plans, target)
        self.misses = 0  # measured requests that missed their SLO (counted with a target only)
        self.stopped = False

    # ------------------------------------------------------------------ driver

    def run(self) -> list[Record]:
        # A run allocates millions of small objects and no reference cycles: the cyclic
        # collector would only rescan the growing list of records (~15% of the run's time).
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._run()
        finally:
            if enabled:
                gc.enable()

    def _run(self) -> list[Record]:
        closed = self.spec.arrival.process == "closed"
        arrivals: Iterator[Planned] = (
            iter(self._given) if self._given is not None
            else plan_requests(self.spec) if closed else bounded_plans(self.spec))
        closed = closed and self._given is None
        self._closed = closed
        self._plans = arrivals
        self._measured = 0
        self._end = (None if self.spec.duration_s is None
                     else self.spec.warmup_s + self.spec.duration_s)
        pending: list[tuple[float, int, Planned]] = []
        if closed:
            assert self.spec.arrival.concurrency is not None
            for _ in range(min(self.spec.arrival.concurrency, self.spec.max_in_flight)):
                self._next_closed(0.0, pending)
        else:
            nxt = next(arrivals, None)
            if nxt is not None:
                pending.append((nxt.at_s or 0.0, nxt.index, nxt))
        if self.scaler is not None:
            self._timer(self.scaler.interval_s, -1, -1)
        while (pending or self.events or self._timers) and not self.stopped:
            if self._timers and (not pending or self._timers[0][0] <= pending[0][0]) and (
                    not self.events or self._timers[0][0] <= self.events[0][0]):
                t, _, b, r = heapq.heappop(self._timers)
                if r < 0:
                    self._tick(t, pending)
                else:
                    self._ready(b, self.replicas[b][r])
            elif pending and (not self.events or pending[0][0] <= self.events[0][0]):
                t, _, plan = heapq.heappop(pending)
                self._arrive(t, plan, pending)
                if not closed:
                    nxt = next(arrivals, None)
                    if nxt is not None:
                        heapq.heappush(pending, (nxt.at_s or 0.0, nxt.index, nxt))
            else:
                t, _, b, r, version = heapq.heappop(self.events)
                rep = self.replicas[b][r]
                if version == rep.version:
                    self._op_done(t, b, rep, pending)
        self.records.sort(key=lambda rec: rec.index)
        return self.records

    def _next_closed(self, t: float, pending: list[tuple[float, int, Planned]]) -> None:
        if self._end is not None and t >= self._end:
            return
        warm = t < self.spec.warmup_s
        if not warm:
            if self.spec.num_requests is not None and self._measured >= self.spec.num_requests:
                return
            self._measured += 1
        plan = next(self._plans, None)
        if plan is not None:
            heapq.heappush(pending, (t, plan.index, Planned(
                plan.index, t, plan.prompt_tokens, plan.output_tokens, plan.component,
                plan.slo_class, plan.slo, plan.prompt, warm)))

    # ------------------------------------------------------------------ routing

    def _arrive(self, t: float, plan: Planned, pending: list[tuple[float, int, Planned]]) -> None:
        record = Record(index=plan.index, sent_s=t, scheduled_s=t, component=plan.component,
                        slo_class=plan.slo_class, slo=dict(plan.slo), warmup=plan.warmup,
                        planned_prompt_tokens=plan.prompt_tokens,
                        planned_output_tokens=plan.output_tokens,
                        prompt_tokens=plan.prompt_tokens, usage_from_server=True)
        self.records.append(record)
        req = _Req(plan, t, record, tpot_ms=plan.slo.get("tpot_ms", math.inf))
        if self.scaler is not None:
            self.scaler.arrive(t, plan.slo_class, plan.prompt_tokens, plan.output_tokens)
        chosen: list[_Replica | None] = []
        views = []
        corrections, idle_views = self.corrections, self._idle_views
        for b, (bid, price, model, reps, rates) in enumerate(self._slots):
            replicas = len(reps)
            rate, mean_prompt = rates.read(t)
            if not replicas:  # scaled to zero, or not up yet: the router sees it unhealthy
                chosen.append(None)
                views.append(BackendView(bid, price, model, BackendLoad((), (), 0.0, mean_prompt),
                                         corrections[b], False))
                continue
            rep = reps[0] if replicas == 1 else min(reps, key=_Replica.count)
            chosen.append(rep)
            if rep.heap or rep.waiting or rep.prefilling:
                running, waiting, tightest = rep.view(t)
                load = BackendLoad(running, waiting, rate / replicas, mean_prompt, tightest)
                views.append(BackendView(bid, price, model, load, corrections[b]))
                continue
            idle = idle_views[b]  # an idle backend with no new arrivals: the same view again
            if idle is None or idle.load.arrival_rate_per_s != rate / replicas or \
                    idle.load.mean_prompt_tokens != mean_prompt or idle.correction is not corrections[b]:
                idle = idle_views[b] = BackendView(
                    bid, price, model, BackendLoad((), (), rate / replicas, mean_prompt),
                    corrections[b])
            views.append(idle)
        ctx = RoutingContext(RequestShape(plan.prompt_tokens, plan.output_tokens),
                             Slo(**plan.slo), tuple(views), self.fallback, self.sequence,
                             plan.slo_class)
        self.sequence += 1
        decision = self.policy.choose(ctx)
        if decision.backend_id is None:
            record.status, record.error = 429, f"rejected: {decision.reason}"
            record.done_s = 0.0
            self._judge(record)
            if self._closed:
                self._next_closed(t, pending)
            return
        b = self._index[decision.backend_id]
        record.status = 200
        record.headers = {BACKEND_HEADER: decision.backend_id, COST_HEADER: f"{decision.cost_usd:.12f}"}
        req.backend = b
        req.prediction = decision.prediction
        self.rates[b].add(t, plan.prompt_tokens)
        dest = chosen[b]
        assert dest is not None  # policies choose healthy backends only
        delay = dest.m.arrival_delay_ms(len(dest.heap), plan.prompt_tokens)
        jitter = dest.m.path_jitter_ms
        if jitter:
            delay = max(delay + jitter[self._path_rng.randrange(len(jitter))], 0.0)
        req.ready = t + delay / 1e3
        dest.waiting.append(req)
        self._kick(t, b, dest)
        if self._near[b]:
            self._touch(t, b)

    # ------------------------------------------------------------------ scaling

    def _timer(self, t: float, b: int, r: int) -> None:
        self.order += 1
        heapq.heappush(self._timers, (t, self.order, b, r))

    def _tick(self, t: float, pending: list[tuple[float, int, Planned]]) -> None:
        """The scaler's turn: it sees each backend's replicas and carries out its targets."""
        assert self.scaler is not None
        seen = {}
        for b, spec in enumerate(self.backends):
            reps = self.replicas[b]
            seen[spec.id] = Replicas(
                sum(1 for r in reps if r.state == "starting"), len(self.active[b]),
                sum(1 for r in reps if r.state == "draining"),
                sum([r.count() for r in self.active[b]]))
        decision = self.scaler.decide(t, seen)
        for b, spec in enumerate(self.backends):
            want = decision.target.get(spec.id)
            if want is not None:
                self._resize(t, b, want)
        if decision.routing_table != self._table:
            self._table = decision.routing_table
            self.policy.follow(self._table)
        self.scaling.append((t, dict(decision.target), decision.reason))
        if pending or self.events:
            self._timer(t + self.scaler.interval_s, -1, -1)

    def _resize(self, t: float, b: int, want: int) -> None:
        """Add replicas (serving after the backend's start-up time), or take away starting
        ones first, then drain the least loaded ready ones (no new requests; released when
        their last request finishes)."""
        reps = self.replicas[b]
        starting = [r for r in reps if r.state == "starting"]
        have = len(starting) + len(self.active[b])
        spec = self.backends[b]
        for _ in range(want - have):
            rep = _Replica(spec.engine, len(reps), t, "starting")
            reps.append(rep)
            if spec.startup_s > 0:
                self._timer(t + spec.startup_s, b, rep.index)
            else:
                self._ready(b, rep)
        for _ in range(have - want):
            if starting:
                rep = starting.pop()
                rep.state, rep.down_s = "gone", t
                continue
            rep = min(self.active[b], key=_Replica.count)
            self.active[b].remove(rep)
            rep.state = "draining"
            if not rep.count():
                rep.state, rep.down_s = "gone", t

    def _ready(self, b: int, rep: _Replica) -> None:
        if rep.state == "starting":
            rep.state = "ready"
            self.active[b].append(rep)

    def provisioned_usd(self, start_s: float, end_s: float) -> dict[str, float]:
        """Backend id -> dollars its replicas were billed for over [start_s, end_s]: every
        replica from its order to its release (starting, serving or draining alike)."""
        out = {}
        for spec, reps in zip(self.backends, self.replicas):
            seconds = sum(max(min(end_s if r.down_s is None else r.down_s, end_s)
                              - max(r.up_s, start_s), 0.0) for r in reps)
            out[spec.id] = spec.usd_per_hour * seconds / 3600.0
        return out

    # ------------------------------------------------------------------ engines

    def _kick(self, t: float, b: int, rep: _Replica) -> None:
        """A request joined the queue: start work if idle (or wake when it reaches the
        engine), or cut a decode phase at the first step boundary after it reaches the engine
        so it can be admitted there."""
        head = rep.waiting[0]
        if rep.op is None:
            if head.ready <= t:
                self._start_next(t, b, rep)
            else:
                self._schedule(head.ready, b, rep)  # an idle replica's wake-up
        elif rep.op == "decode" and rep.can_admit(head, 0, 0):
            done = min(rep.steps_to(max(t, head.ready)), rep.phase_steps)
            if done < rep.phase_steps:
                rep.phase_steps = done
                rep.work_ms = done * rep.step_ms
                rep.op_end = rep.op_t0 + (rep.work_ms - rep.done_ms) * rep.pace / 1e3
                self._schedule(rep.op_end, b, rep)

    def _schedule(self, t: float, b: int, rep: _Replica) -> None:
        rep.version += 1
        self.order += 1
        heapq.heappush(self.events, (t, self.order, b, rep.index, rep.version))

    def _op_done(self, t: float, b: int, rep: _Replica,
                 pending: list[tuple[float, int, Planned]]) -> None:
        if rep.op == "prefill":
            for req in rep.prefilling:
                ttft = t - req.sent
                req.record.token_s = [ttft]
                remaining = req.plan.output_tokens - 1
                if remaining <= 0:
                    self._finish(t, req, 0, pending)
                    continue
                rep.order += 1
                need = req.plan.prompt_tokens + req.plan.output_tokens
                heapq.heappush(rep.heap, (rep.step + remaining, rep.order, rep.step,
                                          req.plan.prompt_tokens, need, req))
                rep.context_sum += req.plan.prompt_tokens
                rep.reserved += need
            rep.prefilling = []
        elif rep.op == "decode":
            k = rep.phase_steps
            rep.step += k
            rep.context_sum += k * len(rep.heap)
            while rep.heap and rep.heap[0][0] == rep.step:
                finish, _, start, context, reserved, req = heapq.heappop(rep.heap)
                rep.context_sum -= context + rep.step - start
                rep.reserved -= reserved
                self._finish(t, req, finish - start, pending)
        self._start_next(t, b, rep)
        if rep.state == "draining" and not rep.count():
            rep.state, rep.down_s = "gone", t
        if self._near[b]:
            self._touch(t, b)

    def _finish(self, t: float, req: _Req, decoded: int,
                pending: list[tuple[float, int, Planned]]) -> None:
        rec = req.record
        rec.end_s = rec.done_s = t - req.sent
        rec.completion_tokens = decoded + 1
        self._judge(rec)
        if req.prediction is not None:  # the online correction, as serving/state.py applies it
            c = self.corrections[req.backend]
            self.corrections[req.backend] = c.update(req.prediction, rec.ttft_ms, rec.tpot_ms)
        if self._closed:
            self._next_closed(t, pending)

    @property
    def attainment_bound(self) -> float:
        """With a target: the attainment the run can still reach (measured plans less the
        misses so far, over the measured plans)."""
        n = self.measured_plans
        return (n - self.misses) / n if n else 0.0

    def _judge(self, rec: Record) -> None:
        """Count a finished measured request against `miss_budget`; stop past it."""
        if self.miss_budget is not None and not rec.warmup and not rec.met_slo():
            self.misses += 1
            if self.misses > self.miss_budget:
                self.stopped = True

    def _start_next(self, t: float, b: int, rep: _Replica) -> None:
        was = rep.op
        self._start_op(t, b, rep)
        if self._near[b] and was != rep.op:
            ops = self._ops[b]
            if was is not None:
                ops[1 if was == "decode" else 0] -= 1
            if rep.op is not None:
                ops[1 if rep.op == "decode" else 0] += 1

    def _state(self, b: int) -> int:
        """What backend b's neighbours see it do: 0 idle, else prefilling (1..L) or decoding
        (L+1..2L) with that many requests in flight, capped at L, the most the interference
        table measured (a decoding replica streams tokens, which costs more)."""
        doing = _doing(self._ops[b])
        if not doing:
            return 0
        load = sum([rep.count() for rep in self.replicas[b]])
        levels = self._levels
        return (doing - 1) * levels + min(max(load, 1), levels)

    def _touch(self, t: float, b: int) -> None:
        """After an event on backend b: if what its neighbours see it do changed, re-time
        their work from where it got to."""
        state = self._state(b)
        if state != self._seen[b]:
            self._seen[b] = state
            for c in self._near[b]:
                for other in self.replicas[c]:
                    if other.op is not None:
                        self._repace(t, c, other)

    def _pace(self, b: int, kind: str) -> float:
        """Wall time per unit of work for backend b's `kind` op, given what its neighbours do."""
        near = self._near[b]
        if not near:
            return 1.0
        levels = self._levels
        code = 0
        for c in near:
            code = code * (2 * levels + 1) + self._seen[c]
        key = (b, kind, code)
        pace = self._paces.get(key)
        if pace is None:
            assert self.interference is not None
            busy: dict[str, Kind] = {}
            streams: dict[str, int] = {}
            for c in near:
                state = self._seen[c]
                if state:
                    name = self.backends[c].id
                    busy[name] = "decode" if state > levels else "prefill"
                    streams[name] = state - levels if state > levels else state
            pace = self._paces[key] = self.interference.factor(
                self.backends[b].id, busy, "prefill" if kind == "prefill" else "decode", streams)
        return pace

    def _op_pace(self, b: int, rep: _Replica) -> float:
        """The pace of rep's op: the table's factor slows the op's `share`, the part a lone
        request would take; the rest comes from the backend's own concurrency."""
        assert rep.op is not None
        return 1.0 + (self._pace(b, rep.op) - 1.0) * rep.share

    def _repace(self, t: float, b: int, rep: _Replica) -> None:
        pace = self._op_pace(b, rep)
        if pace != rep.pace:
            rep.done_ms = rep.progress_ms(t)
            rep.op_t0, rep.pace = t, pace
            rep.op_end = t + max(rep.work_ms - rep.done_ms, 0.0) * pace / 1e3
            self._schedule(rep.op_end, b, rep)

    def _start_op(self, t: float, b: int, rep: _Replica) -> None:
        group: list[_Req] = []
        kv = 0
        while rep.waiting and rep.waiting[0].ready <= t and \
                rep.can_admit(rep.waiting[0], len(group), kv):
            req = rep.waiting.popleft()
            group.append(req)
            kv += req.plan.prompt_tokens + req.plan.output_tokens
        if group:
            longest = max(r.plan.prompt_tokens for r in group)
            ms, extra = rep.m.engine_prefill_ms(len(group), longest, len(rep.heap))
            rep.op, rep.op_t0, rep.prefilling = "prefill", t, group
            rep.share = ms / (ms + extra) if extra > 0 else 1.0
            ms += extra
            pace = self._op_pace(b, rep)
            rep.work_ms, rep.done_ms, rep.pace = ms, 0.0, pace
            rep.op_end = t + ms * pace / 1e3
            self._schedule(rep.op_end, b, rep)
            return
        head = rep.waiting[0] if rep.waiting else None
        if not rep.heap:
            rep.op = None
            if head is not None and head.ready > t:  # still on its way: wake when it arrives
                self._schedule(head.ready, b, rep)
                return
            for req in rep.waiting:  # cannot fit even alone: fail rather than wait forever
                req.record.status, req.record.error = 413, "request exceeds the backend's capacity"
                req.record.done_s = t - req.sent
                self._judge(req.record)
            rep.waiting.clear()
            return
        batch = len(rep.heap)
        n = rep.heap[0][0] - rep.step
        mid = (rep.context_sum + batch * n / 2) / batch
        step_ms, _ = rep.m.decode_step_ms(batch, mid)
        rep.op, rep.op_t0, rep.step_ms = "decode", t, step_ms
        rep.share = 1.0
        if batch > 1 and self._near[b]:
            rep.share = min(rep.m.decode_step_ms(1, mid)[0] / step_ms, 1.0) if step_ms > 0 else 1.0
        rep.done_ms, rep.pace = 0.0, self._op_pace(b, rep)
        if head is not None and head.ready > t and rep.can_admit(head, 0, 0) and step_ms > 0:
            # one still on its way: stop at the first step boundary after it reaches the engine
            n = min(n, rep.steps_to(head.ready))
        rep.phase_steps = n
        rep.work_ms = n * step_ms
        rep.op_end = t + rep.work_ms * rep.pace / 1e3
        self._schedule(rep.op_end, b, rep)



def _doing(ops: list[int]) -> int:
    """What a backend's neighbours see it do, from its replicas prefilling and decoding:
    0 idle, 1 prefill, 2 decode (a decoding replica streams tokens, which costs more)."""
    return 2 if ops[1] else 1 if ops[0] else 0


def simulate(backends: list[SimBackend], policy: Policy, spec: WorkloadSpec,
             fallback: Fallback = "fastest",
             interference: InterferenceTable | None = None,
             plans: list[Planned] | None = None) -> list[Record]:
    """The records of one run. `plans`: the arrivals to simulate (open loop, in time order,
    warm-up ones marked), instead of those the spec generates; the spec still gives the
    seed of the serving path's jitter. (`Simulation(..., target=)` stops early.)"""
    return Simulation(backends, policy, spec, fallback, interference, plans).run()


def miss_budget(measured: int, target: float) -> int:
    """The most SLO misses among `measured` requests that still leave attainment
    (met / measured) at or above `target`; -1 when none do."""
    if measured <= 0:
        return 0
    k = measured - math.ceil(target * measured)
    while k + 1 <= measured and (measured - k - 1) / measured >= target:
        k += 1
    while k >= 0 and (measured - k) / measured < target:
        k -= 1
    return k
