"""Fleet sizing (pure): how many replicas of which backend serve given request rates at their
SLOs for the fewest dollars per hour. The planner (`costroute plan`, loadtest/planner.py) asks
it once for a workload; the cost-aware autoscaler (serving/scaling.py) asks it again as the
rates change.

Mélange's formulation (Griggs et al., 2024). The requests are cut into buckets (SLO class x
prompt-length range x output-length range, each with its arrival rate). For every bucket b and
offer a (a backend or accelerator type), `capacity_rps` is the highest arrival rate one replica
of a sustains for requests of b while meeting b's SLO, from a's profile:

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
               sum_b rate_b x_ba / capacity_ba <= n_a      for every offer a
               x_ba in [0, 1] (0 where capacity_ba = 0),
               n_a integer in [min_replicas_a, max_replicas_a]

x_ba is the share of bucket b served by offer a; n_a its replica count. `routing_table` turns
the shares into the cost-slo policy's routing table (serving/policies/routing_table.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from profiles.latency import LatencyModel

PROMPT_EDGES = (0, 128, 512, 2048, 8192, 1 << 30)
OUTPUT_EDGES = (0, 64, 256, 1024, 1 << 30)


@dataclass(frozen=True)
class Offer:
    """One accelerator type on offer: its profile and its price per replica-hour; or, instead
    of a profile, a throughput table (Mélange's input: the req/s one replica sustains within
    the SLO per prompt-range x output-range bucket, rows by prompt, per SLO class or for all
    under "*"). An offer without a profile cannot be simulated."""

    id: str
    model: LatencyModel | None
    usd_per_hour: float
    max_replicas: int | None = None
    throughput: dict[str, tuple[tuple[float, ...], ...]] | None = None
    min_replicas: int = 0

    def table_rps(self, bucket: Bucket) -> float:
        assert self.throughput is not None
        matrix = self.throughput.get(bucket.slo_class or "*", self.throughput.get("*"))
        if matrix is None:
            return 0.0
        return float(matrix[bucket.prompt_bin][bucket.output_bin])


@dataclass(frozen=True)
class Bucket:
    label: str
    slo_class: str | None
    slo: dict[str, float]
    prompt_tokens: int  # representative (the bucket's 90th percentile: conservative)
    output_tokens: int
    rate_rps: float
    share: float
    prompt_bin: int = 0  # index of its prompt range among the edges
    output_bin: int = 0
    prompt_range: tuple[int, int | None] = (0, None)  # [low, high) tokens; None: no bound
    output_range: tuple[int, int | None] = (0, None)
    # Sampled (prompt, output) lengths of the bucket's requests (the calibration replays them).
    shapes: tuple[tuple[int, int], ...] = field(default=(), repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "shapes"}


@dataclass
class Plan:
    replicas: dict[str, int]
    usd_per_hour: float
    assignment: dict[str, dict[str, float]]  # bucket label -> offer id -> share of the bucket
    status: str
    solve_s: float = 0.0
    note: str = ""



def edge_bucket(slo_class: str | None, slo: dict[str, float], prompt_bin: int, output_bin: int,
                prompt_edges: Sequence[int] = PROMPT_EDGES,
                output_edges: Sequence[int] = OUTPUT_EDGES) -> Bucket:
    """The bucket of one SLO class and one cell of the edges (label, bins, ranges), its
    representative lengths and rate still 0 (`dataclasses.replace` sets them)."""
    pi, oi = prompt_bin, output_bin
    label = (f"{slo_class or 'no-slo'} p{prompt_edges[pi]}-{edge_text(prompt_edges[pi + 1])} "
             f"o{output_edges[oi]}-{edge_text(output_edges[oi + 1])}")
    return Bucket(label, slo_class, slo, 0, 0, 0.0, 0.0, pi, oi,
                  (prompt_edges[pi], range_bound(prompt_edges[pi + 1])),
                  (output_edges[oi], range_bound(output_edges[oi + 1])))


def range_bound(x: int) -> int | None:
    return None if x >= 1 << 30 else x


def bin_index(x: int, edges: Sequence[int]) -> int:
    for i in range(len(edges) - 1):
        if edges[i] <= x < edges[i + 1]:
            return i
    return len(edges) - 2


def edge_text(x: int) -> str:
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


def capacities(buckets_: list[Bucket], offers: list[Offer], utilisation: float = 0.85,
               headroom: float = 0.8) -> dict[str, dict[str, float]]:
    """Bucket label -> offer id -> req/s per replica: the closed form above from each offer's
    profile, or its throughput table."""
    return {b.label: {o.id: (capacity_rps(o.model, b, utilisation, headroom) if o.model is not None
                             else o.table_rps(b)) for o in offers} for b in buckets_}



_SPLIT_COST = 1e-3


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
    # Beside the replicas, a token cost for the share of each replica a bucket's requests use
    # (1/1000 of its price): among fleets of equal price the split prefers the cheaper
    # capacity, so the routing table does too (replicas already paid for, at a minimum, are
    # otherwise free to the program and its split arbitrary).
    use = [o.usd_per_hour * b.rate_rps / capacity[b.label][o.id] * _SPLIT_COST
           if capacity[b.label][o.id] > 0 else 0.0 for b in buckets_ for o in offers]
    cost = np.concatenate([use, [o.usd_per_hour for o in offers]])
    lower = np.concatenate([np.zeros(nx), [o.min_replicas for o in offers]])
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
    result = milp(cost, integrality=integrality, bounds=Bounds(lower, upper),
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


def routing_table(buckets_: list[Bucket], p: Plan) -> list[dict[str, Any]]:
    """The plan's split as the cost-slo policy's `routing_table` parameter
    (serving/policies/routing_table.py): one row per bucket, its shares per backend."""
    rows = []
    for b in buckets_:
        shares = {oid: round(x, 6) for oid, x in p.assignment.get(b.label, {}).items()
                  if round(x, 6) > 0}
        if shares:
            rows.append({"slo_class": b.slo_class, "prompt_tokens": list(b.prompt_range),
                         "output_tokens": list(b.output_range), "shares": shares})
    return rows


