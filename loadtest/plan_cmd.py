"""`costroute plan`: the cheapest fleet for a workload from a catalogue of accelerators, checked
in the simulator, with the Ray Serve config that deploys it.

A catalogue (YAML) names the model the fleet serves and the accelerators on offer, each with a
price and either a measured profile table or datasheet figures for a roofline estimate:

    model: {name: llama-3-8b-shape, num_parameters: 8.03e9,
            recipe: {num_hidden_layers: 32, hidden_size: 4096, num_attention_heads: 32,
                     num_key_value_heads: 8, max_position_embeddings: 8192}}
    accelerators:
      - {id: h100, accelerator: nvidia-h100-sxm, estimate: {}, usd_per_hour: 2.49,
         price_source: ..., ray_actor_options: {num_gpus: 1}}
      - {id: npu-x, accelerator: domestic-npu-x, usd_per_hour: 0.9,
         estimate: {bandwidth_gbs: 1600, tflops: 300, memory_gib: 64, efficiency: 0.5},
         ray_actor_options: {resources: {NPU: 1}}}
      - {id: cpu-onnxruntime, profile: profiles/tables/cpu-onnxruntime.json, usd_per_hour: 0.2,
         engine: onnxruntime, engine_options: {model: tiny}}   # relative: from this file's folder
      - {id: a10g, usd_per_hour: 1.01, throughput: [[2, 1], [5, 2]]}  # Mélange's input
    buckets: {prompt_edges: [0, 128], output_edges: [0, 64]}  # rows / columns of a throughput

An accelerator with a `throughput` table (req/s one replica sustains within the SLO per
prompt range x output range; one matrix, or {slo_class: matrix, '*': matrix}) is planned on
as given but cannot be simulated: a plan using it is reported unverified.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from backends.errors import ConfigError
from serving.sizing import OUTPUT_EDGES, PROMPT_EDGES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EstimateSpec(_Strict):
    """Datasheet figures for a roofline estimate (profiles/estimate.py); empty: the shipped
    figures of a known accelerator."""

    bandwidth_gbs: float | None = Field(None, gt=0)
    tflops: float | None = Field(None, gt=0)
    memory_gib: float | None = Field(None, gt=0)
    efficiency: float = Field(0.7, gt=0, le=1)
    bytes_per_param: float = Field(2.0, gt=0)


Matrix = list[list[float]]


class OfferSpec(_Strict):
    id: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$")
    accelerator: str = Field("cpu", min_length=1, description="accelerator label")
    usd_per_hour: float = Field(..., ge=0, description="price of one replica per hour")
    price_source: str = ""
    profile: str | None = Field(None, description="a measured (or estimated) profile table; "
                                                  "a relative path is read from the "
                                                  "catalogue's folder")
    estimate: EstimateSpec | None = Field(None, description="or: a roofline from these figures")
    throughput: Matrix | dict[str, Matrix] | None = Field(
        None, description="or (Mélange's input): req/s one replica sustains within the SLO, "
                          "rows by prompt range, columns by output range (the catalogue's "
                          "`buckets`); one matrix, or one per SLO class ('*': any). Such an "
                          "offer cannot be simulated: plans using it are unverified")
    max_replicas: int | None = Field(None, ge=0)
    engine: str = "vllm"
    engine_options: dict[str, Any] = Field(default_factory=dict)
    ray_actor_options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> OfferSpec:
        given = [k for k in ("profile", "estimate", "throughput") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"accelerator {self.id!r}: give exactly one of profile, estimate or "
                             f"throughput (got {given or 'none'})")
        for matrix in self.matrices().values():
            if any(v < 0 for row in matrix for v in row):
                raise ValueError(f"accelerator {self.id!r}: throughput must be >= 0 req/s")
        return self

    def matrices(self) -> dict[str, Matrix]:
        t = self.throughput
        return {} if t is None else {"*": t} if isinstance(t, list) else dict(t)


class BucketEdges(_Strict):
    """Where the planner cuts request lengths into buckets (tokens; the last range is open)."""

    prompt_edges: list[int] = Field(list(PROMPT_EDGES[:-1]), min_length=2)
    output_edges: list[int] = Field(list(OUTPUT_EDGES[:-1]), min_length=2)

    @model_validator(mode="after")
    def _increasing(self) -> BucketEdges:
        for name in ("prompt_edges", "output_edges"):
            e = getattr(self, name)
            if e[0] != 0 or any(b <= a for a, b in zip(e, e[1:])):
                raise ValueError(f"{name} must start at 0 and increase (got {e})")
        return self

    def cuts(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The edges with the open end the planner uses."""
        return (tuple(self.prompt_edges) + (1 << 30,), tuple(self.output_edges) + (1 << 30,))


class Catalogue(_Strict):
    model: dict[str, Any] | str = Field(
        "small", description="a built model size, or a model shape (name, num_parameters, "
                             "recipe) for roofline estimates")
    buckets: BucketEdges = Field(default_factory=lambda: BucketEdges.model_validate({}),
                                 description="how request lengths are cut into buckets")
    accelerators: list[OfferSpec] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        ids = [a.id for a in self.accelerators]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"accelerator ids must be unique; repeated: {dupes}")
        rows, cols = len(self.buckets.prompt_edges), len(self.buckets.output_edges)
        for a in self.accelerators:
            for cls, m in a.matrices().items():
                if len(m) != rows or any(len(r) != cols for r in m):
                    raise ValueError(
                        f"accelerator {a.id!r}: throughput[{cls!r}] must be {rows} x {cols} "
                        f"(prompt ranges x output ranges of `buckets`), got "
                        f"{len(m)} x {[len(r) for r in m]}")
        return self


def load_catalogue(path: str | Path) -> Catalogue:
    from serving.config import config_error, read_yaml

    raw = read_yaml(path, "catalogue", "catalogue")
    try:
        return Catalogue.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, f"catalogue {path}") from None


def _manifest(model: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(model, str):
        from backends.model import read_manifest, resolve_model

        return dict(read_manifest(resolve_model(model)))
    need = {"name", "num_parameters", "recipe"}
    if not need <= set(model):
        raise ConfigError(f"catalogue model needs {sorted(need)} (got {sorted(model)})", "model")
    recipe_keys = {"num_hidden_layers", "hidden_size", "num_attention_heads",
                   "num_key_value_heads", "max_position_embeddings"}
    if not recipe_keys <= set(model["recipe"]):
        raise ConfigError(f"catalogue model.recipe needs {sorted(recipe_keys)}", "model.recipe")
    return {"checksum": "shape-only (not a built model)", **model}


def offer_tables(catalogue: Catalogue, root: Path) -> dict[str, Any]:
    """Offer id -> its profile table (loaded, relative to `root`, or estimated from its
    datasheet figures); offers given by a throughput table have none."""
    from profiles.estimate import estimate_profile
    from profiles.table import load_profile

    manifest = None
    tables = {}
    for a in catalogue.accelerators:
        if a.throughput is not None:
            continue
        if a.profile is not None:
            p = Path(a.profile)
            p = p if p.is_absolute() else root / p
            if not p.exists():
                raise ConfigError(f"accelerator {a.id!r}: profile {p} does not exist (a relative "
                                  "path is read from the catalogue's folder)", "profile")
            tables[a.id] = load_profile(p)
            continue
        manifest = manifest or _manifest(catalogue.model)
        e = a.estimate
        assert e is not None
        tables[a.id] = estimate_profile(
            accelerator=a.accelerator, manifest=manifest, bandwidth_gbs=e.bandwidth_gbs,
            tflops=e.tflops, memory_gib=e.memory_gib, efficiency=e.efficiency,
            bytes_per_param=e.bytes_per_param, backend_id=a.id,
            command="costroute plan (catalogue estimate)")
    return tables


def register(sub: Any) -> None:
    from loadtest.commands import add_workload_args

    p = sub.add_parser(
        "plan", help="the cheapest fleet for a workload at its SLOs (integer program)",
        description=(
            "From a workload (rate, length mix, SLO mix) and a catalogue of accelerators "
            "(measured or roofline-estimated profiles, or Mélange-style throughput tables; "
            "prices), choose replica counts that minimise $/hour subject to the SLOs "
            "(Mélange's bucket x accelerator integer program, HiGHS) on per-bucket capacities "
            "calibrated in the simulator; verify the answer in the simulator with the policy "
            "and routing table it will deploy, repair it where it misses; compare with the "
            "cheapest verified homogeneous fleet; write a fleet config (with the routing "
            "table) and a Ray Serve config."),
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--catalogue", required=True, help="catalogue YAML (see below)")
    p.add_argument("--attainment", type=float, default=0.99,
                   help="SLO attainment the simulator check must reach (default 0.99)")
    p.add_argument("--capacity", choices=("simulated", "closed-form"), default="simulated",
                   help="per-bucket capacity: simulated (one replica per bucket under Poisson "
                        "arrivals, the highest rate meeting --attainment; default) or "
                        "closed-form (the queueing formulas, with --utilisation / --headroom)")
    p.add_argument("--utilisation", type=float, default=0.85,
                   help="closed form: share of a replica's batch slots the plan may fill "
                        "(default 0.85)")
    p.add_argument("--headroom", type=float, default=0.8,
                   help="closed form: plan mean latencies to this share of each target "
                        "(default 0.8)")
    p.add_argument("--check-duration", type=float, default=300.0,
                   help="simulated seconds for each check (default 300)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_workload_args(p)
    p.add_argument("--out", default=None, help="output folder (default runs/plan-UTCSTAMP)")
    p.set_defaults(func=_cmd_plan)


_MAX_REPAIRS = 8
# A mix may grow past the fleet it must beat by this factor while it misses: trimming a pool
# that meets the target often takes back more than the replica added (a pool absorbs bursts
# its one-replica calibration charged for); only a mix that ends cheaper is recommended.
_GROW_PAST = 1.25


def _cmd_plan(args: argparse.Namespace) -> int:
    from loadtest.commands import workload_from_args
    from loadtest.planner import buckets, corrected_plan, plan
    from loadtest.workload import bounded_plans
    from profiles.latency import LatencyModel
    from serving.sizing import Offer, capacities

    for name, v in (("attainment", args.attainment), ("utilisation", args.utilisation),
                    ("headroom", args.headroom)):
        if not 0 < v <= 1:
            raise ConfigError(f"--{name} must be in (0, 1] (got {v})", name)
    started = time.perf_counter()
    catalogue = load_catalogue(args.catalogue)
    if getattr(args, "rate", None) is None and not args.workload:
        raise ConfigError("planning needs a workload: --workload FILE or --rate", "rate")
    if args.duration is None and args.requests is None:
        args.duration = args.check_duration
    spec = workload_from_args(args, {})
    tables = offer_tables(catalogue, Path(args.catalogue).resolve().parent)
    offers = [Offer(a.id, LatencyModel(tables[a.id]) if a.id in tables else None,
                    a.usd_per_hour, a.max_replicas,
                    {k: tuple(map(tuple, m)) for k, m in a.matrices().items()} or None)
              for a in catalogue.accelerators]
    prompt_edges, output_edges = catalogue.buckets.cuts()
    bs = buckets(spec, prompt_edges=prompt_edges, output_edges=output_edges)
    closed_form = capacities(bs, offers, args.utilisation, args.headroom)
    factors: dict[str, float] = {}
    if args.capacity == "simulated":
        isolated = _calibrate(bs, offers, closed_form, args)
        _say(args, "measuring what one replica of each accelerator holds of its mix ...")
        paper, factors = corrected_plan(bs, offers, isolated, args.attainment, seed=args.seed or 0,
                                        horizon_s=spec.duration_s or args.check_duration)
    else:
        paper = plan(bs, offers, capacity=closed_form)
    ctx = _Context(args, catalogue, tables, spec, bs, offers,
                   None if spec.arrival.process == "closed" or spec.trace
                   else list(bounded_plans(spec)))
    homo = _homogeneous_meeting(ctx, paper)
    verified, check, tries = _verify(ctx, paper, homo)
    out = Path(args.out) if args.out else Path("runs") / (
        f"plan-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    print(check_and_write(ctx, paper, closed_form, factors, verified, check, homo, tries, out,
                          time.perf_counter() - started))
    return 0


@dataclass
class _Context:
    args: argparse.Namespace
    catalogue: Catalogue
    tables: dict[str, Any]
    spec: Any
    buckets: list[Any]
    offers: list[Any]
    # The workload's arrivals, drawn once for every check (None: closed loop or a trace,
    # which each simulation reads itself).
    plans: list[Any] | None = None

    def simulable(self, replicas: dict[str, int]) -> bool:
        return all(oid in self.tables for oid, n in replicas.items() if n > 0)


def _say(args: argparse.Namespace, text: str) -> None:
    """A progress line on stderr (not with --no-progress)."""
    if not args.no_progress:
        print(text, file=sys.stderr, flush=True)


def _calibrate(bs: list[Any], offers: list[Any], guess: dict[str, dict[str, float]],
               args: argparse.Namespace) -> dict[str, dict[str, float]]:
    from tqdm import tqdm

    from loadtest.planner import calibrate

    with tqdm(desc="calibrating capacity", unit="bucket", file=sys.stderr, leave=False,
              disable=args.no_progress, dynamic_ncols=True) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        return calibrate(bs, offers, guess, args.attainment, seed=args.seed or 0,
                         progress=progress)


def _verify(ctx: _Context, paper: Any, homo: tuple[Any, dict[str, Any]] | None,
            ) -> tuple[Any, dict[str, Any] | None, list[dict[str, Any]]]:
    """The paper mix in the simulator, with the cost-slo policy and the routing table it will
    deploy (`_repair`: add replicas where the misses are, then trim). If no repair keeps it
    cheaper than the verified homogeneous fleet, solve again with each backend's
    capacities scaled by the share of its requests that met the SLO in that check (at least
    half), and verify that solution, up to `_MAX_RESOLVES` times, while a new mix comes out
    cheaper than the homogeneous fleet. Returns the verified plan (or the last tried), its
    check and every try."""
    from serving.sizing import solve

    best = paper.best
    if best.status != "optimal" or not ctx.simulable(best.replicas):
        return best, None, []
    capacity = paper.capacity
    tries: list[dict[str, Any]] = []
    ceiling = homo[0].usd_per_hour if homo is not None else math.inf
    found: tuple[Any, dict[str, Any]] | None = None  # the cheapest mix that met the target
    for attempt in range(_MAX_RESOLVES + 1):
        plan, check, met, first = _repair(ctx, best, ceiling, tries,
                                          "the integer program's mix" if attempt == 0 else
                                          f"re-solved with capacities corrected by check "
                                          f"{len(tries)}")
        if met:
            if found is None or plan.usd_per_hour < found[0].usd_per_hour:
                found = (plan, check)
            if plan.usd_per_hour <= best.usd_per_hour:
                break  # met as solved: nothing cheaper to look for
            # Met only with replicas added: a neighbouring solution (the capacities corrected
            # by the solution's first check: another split, or other accelerators) may meet
            # the target for less. It must beat the repaired mix.
            ceiling = min(ceiling, plan.usd_per_hour)
            check = first
        total = check["requests"] or 1
        scale = {o: max(1 - b["missed"] / max(b["share"] * total, 1), 0.5)
                 for o, b in check["backends"].items()}
        capacity = {label: {o: c * scale.get(o, 1.0) for o, c in caps.items()}
                    for label, caps in capacity.items()}
        new = solve(ctx.buckets, ctx.offers, capacity)
        if (new.status != "optimal"
                or (new.replicas, new.assignment) == (best.replicas, best.assignment)
                or not ctx.simulable(new.replicas) or new.usd_per_hour >= ceiling):
            break
        best = new
    if found is not None:
        return found[0], found[1], tries
    return plan, check, tries


_MAX_RESOLVES = 3


def _repair(ctx: _Context, best: Any, ceiling: float, tries: list[dict[str, Any]],
            first: str) -> tuple[Any, dict[str, Any], bool, dict[str, Any]]:
    """One solution in the simulator: while it misses the target, add one replica where the
    misses are (the backend with the most missed requests per replica whose replica keeps
    the mix under `ceiling`, the verified homogeneous fleet's $/hour; the routing table's
    shares stay), up to `_MAX_REPAIRS` tries; once it meets the target, `_trim` it. Appends
    each check to `tries`; returns the cheapest plan that met the target (else the last
    tried), its check, whether it met, and the solution's own (first) check."""
    from serving.sizing import Plan, routing_table

    table = routing_table(ctx.buckets, best)
    replicas = dict(best.replicas)
    prices = {o.id: o.usd_per_hour for o in ctx.offers}
    limits = {o.id: o.max_replicas for o in ctx.offers}
    mine: list[dict[str, Any]] = []
    change = first
    while True:
        usd = sum(prices[o] * n for o, n in replicas.items())
        check = _simulate(ctx, replicas, table)
        mine.append({"replicas": dict(replicas), "usd_per_hour": usd,
                     "attainment": check["attainment"], "check": check, "change": change})
        met = (check["attainment"] or 0) >= ctx.args.attainment
        if met or len(mine) > _MAX_REPAIRS:
            break
        misses = {o: check["backends"].get(o, {}).get("missed", 0) / n
                  for o, n in replicas.items() if n > 0}
        grow = [o for o in sorted(misses, key=lambda o: -misses[o])
                if misses[o] > 0 and (limits[o] is None or replicas[o] < limits[o])
                and usd + prices[o] < ceiling * _GROW_PAST]
        if not grow:
            break
        replicas[grow[0]] += 1
        change = f"+1 {grow[0]} (most missed requests per replica)"
    if met:
        _trim(ctx, replicas, table, mine)
    good = [t for t in mine if (t["attainment"] or 0) >= ctx.args.attainment]
    last = min(good, key=lambda t: t["usd_per_hour"]) if good else mine[-1]
    check, own = last["check"], mine[0]["check"]
    for t in mine:
        t.pop("check", None)
    tries.extend(mine)
    plan = Plan(last["replicas"], last["usd_per_hour"], best.assignment, "optimal", best.solve_s,
                first if len(mine) == 1 else f"{first}, its replica counts adjusted in the "
                                             "simulator")
    return plan, check, bool(good), own


def _trim(ctx: _Context, replicas: dict[str, int], table: list[dict[str, Any]],
          tries: list[dict[str, Any]]) -> None:
    """A verified mix with fewer replicas: per-bucket capacities were calibrated on one replica,
    and a pool of replicas absorbs bursts better than one, so the paper count can be more
    than the fleet needs. For each offer, dearest pool first, bisect its replica count between
    half and all of it (at least 1: its buckets are routed to it) while the simulator says
    the fleet still meets the target. Appends each check to `tries`."""
    prices = {o.id: o.usd_per_hour for o in ctx.offers}
    for oid in sorted(replicas, key=lambda o: -prices[o] * replicas[o]):
        lo, hi = max(replicas[oid] // 2, 1) - 1, replicas[oid]  # hi meets; lo assumed not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            trial = {**replicas, oid: mid}
            check = _simulate(ctx, trial, table, verdict=True)
            met = (check["attainment"] or 0) >= ctx.args.attainment
            tries.append({"replicas": trial, "usd_per_hour": sum(prices[o] * n
                                                                 for o, n in trial.items()),
                          "attainment": check["attainment"], "check": check,
                          "stopped_early": bool(check.get("stopped_early")),
                          "change": f"{oid} x{mid} (fewer replicas, bisected)"})
            lo, hi = (lo, mid) if met else (mid, hi)
        replicas[oid] = hi


def _homogeneous_meeting(ctx: _Context, paper: Any) -> tuple[Any, dict[str, Any]] | None:
    """The cheapest one-accelerator fleet that the simulator says meets the target. For each
    accelerator (cheapest paper answer first), the fewest replicas that do: bisected between
    a third of its paper count and the paper count (a pool absorbs bursts that the
    one-replica calibration charges for), or counted up from the paper count (by up to half
    of it) when that misses. Skipped once even the lower bound costs more than the best
    found."""
    from serving.sizing import Plan

    best: tuple[Any, dict[str, Any]] | None = None
    target = ctx.args.attainment

    def check(oid: str, k: int) -> dict[str, Any] | None:
        c = _simulate(ctx, {oid: k}, None, verdict=True)
        return c if (c["attainment"] or 0) >= target else None

    for oid, p in sorted(paper.homogeneous.items(), key=lambda kv: kv[1].usd_per_hour):
        if p.status != "optimal" or oid not in ctx.tables:
            continue
        n = p.replicas.get(oid, 0)
        price = p.usd_per_hour / n if n else 0.0
        low = max(-(-n // 3), 1)
        if best is not None and price * low >= best[0].usd_per_hour:
            continue
        found: tuple[int, dict[str, Any]] | None = None
        top = check(oid, n)
        if top is not None:
            found = (n, top)
            lo, hi = low - 1, n  # hi meets; lo assumed not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                c = check(oid, mid)
                lo, hi = (lo, mid) if c is not None else (mid, hi)
                if c is not None:
                    found = (mid, c)
        else:
            for k in range(n + 1, n + max(1, n // 2) + 1):
                if best is not None and price * k >= best[0].usd_per_hour:
                    break
                c = check(oid, k)
                if c is not None:
                    found = (k, c)
                    break
        if found is not None and (best is None or price * found[0] < best[0].usd_per_hour):
            best = (Plan({oid: found[0]}, price * found[0], p.assignment, "optimal", p.solve_s,
                         f"ILP answer {n}, {found[0]} in the simulator"), found[1])
    return best


def _simulate(ctx: _Context, replicas: dict[str, int], table: list[dict[str, Any]] | None,
              verdict: bool = False) -> dict[str, Any]:
    """The fleet in the simulator under cost-slo (with `table` as its routing table): the
    figures the plan reports. With `verdict` (the caller only asks whether it meets the
    target), a run stops as soon as its misses rule that out; its check then holds the
    attainment it could at best have reached (below the target) and `stopped_early`."""
    from loadtest.simulate_cmd import simulate_run
    from loadtest.simulator import SimBackend

    offers = {o.id: o for o in ctx.offers}  # their latency models, built once
    backends = [SimBackend(oid, offers[oid].model, offers[oid].usd_per_hour, n)
                for oid, n in replicas.items() if n > 0]
    model = ctx.catalogue.model
    target = ctx.args.attainment if verdict and ctx.plans is not None else None
    s = simulate_run(str(model if isinstance(model, str) else model["name"]), backends,
                     "cost-slo", {"routing_table": table} if table else {}, "fastest",
                     ctx.spec, None, "planned fleet", report=False, oracle=False,
                     plans=ctx.plans, target=target)
    if s.get("stopped_early"):
        _say(ctx.args, f"simulated {', '.join(f'{k} x{v}' for k, v in replicas.items())}"
                       f"{' (routing table)' if table else ''}: attainment < "
                       f"{ctx.args.attainment:g} (stopped early)")
        return {"replicas": replicas, "attainment": s["attainment"], "stopped_early": True,
                "requests": s["measured"]}
    lat = s["latency_ms"]
    _say(ctx.args, f"simulated {', '.join(f'{k} x{v}' for k, v in replicas.items())}"
                   f"{' (routing table)' if table else ''}: attainment "
                   f"{_f(s['slo']['attainment'], '.3f')}")
    return {"replicas": replicas, "attainment": s["slo"]["attainment"],
            "classes": {k: v["attainment"] for k, v in s["slo"]["classes"].items()},
            "ttft_p50_ms": lat["ttft"]["median"], "ttft_p90_ms": lat["ttft"]["p90"],
            "tpot_p50_ms": lat["tpot"]["median"], "tpot_p90_ms": lat["tpot"]["p90"],
            "backends": {k: {"share": v["share"], "missed": v["requests"] - v["met_slo"]}
                         for k, v in s["backends"].items()},
            "usd_per_1m_output_tokens": s["cost"]["provisioned"]["usd_per_1m_output_tokens"],
            "requests": s["requests"]["measured"]}


def check_and_write(ctx: _Context, paper: Any, closed_form: dict[str, dict[str, float]],
                    factors: dict[str, float], verified: Any, check: dict[str, Any] | None,
                    homo: tuple[Any, dict[str, Any]] | None, tries: list[dict[str, Any]],
                    out: Path, total_s: float) -> str:
    """Write plan.json, plan.md, the recommended fleet.yaml (+ profiles/) and serve.yaml.
    Returns the markdown. Recommended: the cheapest fleet the simulator says meets the target
    (an unverifiable mix only when nothing else is)."""
    from loadtest.results import write_json
    from serving.sizing import routing_table

    args = ctx.args
    (out / "profiles").mkdir(exist_ok=True)
    for oid, table in ctx.tables.items():
        table.save(out / "profiles" / f"{oid}.json")
    homo_plan, homo_check = homo if homo is not None else (None, None)
    mix_ok = check is not None and (check["attainment"] or 0) >= args.attainment
    unverified = verified.status == "optimal" and check is None
    # Homogeneous first: on a tie it wins (the same fleet, or as dear, with no table to keep).
    candidates = ([("homogeneous", homo_plan)] if homo_plan is not None else []) + (
        [("mix", verified)] if mix_ok else [])
    if not candidates and unverified:
        candidates = [("mix (unverified)", verified)]
    recommended = min(candidates, key=lambda c: c[1].usd_per_hour) if candidates else None
    table = routing_table(ctx.buckets, verified) if verified.status == "optimal" else []
    fleet = None
    if recommended is not None and ctx.simulable(recommended[1].replicas):
        fleet = _fleet_yaml(ctx.catalogue, recommended[1].replicas, out,
                            table if recommended[0] == "mix" else None)
    paper_homo = paper.cheapest_homogeneous()
    data = {
        "schema": "costroute-plan", "schema_version": 2,
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "costroute " + shlex.join(sys.argv[1:]),
        "workload": ctx.spec.model_dump(mode="json"),
        "workload_description": ctx.spec.describe(),
        "capacity_method": args.capacity,
        "buckets": [b.to_json() for b in paper.buckets],
        "capacity_rps_per_replica": paper.capacity,
        "capacity_closed_form_rps": closed_form,
        "mix_factors": factors,
        "paper": paper.best.__dict__,
        "paper_homogeneous": {k: v.__dict__ for k, v in paper.homogeneous.items()},
        "verified": verified.__dict__ if verified.status == "optimal" else None,
        "verified_check": check,
        "verified_homogeneous": homo_plan.__dict__ if homo_plan else None,
        "verified_homogeneous_check": homo_check,
        "routing_table": table,
        "tries": tries,
        "recommended": recommended[0] if recommended else None,
        "summary": _summary(paper.best, paper_homo, verified if mix_ok else None, homo_plan),
        "unverified": [o.id for o in ctx.offers if o.model is None
                       and paper.best.replicas.get(o.id)],
        "profiles": {oid: {"kind": t.kind, "accelerator": t.accelerator,
                           "source": t.hardware.get("source", t.command)}
                     for oid, t in ctx.tables.items()},
        "attainment_target": args.attainment,
        "timing_s": {"total": total_s, "ilp_solve": paper.best.solve_s},
    }
    write_json(out / "plan.json", data)
    text = plan_markdown(data, fleet)
    (out / "plan.md").write_text(text)
    return text


def _summary(paper: Any, paper_homo: Any, verified: Any, verified_homo: Any) -> dict[str, Any]:
    """$/hour of the paper optimum and of the verified plan, the cheapest homogeneous fleet on
    paper and verified, and the savings vs homogeneous on each side."""
    def usd(p: Any) -> float | None:
        return p.usd_per_hour if p is not None and p.status == "optimal" else None

    def saving(mix: float | None, homo: float | None) -> float | None:
        return 1 - mix / homo if mix is not None and homo else None

    paper_usd, verified_usd = usd(paper), usd(verified)
    paper_homo_usd, verified_homo_usd = usd(paper_homo), usd(verified_homo)
    return {"paper_usd_per_hour": paper_usd, "verified_usd_per_hour": verified_usd,
            "paper_homogeneous_usd_per_hour": paper_homo_usd,
            "verified_homogeneous_usd_per_hour": verified_homo_usd,
            "verified_over_paper": (verified_usd / paper_usd
                                    if verified_usd is not None and paper_usd else None),
            "saving_on_paper": saving(paper_usd, paper_homo_usd),
            "saving_verified": saving(verified_usd, verified_homo_usd)}


def _fleet_yaml(catalogue: Catalogue, replicas: dict[str, int], out: Path,
                table: list[dict[str, Any]] | None) -> Path:
    import yaml

    backends = []
    for a in catalogue.accelerators:
        n = replicas.get(a.id, 0)
        if n <= 0:
            continue
        backends.append({
            "id": a.id, "engine": a.engine, "engine_options": a.engine_options or {},
            "accelerator": a.accelerator, "usd_per_hour": a.usd_per_hour,
            "price_source": a.price_source, "profile": f"profiles/{a.id}.json",
            "replicas": n, "ray_actor_options": a.ray_actor_options or {}})
    policy: dict[str, Any] = {"name": "cost-slo"}
    if table:
        policy["params"] = {"routing_table": table}
    fleet = {"policy": policy, "fallback": "fastest", "backends": backends}
    (out / "fleet.yaml").write_text(
        "# Written by costroute plan: the chosen replica counts"
        + (" and the plan's routing table (each request bucket's share per backend)"
           if table else "") + ".\n" + yaml.safe_dump(fleet, sort_keys=False))
    serve = {"applications": [{"name": "costroute", "route_prefix": "/",
                               "import_path": "serving.app:app_builder",
                               "args": {"config": str(out / "fleet.yaml")}}]}
    (out / "serve.yaml").write_text("# serve run " + str(out / "serve.yaml") + "\n"
                                    + yaml.safe_dump(serve, sort_keys=False))
    return out / "fleet.yaml"


def plan_markdown(d: dict[str, Any], fleet: Path | None) -> str:
    offers = list(next(iter(d["capacity_rps_per_replica"].values())).keys())
    method = ("simulated: one replica per bucket under Poisson arrivals, the highest rate "
              "meeting the attainment target" if d["capacity_method"] == "simulated"
              else "closed form")
    lines = ["# Fleet plan\n", f"Workload: {d['workload_description']}.", "",
             "Command:", "", "```", d["command"], "```", "",
             f"## Capacity per replica (req/s within the SLO; {method})", "",
             "| bucket | rate (req/s) | p90 prompt / output | " + " | ".join(offers) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in offers) + " |"]
    for b in d["buckets"]:
        caps = d["capacity_rps_per_replica"][b["label"]]
        lines.append(f"| {b['label']} | {b['rate_rps']:.3g} | {b['prompt_tokens']} / "
                     f"{b['output_tokens']} | " + " | ".join(f"{caps[o]:.3g}" for o in offers) + " |")
    if d["profiles"]:
        lines += ["", "Profiles: " + "; ".join(f"{k}: {v['kind']} ({v['source']})"
                                                 for k, v in d["profiles"].items())]
    lines += ["", "## Answer", "",
              "| fleet | replicas | $/hour | simulated attainment | TTFT p50 / p90 ms | "
              "TPOT p50 / p90 ms | $/1M output tokens (provisioned) |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    tries = d["tries"]
    rows = [("paper optimum (the integer program's mix)", d["paper"],
             {"attainment": tries[0]["attainment"]} if tries else None),
            ("mix after the simulator's repairs", d["verified"] if len(tries) > 1 else None,
             d["verified_check"]),
            ("cheapest homogeneous on paper", _cheapest(d["paper_homogeneous"]), None),
            ("cheapest homogeneous, verified", d["verified_homogeneous"],
             d["verified_homogeneous_check"])]
    for name, p, c in rows:
        if p is None:
            continue
        if p["status"] != "optimal":
            lines.append(f"| {name} | {p['note'] or 'infeasible'} | | | | | |")
            continue
        c = c or {}
        reps = ", ".join(f"{k} x{v}" for k, v in p["replicas"].items())
        lines.append(f"| {name} | {reps} | {p['usd_per_hour']:.4g} | "
                     f"{_f(c.get('attainment'), '.3f')} | {_f(c.get('ttft_p50_ms'))} / "
                     f"{_f(c.get('ttft_p90_ms'))} | {_f(c.get('tpot_p50_ms'), '.2f')} / "
                     f"{_f(c.get('tpot_p90_ms'), '.2f')} | "
                     f"{_f(c.get('usd_per_1m_output_tokens'), '.4g')} |")
    if len(tries) > 1:
        lines += ["", "Verification (the simulator, cost-slo with the plan's routing table; "
                      "each miss adds a replica where the misses are):", ""]
        lines += [f"- {t['change']}: " + ", ".join(f"{k} x{v}" for k, v in t["replicas"].items())
                  + f", ${t['usd_per_hour']:.4g}/h, attainment "
                  + (f"< {d['attainment_target']:g} (stopped once its misses ruled the target "
                     f"out; at most {_f(t['attainment'], '.3f')})" if t.get("stopped_early")
                     else _f(t["attainment"], ".3f"))
                  for t in tries]
    s = d["summary"]
    lines += ["", "| | mix $/hour | homogeneous $/hour | saving vs homogeneous |",
              "| --- | --- | --- | --- |",
              f"| on paper | {_f(s['paper_usd_per_hour'], '.4g')} | "
              f"{_f(s['paper_homogeneous_usd_per_hour'], '.4g')} | {_pct(s['saving_on_paper'])} |",
              f"| verified | {_f(s['verified_usd_per_hour'], '.4g')} | "
              f"{_f(s['verified_homogeneous_usd_per_hour'], '.4g')} | "
              f"{_pct(s['saving_verified'])} |", "",
              f"Verified / paper cost: {_f(s['verified_over_paper'], '.3f')}. ILP solve "
              f"{d['timing_s']['ilp_solve'] * 1e3:.1f} ms; plan {d['timing_s']['total']:.1f} s."]
    if d["unverified"]:
        lines += ["", f"Unverified: {', '.join(d['unverified'])} come(s) with a throughput "
                      "table and no latency profile, so the simulator cannot check a fleet "
                      "that uses them; the mix is the integer program's answer on paper."]
    if d["routing_table"] and d["recommended"] == "mix":
        lines += ["", "Routing table (written into fleet.yaml as the cost-slo policy's "
                      "`routing_table`): each bucket's share per backend.", ""]
        lines += [f"- {r['slo_class'] or 'no-slo'} prompt {r['prompt_tokens']} output "
                  f"{r['output_tokens']}: " + ", ".join(f"{k} {v:.2f}"
                                                      for k, v in r["shares"].items())
                  for r in d["routing_table"]]
    rec = d["recommended"]
    if rec is None:
        lines += ["", "No candidate met the attainment target in the simulator."]
    else:
        lines += ["", f"Recommended (the cheapest that meets attainment >= "
                      f"{d['attainment_target']} in the simulator, cost-slo routing"
                      f"{' with the routing table' if rec == 'mix' else ''}): the "
                      f"{'homogeneous fleet' if rec == 'homogeneous' else rec}."]
    if fleet is not None:
        lines += ["", f"Deploy: `costroute serve --config {fleet}` or `serve run "
                      f"{fleet.parent / 'serve.yaml'}`."]
    return "\n".join(lines) + "\n"


def _cheapest(plans: dict[str, Any]) -> dict[str, Any] | None:
    ok = [p for p in plans.values() if p["status"] == "optimal"]
    return min(ok, key=lambda p: p["usd_per_hour"]) if ok else None


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.1f}%"


def _f(x: Any, spec: str = ".1f") -> str:
    return "–" if x is None else format(x, spec)
