"""Fleet planner (pure): how many replicas of which accelerators serve a workload at its SLOs
for the fewest dollars per hour.

Mélange's formulation (Griggs et al., 2024). The workload is cut into buckets (SLO class x
prompt-length range x output-length range, each with its arrival rate). For every bucket b and
accelerator a, `capacity_rps` is the highest arrival rate one replica of a sustains for
requests of b while meeting b's SLO, from a's profile:

    P      = prefill(1, prompt)                  d_B = decode step(B, prompt + output / 2)
    rho    = rate x P                            (the share of time spent prefilling)
    TPOT   = d_B / (1 - rho)                     (decoding pauses for others' prefills)
    TTFT   = P + d_B / 2 + rho P / (2 (1 - rho)) (half a step, then M/D/1 on the prefills)
    E2E    = TTFT + (output - 1) TPOT
    rate x E2E <= utilisation x B                (Little: sequences in flight fit the batch)

maximised over the batch size B (up to the engine's max_num_seqs and its KV tokens), each
target times `headroom` (< 1 leaves room for the variance the means above ignore). Then an
integer program, solved with HiGHS (scipy.optimize.milp):

    minimise   sum_a usd_per_hour_a n_a
    subject to sum_a x_ba = 1                              for every bucket b
               sum_b rate_b x_ba / capacity_ba <= n_a      for every accelerator a
               x_ba in [0, 1] (0 where capacity_ba = 0), n_a integer in [0, max_replicas_a]

x_ba is the share of bucket b served by accelerator a; n_a its replica count. The answer is
checked in the simulator (`loadtest/simulator.py`) with the live cost-slo policy routing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from loadtest.workload import WorkloadSpec, plan_requests
from profiles.latency import LatencyModel

PROMPT_EDGES = (0, 128, 512, 2048, 8192, 1 << 30)
OUTPUT_EDGES = (0, 64, 256, 1024, 1 << 30)


@dataclass(frozen=True)
class Offer:
    """One accelerator type on offer: its profile and its price per replica-hour."""

    id: str
    model: LatencyModel
    usd_per_hour: float
    max_replicas: int | None = None


@dataclass(frozen=True)
class Bucket:
    label: str
    slo_class: str | None
    slo: dict[str, float]
    prompt_tokens: int  # representative (the bucket's 90th percentile: conservative)
    output_tokens: int
    rate_rps: float
    share: float


@dataclass
class Plan:
    replicas: dict[str, int]
    usd_per_hour: float
    assignment: dict[str, dict[str, float]]  # bucket label -> offer id -> share of the bucket
    status: str
    solve_s: float = 0.0
    note: str = ""


@dataclass
class Planning:
    buckets: list[Bucket]
    offers: list[Offer]
    capacity: dict[str, dict[str, float]]  # bucket label -> offer id -> rps per replica
    best: Plan
    homogeneous: dict[str, Plan] = field(default_factory=dict)  # offer id -> plan

    def cheapest_homogeneous(self) -> Plan | None:
        feasible = [p for p in self.homogeneous.values() if p.status == "optimal"]
        return min(feasible, key=lambda p: p.usd_per_hour) if feasible else None


def buckets(spec: WorkloadSpec, samples: int = 20_000,
            prompt_edges: Sequence[int] = PROMPT_EDGES,
            output_edges: Sequence[int] = OUTPUT_EDGES) -> list[Bucket]:
    """The workload's request mix, cut into buckets with their arrival rates."""
    if spec.arrival.rate_rps is None:
        raise ValueError("planning needs an open-loop arrival rate (rate_rps)")
    plans = []
    for p in plan_requests(spec):
        plans.append(p)
        if len(plans) >= samples:
            break
    groups: dict[tuple[str | None, int, int], list[tuple[int, int]]] = {}
    for p in plans:
        key = (p.slo_class, _bin(p.prompt_tokens, prompt_edges), _bin(p.output_tokens, output_edges))
        groups.setdefault(key, []).append((p.prompt_tokens, p.output_tokens))
    out = []
    for (cls, pi, oi), shapes in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1:])):
        arr = np.asarray(shapes)
        share = len(shapes) / len(plans)
        slo = spec.slo_classes[cls].model_dump(exclude_none=True) if cls in spec.slo_classes else {}
        label = (f"{cls or 'no-slo'} p{prompt_edges[pi]}-{_edge(prompt_edges[pi + 1])} "
                 f"o{output_edges[oi]}-{_edge(output_edges[oi + 1])}")
        out.append(Bucket(label, cls, slo, int(np.percentile(arr[:, 0], 90)),
                          int(np.percentile(arr[:, 1], 90)), spec.arrival.rate_rps * share, share))
    return out


def _bin(x: int, edges: Sequence[int]) -> int:
    for i in range(len(edges) - 1):
        if edges[i] <= x < edges[i + 1]:
            return i
    return len(edges) - 2


def _edge(x: int) -> str:
    return "inf" if x >= 1 << 30 else str(x)


def capacity_rps(model: LatencyModel, bucket: Bucket, utilisation: float = 0.85,
                 headroom: float = 0.8) -> float:
    """The highest arrival rate of `bucket`'s requests one replica sustains within its SLO
    (0 when even one request alone misses it)."""
    p, o = bucket.prompt_tokens, max(bucket.output_tokens, 1)
    per_seq = p + o
    if per_seq > model.kv_tokens:
        return 0.0
    prefill = model.prefill_ms(1, p)[0]
    targets = {k: v * headroom for k, v in bucket.slo.items()}
    best = 0.0
    max_batch = min(model.max_num_seqs, model.kv_tokens // per_seq)
    for batch in _batch_sizes(max_batch):
        step = model.decode_step_ms(batch, p + o / 2)[0]
        best = max(best, _max_rate(prefill, step, batch, o, targets, utilisation))
    return best


def _batch_sizes(max_batch: int) -> list[int]:
    sizes = {1, max_batch}
    b = 2
    while b < max_batch:
        sizes.add(b)
        b = b * 2 if b < 16 else b + max(b // 4, 1)
    return sorted(sizes)


def _max_rate(prefill_ms: float, step_ms: float, batch: int, output: int,
              targets: dict[str, float], utilisation: float) -> float:
    def ok(rate: float) -> bool:
        rho = rate * prefill_ms / 1e3
        if rho >= 1:
            return False
        tpot = step_ms / (1 - rho)
        ttft = prefill_ms + step_ms / 2 + rho * prefill_ms / (2 * (1 - rho))
        e2e = ttft + (output - 1) * tpot
        return (tpot <= targets.get("tpot_ms", math.inf) and ttft <= targets.get("ttft_ms", math.inf)
                and e2e <= targets.get("e2e_ms", math.inf)
                and rate * e2e / 1e3 <= utilisation * batch)

    if not ok(1e-9):
        return 0.0
    lo, hi = 0.0, 1e3 / prefill_ms  # the prefills alone would saturate the replica at hi
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def plan(buckets_: list[Bucket], offers: list[Offer], utilisation: float = 0.85,
         headroom: float = 0.8) -> Planning:
    capacity = {b.label: {o.id: capacity_rps(o.model, b, utilisation, headroom) for o in offers}
                for b in buckets_}
    best = solve(buckets_, offers, capacity)
    homogeneous = {o.id: solve(buckets_, [o], capacity) for o in offers}
    return Planning(buckets_, offers, capacity, best, homogeneous)


def solve(buckets_: list[Bucket], offers: list[Offer],
          capacity: dict[str, dict[str, float]]) -> Plan:
    """The integer program above (HiGHS through scipy.optimize.milp)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    started = time.perf_counter()
    nb, na = len(buckets_), len(offers)
    impossible = [b.label for b in buckets_ if not any(capacity[b.label][o.id] > 0 for o in offers)]
    if impossible:
        return Plan({}, math.inf, {}, "infeasible", time.perf_counter() - started,
                    f"no offered accelerator meets the SLO of: {', '.join(impossible)}")
    nx = nb * na  # x[b, a] at b * na + a, then n[a] at nx + a
    cost = np.concatenate([np.zeros(nx), [o.usd_per_hour for o in offers]])
    upper = np.concatenate([
        [1.0 if capacity[b.label][o.id] > 0 else 0.0 for b in buckets_ for o in offers],
        [o.max_replicas if o.max_replicas is not None else np.inf for o in offers]])
    share = np.zeros((nb, nx + na))
    for i in range(nb):
        share[i, i * na:(i + 1) * na] = 1.0
    load = np.zeros((na, nx + na))
    for i, b in enumerate(buckets_):
        for j, o in enumerate(offers):
            cap = capacity[b.label][o.id]
            if cap > 0:
                load[j, i * na + j] = b.rate_rps / cap
    for j in range(na):
        load[j, nx + j] = -1.0
    integrality = np.concatenate([np.zeros(nx), np.ones(na)])
    result = milp(cost, integrality=integrality, bounds=Bounds(np.zeros(nx + na), upper),
                  constraints=[LinearConstraint(share, 1.0, 1.0),
                               LinearConstraint(load, -np.inf, 0.0)])
    solve_s = time.perf_counter() - started
    if not result.success:
        return Plan({}, math.inf, {}, "infeasible", solve_s, str(result.message))
    x = result.x
    replicas = {o.id: int(round(x[nx + j])) for j, o in enumerate(offers)}
    assignment = {b.label: {o.id: float(x[i * na + j]) for j, o in enumerate(offers)
                            if x[i * na + j] > 1e-6} for i, b in enumerate(buckets_)}
    usd = sum(o.usd_per_hour * replicas[o.id] for o in offers)
    return Plan({k: v for k, v in replicas.items() if v > 0}, usd, assignment, "optimal", solve_s)
