"""Fleet planner (pure): how many replicas of which accelerators serve a workload at its SLOs
for the fewest dollars per hour.

The workload is cut into buckets (`buckets`: SLO class x prompt range x output range, with
their arrival rates at the peak), and serving/sizing.py's closed-form capacities and integer
program (Mélange's formulation) give the cheapest mix on paper (`plan`). Paper capacities
miss what the simulator (`loadtest/simulator.py`, the live cost-slo policy routing) then
finds, so the rest of this module measures capacities that hold there: per bucket alone
(`calibrate`) and for the mix each offer is given (`mix_factor`, `corrected_plan`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from loadtest.workload import Planned, WorkloadSpec, plan_requests
from profiles.latency import LatencyModel
from serving.policies import Decision, Policy, RoutingContext
from serving.sizing import (
    OUTPUT_EDGES,
    PROMPT_EDGES,
    Bucket,
    Offer,
    Plan,
    bin_index,
    capacities,
    edge_bucket,
    solve,
)


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
    """The workload's request mix, cut into buckets with their arrival rates: at the peak
    when the rate varies over time (a fleet of fixed size must serve the peak)."""
    rate = spec.arrival.peak_rate_rps()
    if rate is None:
        raise ValueError("planning needs an open-loop arrival rate (rate_rps)")
    plans = []
    for p in plan_requests(spec):
        plans.append(p)
        if len(plans) >= samples:
            break
    groups: dict[tuple[str | None, int, int], list[tuple[int, int]]] = {}
    # A bucket's share: each component's own share (exact, from the spec) times the fraction
    # of that component's sampled requests in the bucket; not the sampled count of requests,
    # whose noise in the choice of component could tip a replica count at a boundary.
    component_share: dict[str, float] = {}
    for c in spec.mix:  # components of one name count as one
        component_share[c.name] = component_share.get(c.name, 0.0) + c.share
    total_share = sum(component_share.values())
    per_component: dict[str, int] = {}
    weight: dict[tuple[str | None, int, int], float] = {}
    for p in plans:
        per_component[p.component] = per_component.get(p.component, 0) + 1
    for p in plans:
        key = (p.slo_class, bin_index(p.prompt_tokens, prompt_edges), bin_index(p.output_tokens, output_edges))
        groups.setdefault(key, []).append((p.prompt_tokens, p.output_tokens))
        weight[key] = weight.get(key, 0.0) + (component_share.get(p.component, 0.0) / total_share
                                              / per_component[p.component])
    out = []
    for (cls, pi, oi), shapes in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1:])):
        arr = np.asarray(shapes)
        share = weight[(cls, pi, oi)]
        slo = spec.slo_classes[cls].model_dump(exclude_none=True) if cls in spec.slo_classes else {}
        out.append(dataclasses.replace(
            edge_bucket(cls, slo, pi, oi, prompt_edges, output_edges),
            prompt_tokens=int(np.percentile(arr[:, 0], 90)),
            output_tokens=int(np.percentile(arr[:, 1], 90)), rate_rps=rate * share,
            share=share, shapes=tuple(shapes[:_SHAPES])))
    return out


_SHAPES = 2000  # sampled lengths kept per bucket


def plan(buckets_: list[Bucket], offers: list[Offer], utilisation: float = 0.85,
         headroom: float = 0.8, capacity: dict[str, dict[str, float]] | None = None) -> Planning:
    """The integer program's cheapest mix and each offer's homogeneous answer, on `capacity`
    (default: the closed form, `capacities`)."""
    capacity = capacity or capacities(buckets_, offers, utilisation, headroom)
    best = solve(buckets_, offers, capacity)
    homogeneous = {o.id: solve(buckets_, [o], capacity) for o in offers}
    return Planning(buckets_, offers, capacity, best, homogeneous)


# ---- capacity that holds: calibrated in the simulator ---------------------------------------


Mix = list[tuple[Bucket, float]]  # buckets with their relative rates


def calibration_plans(mix: Mix, rate_rps: float, requests: int, seed: int = 0,
                      warmup: int = 20) -> list[Planned]:
    """Poisson arrivals at `rate_rps` in all of the mix's buckets (in proportion to their
    weights), each request one of its bucket's sampled lengths with its bucket's SLO; the
    first `warmup` marked warm-up."""
    rng = np.random.default_rng(seed)
    n = requests + warmup
    times = np.cumsum(rng.exponential(1.0 / rate_rps, size=n))
    weights = np.array([w for _, w in mix], dtype=float)
    which = rng.choice(len(mix), size=n, p=weights / weights.sum())
    draws = rng.random(n)
    out = []
    for i, (k, u) in enumerate(zip(which.tolist(), draws.tolist())):
        b = mix[k][0]
        shapes = b.shapes or ((b.prompt_tokens, b.output_tokens),)
        prompt, output = shapes[int(u * len(shapes))]
        out.append(Planned(i, float(times[i]), prompt, max(output, 1), "calibration",
                           b.slo_class, dict(b.slo), None, i < warmup))
    return out


def attainment_at(model: LatencyModel, mix: Mix, rate_rps: float, requests: int = 400,
                  seed: int = 0, horizon_s: float = 60.0, most: int = 3000,
                  replicas: int = 1, target: float | None = None) -> float:
    """SLO attainment of `replicas` replicas (least-loaded routing among them, as Ray Serve
    spreads a deployment's requests) fed the mix at `rate_rps` each (simulated with the same
    engine model as every check): at least `requests`, and enough to cover `horizon_s` of arrivals
    (up to `most`): a replica slightly over its capacity falls behind slowly, and a short run
    would not show it. With `target`, the run stops as soon as it cannot reach it (the
    answer is then an upper bound below `target`: the same verdict, sooner)."""
    from loadtest.simulator import SimBackend, Simulation
    from loadtest.workload import parse_workload

    requests = int(min(max(requests, rate_rps * replicas * horizon_s),
                       max(most, requests) * replicas))

    spec = parse_workload({"arrival": {"process": "poisson", "rate_rps": rate_rps},
                           "mix": [{"prompt_tokens": {"mean": 1}, "output_tokens": {"mean": 1}}],
                           "num_requests": requests, "seed": seed})
    sim = Simulation([SimBackend("r", model, 1.0, replicas)], _ONLY, spec, target=target,
                     plans=calibration_plans(mix, rate_rps * replicas, requests, seed))
    records = sim.run()
    if sim.stopped:
        return sim.attainment_bound
    measured = [r for r in records if not r.warmup]
    return sum(1 for r in measured if r.met_slo()) / len(measured) if measured else 0.0


class _Only(Policy):
    """One backend: no choice to make, so no prediction to pay for."""

    def choose(self, ctx: RoutingContext) -> Decision:
        return Decision(ctx.backends[0].id, None, 0.0, "the only backend", False)


_ONLY = _Only()


def calibrated_capacity(model: LatencyModel, mix: Mix, target: float, guess: float,
                        requests: int = 400, seed: int = 0, steps: int = 4,
                        horizon_s: float = 60.0, replicas: int = 1) -> float:
    """The highest arrival rate of the mix's requests at which one replica still meets
    `target` attainment in the simulator: bracketed from `guess` by factors of 1.5, then
    `steps` bisections (to ~5%). 0 when even a trickle of them (requests alone) misses the
    target. Deterministic (seeded)."""
    def ok(rate: float) -> bool:
        return attainment_at(model, mix, rate, requests, seed, horizon_s,
                             replicas=replicas, target=target) >= target

    trickle = 0.02 * guess if guess > 0 else 1e-3
    if not ok(trickle):
        return 0.0
    lo, hi = trickle, max(guess, trickle * 1.5)
    if ok(hi):
        lo = hi
        for _ in range(8):
            hi = lo * 1.5
            if not ok(hi):
                break
            lo = hi
        else:
            return lo
    else:
        for _ in range(10):
            mid = hi / 1.5
            if mid <= lo:
                break
            if ok(mid):
                lo = mid
                break
            hi = mid
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def calibrate(buckets_: list[Bucket], offers: list[Offer], guess: dict[str, dict[str, float]],
              target: float, min_share: float = 0.01, seed: int = 0,
              progress: Callable[[int, int], None] | None = None) -> dict[str, dict[str, float]]:
    """Every bucket x offer capacity from `calibrated_capacity` (offers with a profile; a
    throughput table is taken as given), on short runs (15 s of arrivals): it gives each
    offer's capacities their shape across buckets; `mix_factor` then measures, on long runs,
    what one replica really sustains of the mix it is given. Buckets under `min_share` of the traffic get the
    closed form scaled by the median calibrated / closed-form ratio of their offer: they
    change the fleet too little to be worth their simulations. `progress(done, total)`."""
    out = {b.label: dict(guess[b.label]) for b in buckets_}
    big = [b for b in buckets_ if b.share >= min_share]
    small = [b for b in buckets_ if b.share < min_share]
    simulated = [o for o in offers if o.model is not None]
    total, done = len(big) * len(simulated), 0
    for o in simulated:
        assert o.model is not None
        ratios = []
        for b in big:
            g = guess[b.label][o.id]
            c = calibrated_capacity(o.model, [(b, 1.0)], target, g, seed=seed, horizon_s=15.0)
            out[b.label][o.id] = c
            if g > 0 and c > 0:
                ratios.append(c / g)
            done += 1
            if progress is not None:
                progress(done, total)
        scale = float(np.median(ratios)) if ratios else 1.0
        for b in small:
            out[b.label][o.id] = guess[b.label][o.id] * scale
    return out


def linear_rate(mix: Mix, capacity: dict[str, float]) -> float:
    """The rate of the mix one replica serves if its buckets time-share it as the integer
    program assumes (sum of rate_b / capacity_b = 1); 0 if a bucket has no capacity."""
    total = sum(w for _, w in mix)
    load = 0.0
    for b, w in mix:
        if w > 0:
            if capacity[b.label] <= 0:
                return 0.0
            load += (w / total) / capacity[b.label]
    return 1.0 / load if load > 0 else 0.0


def mix_factor(model: LatencyModel, mix: Mix, isolated: dict[str, float], target: float,
               seed: int = 0, horizon_s: float = 300.0, replicas: int = 1) -> float:
    """Simulated / time-shared capacity of one replica for this mix of buckets: what sharing
    a replica costs them (a long prefill stalls every decode beside it), <= 1 mostly.
    Measured over `horizon_s` of arrivals (the check's duration): a replica a few percent
    over its capacity meets the target for a minute and then falls behind. Per replica of a
    pool of `replicas`: a pool absorbs bursts that one replica alone cannot."""
    r_lin = linear_rate(mix, isolated)
    if r_lin <= 0:
        return 1.0
    return calibrated_capacity(model, mix, target, r_lin, requests=300, seed=seed, steps=3,
                               horizon_s=horizon_s, replicas=replicas) / r_lin


def corrected_plan(buckets_: list[Bucket], offers: list[Offer],
                   isolated: dict[str, dict[str, float]], target: float, rounds: int = 6,
                   seed: int = 0, horizon_s: float = 300.0) -> tuple[Planning, dict[str, float]]:
    """The integer program on capacities that hold for the mix each offer is given.

    Per-bucket capacities measured alone (`calibrate`) assume buckets time-share a replica
    linearly; in the simulator they do worse (a document's prefill stalls the chats beside it).
    So: start every offer at its factor for the whole workload (`mix_factor` on a pool of
    about the size that workload needs, up to `_MAX_POOL`; it also gives the homogeneous
    fleets on paper), solve, measure each used offer's factor for the buckets the solution
    gives it on a pool of the replicas it got, scale that offer's capacities by it and solve
    again, until the solution's own mixes hold what it assumed (within 5%), a fleet comes
    back, or `rounds` solves. The cheapest homogeneous answer replaces a dearer last mix.
    Offers without a profile keep their table. Returns the last planning and the factors."""
    everything = [(b, b.rate_rps) for b in buckets_]
    total_rate = sum(b.rate_rps for b in buckets_)
    factors = {}
    for o in offers:
        col = _column(isolated, o.id)
        if o.model is None:
            factors[o.id] = 1.0
            continue
        alone = mix_factor(o.model, everything, col, target, seed, horizon_s)
        # ...then on a pool of about the size the whole workload would need of it
        r_lin = linear_rate(everything, col)
        pool = _pool(total_rate / (r_lin * alone)) if r_lin > 0 and alone > 0 else 1
        factors[o.id] = (alone if pool == 1 else
                         mix_factor(o.model, everything, col, target, seed, horizon_s, pool))

    def scaled(f: dict[str, float]) -> dict[str, dict[str, float]]:
        return {b.label: {o.id: isolated[b.label][o.id] * f[o.id] for o in offers}
                for b in buckets_}

    homogeneous = {o.id: solve(buckets_, [o], scaled(factors)) for o in offers}
    planning = Planning(buckets_, offers, scaled(factors), solve(buckets_, offers, scaled(factors)),
                        homogeneous)
    seen = set()
    for _ in range(rounds - 1):
        best = planning.best
        key = tuple(sorted(best.replicas.items()))
        if best.status != "optimal" or key in seen:
            break  # infeasible, or the rounds came back to a fleet they had (a cycle)
        seen.add(key)
        new = dict(factors)
        for o in offers:
            if o.model is None or not best.replicas.get(o.id):
                continue
            mix = [(b, b.rate_rps * best.assignment.get(b.label, {}).get(o.id, 0.0))
                   for b in buckets_]
            mix = [(b, w) for b, w in mix if w > 0]
            if mix:
                new[o.id] = mix_factor(o.model, mix, _column(isolated, o.id), target, seed,
                                       horizon_s, _pool(best.replicas[o.id]))
        if all(new[k] >= 0.95 * factors[k] for k in factors):
            break  # the plan's own mixes hold what it assumed
        factors = new
        planning = Planning(buckets_, offers, scaled(factors),
                            solve(buckets_, offers, scaled(factors)), homogeneous)
    # Each homogeneous answer holds on its own (whole-workload) factor: the cheapest of them
    # is a solution too, when the mix rounds ended dearer.
    cheapest = planning.cheapest_homogeneous()
    if cheapest is not None and cheapest.usd_per_hour < planning.best.usd_per_hour:
        planning = Planning(buckets_, offers, planning.capacity, cheapest, homogeneous)
    return planning, factors


def _column(capacity: dict[str, dict[str, float]], offer_id: str) -> dict[str, float]:
    """One offer's capacity per bucket label."""
    return {label: caps[offer_id] for label, caps in capacity.items()}


_MAX_POOL = 8  # replicas simulated at most per calibration (the gain flattens out)


def _pool(replicas: float) -> int:
    return max(1, min(int(math.ceil(replicas)), _MAX_POOL))
