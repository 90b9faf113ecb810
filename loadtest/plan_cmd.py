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
         engine: onnxruntime, engine_options: {model: tiny}}
"""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from backends.errors import ConfigError


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


class OfferSpec(_Strict):
    id: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$")
    accelerator: str = Field("cpu", min_length=1, description="accelerator label")
    usd_per_hour: float = Field(..., ge=0, description="price of one replica per hour")
    price_source: str = ""
    profile: str | None = Field(None, description="a measured (or estimated) profile table")
    estimate: EstimateSpec | None = Field(None, description="or: a roofline from these figures")
    max_replicas: int | None = Field(None, ge=0)
    engine: str = "vllm"
    engine_options: dict[str, Any] = Field(default_factory=dict)
    ray_actor_options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> OfferSpec:
        if (self.profile is None) == (self.estimate is None):
            raise ValueError(f"accelerator {self.id!r}: give exactly one of profile or estimate")
        return self


class Catalogue(_Strict):
    model: dict[str, Any] | str = Field(
        "small", description="a built model size, or a model shape (name, num_parameters, "
                             "recipe) for roofline estimates")
    accelerators: list[OfferSpec] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        ids = [a.id for a in self.accelerators]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"accelerator ids must be unique; repeated: {dupes}")
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
    """Offer id -> its profile table (loaded, or estimated from its datasheet figures)."""
    from profiles.estimate import estimate_profile
    from profiles.table import load_profile

    manifest = None
    tables = {}
    for a in catalogue.accelerators:
        if a.profile is not None:
            p = Path(a.profile)
            tables[a.id] = load_profile(p if p.is_absolute() else root / p)
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
            "(measured or roofline-estimated profiles, prices), choose replica counts that "
            "minimise $/hour subject to the SLOs (Mélange's bucket x accelerator integer "
            "program, HiGHS), check the answer in the simulator, compare with the cheapest "
            "homogeneous fleet, and write a fleet config and a Ray Serve config."),
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--catalogue", required=True, help="catalogue YAML (see below)")
    p.add_argument("--attainment", type=float, default=0.99,
                   help="SLO attainment the simulator check must reach (default 0.99)")
    p.add_argument("--utilisation", type=float, default=0.85,
                   help="share of a replica's batch slots the plan may fill (default 0.85)")
    p.add_argument("--headroom", type=float, default=0.8,
                   help="plan mean latencies to this share of each target (default 0.8)")
    p.add_argument("--check-duration", type=float, default=300.0,
                   help="simulated seconds for the check (default 300)")
    add_workload_args(p)
    p.add_argument("--out", default=None, help="output folder (default runs/plan-UTCSTAMP)")
    p.set_defaults(func=_cmd_plan)


def _cmd_plan(args: argparse.Namespace) -> int:
    from loadtest.commands import workload_from_args
    from loadtest.planner import Offer, buckets, plan
    from profiles.latency import LatencyModel

    for name, v in (("attainment", args.attainment), ("utilisation", args.utilisation),
                    ("headroom", args.headroom)):
        if not 0 < v <= 1:
            raise ConfigError(f"--{name} must be in (0, 1] (got {v})", name)
    catalogue = load_catalogue(args.catalogue)
    root = Path(args.catalogue).resolve().parent
    root = root.parent if root.name in ("deploy", "examples") else root
    if getattr(args, "rate", None) is None and not args.workload:
        raise ConfigError("planning needs a workload: --workload FILE or --rate", "rate")
    if args.duration is None and args.requests is None:
        args.duration = args.check_duration
    spec = workload_from_args(args, {})
    tables = offer_tables(catalogue, Path.cwd())
    offers = [Offer(a.id, LatencyModel(tables[a.id]), a.usd_per_hour, a.max_replicas)
              for a in catalogue.accelerators]
    bs = buckets(spec)
    first = plan(bs, offers, args.utilisation, args.headroom)
    homo = _homogeneous_meeting(catalogue, tables, first, spec, args.attainment)
    result, check, tries = _tighten(args, catalogue, tables, spec, bs, offers, first, homo)
    out = Path(args.out) if args.out else Path("runs") / (
        f"plan-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    print(check_and_write(args, catalogue, tables, spec, first, result, check, homo, tries, out))
    return 0


def _tighten(args: argparse.Namespace, catalogue: Catalogue, tables: dict[str, Any], spec: Any,
             bs: Any, offers: Any, result: Any, homo: Any) -> tuple[Any, Any, list[Any]]:
    """Check the ILP's mix in the simulator; while it misses the target, plan again with less
    of each replica's batch filled. The integer program plans means; the simulator sees
    queues and the live policy's choices. Stops once the mix would cost more than the
    verified homogeneous fleet."""
    from loadtest.planner import plan

    utilisation, tries = args.utilisation, []
    while True:
        check = (_simulate(catalogue, tables, result.best.replicas, spec)
                 if result.best.status == "optimal" else None)
        tries.append({"utilisation": utilisation, "replicas": result.best.replicas,
                      "usd_per_hour": result.best.usd_per_hour,
                      "attainment": check["attainment"] if check else None})
        met = check is not None and (check["attainment"] or 0) >= args.attainment
        dearer = homo is not None and result.best.usd_per_hour >= homo[0].usd_per_hour
        if met or check is None or dearer or len(tries) >= _MAX_TRIES:
            return result, check, tries
        utilisation *= 0.8
        result = plan(bs, offers, utilisation, args.headroom)


_MAX_TRIES = 6


def check_and_write(args: argparse.Namespace, catalogue: Catalogue, tables: dict[str, Any],
                    spec: Any, first: Any, result: Any, plan_check: dict[str, Any] | None,
                    homo: tuple[Any, dict[str, Any]] | None, tries: list[dict[str, Any]],
                    out: Path) -> str:
    """Write plan.json, plan.md, the recommended fleet.yaml (+ profiles/) and serve.yaml.
    Returns the markdown. Recommended: the cheapest fleet the simulator says meets the target."""
    from loadtest.results import write_json

    (out / "profiles").mkdir(exist_ok=True)
    for oid, table in tables.items():
        table.save(out / "profiles" / f"{oid}.json")
    checks = {"plan": plan_check} if plan_check is not None else {}
    homo_plan = None
    if homo is not None:
        homo_plan, checks["homogeneous"] = homo
    mix_ok = plan_check is not None and (plan_check["attainment"] or 0) >= args.attainment
    candidates = ([("mix", result.best)] if mix_ok else []) + (
        [("homogeneous", homo_plan)] if homo_plan is not None else [])
    recommended = min(candidates, key=lambda c: c[1].usd_per_hour) if candidates else None
    fleet = _fleet_yaml(catalogue, recommended[1].replicas, out) if recommended else None
    data = {
        "schema": "costroute-plan", "schema_version": 1,
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "costroute " + shlex.join(sys.argv[1:]),
        "workload": spec.model_dump(mode="json"), "workload_description": spec.describe(),
        "buckets": [b.__dict__ for b in result.buckets],
        "capacity_rps_per_replica": result.capacity,
        "plan": result.best.__dict__,
        "ilp_on_paper": first.best.__dict__,
        "homogeneous": {k: v.__dict__ for k, v in first.homogeneous.items()},
        "recommended": recommended[0] if recommended else None,
        "cheapest_homogeneous": homo_plan.__dict__ if homo_plan else None,
        "saving": _saving(result.best, homo_plan),
        "simulated_check": checks,
        "tries": tries,
        "profiles": {oid: {"kind": t.kind, "accelerator": t.accelerator,
                           "source": t.hardware.get("source", t.command)}
                     for oid, t in tables.items()},
        "attainment_target": args.attainment,
    }
    write_json(out / "plan.json", data)
    text = plan_markdown(data, fleet)
    (out / "plan.md").write_text(text)
    return text


def _homogeneous_meeting(catalogue: Catalogue, tables: dict[str, Any], result: Any, spec: Any,
                         target: float) -> tuple[Any, dict[str, Any]] | None:
    """The cheapest one-accelerator fleet that the simulator says meets the target: from each
    accelerator's ILP answer, adding replicas (up to +50%) until it does."""
    from loadtest.planner import Plan

    best: tuple[Any, dict[str, Any]] | None = None
    for oid, p in sorted(result.homogeneous.items(), key=lambda kv: kv[1].usd_per_hour):
        if p.status != "optimal" or (best is not None and p.usd_per_hour >= best[0].usd_per_hour):
            continue
        n = p.replicas.get(oid, 0)
        price = p.usd_per_hour / n if n else 0.0
        for extra in range(max(1, n // 2) + 1):
            check = _simulate(catalogue, tables, {oid: n + extra}, spec)
            cost = price * (n + extra)
            if best is not None and cost >= best[0].usd_per_hour:
                break
            if (check["attainment"] or 0) >= target:
                best = (Plan({oid: n + extra}, cost, p.assignment, "optimal", p.solve_s,
                             f"ILP answer {n} + {extra} to meet the target in the simulator"),
                        check)
                break
    return best


def _saving(best: Any, homo: Any) -> dict[str, Any] | None:
    if homo is None or best.status != "optimal" or homo.usd_per_hour <= 0:
        return None
    return {"usd_per_hour": homo.usd_per_hour - best.usd_per_hour,
            "share": 1 - best.usd_per_hour / homo.usd_per_hour}


def _simulate(catalogue: Catalogue, tables: dict[str, Any], replicas: dict[str, int],
              spec: Any) -> dict[str, Any]:
    """The planned fleet in the simulator under cost-slo: the figures the plan reports."""
    from loadtest.simulate_cmd import simulate_run
    from loadtest.simulator import SimBackend
    from profiles.latency import LatencyModel

    offers = {a.id: a for a in catalogue.accelerators}
    backends = [SimBackend(oid, LatencyModel(tables[oid]), offers[oid].usd_per_hour, n)
                for oid, n in replicas.items() if n > 0]
    s = simulate_run(str(catalogue.model if isinstance(catalogue.model, str)
                         else catalogue.model["name"]), backends, "cost-slo", {}, "fastest",
                     spec, None, "planned fleet", report=False, oracle=False)
    lat = s["latency_ms"]
    return {"replicas": replicas, "attainment": s["slo"]["attainment"],
            "classes": {k: v["attainment"] for k, v in s["slo"]["classes"].items()},
            "ttft_p50_ms": lat["ttft"]["median"], "ttft_p90_ms": lat["ttft"]["p90"],
            "tpot_p50_ms": lat["tpot"]["median"], "tpot_p90_ms": lat["tpot"]["p90"],
            "share": {k: v["share"] for k, v in s["backends"].items()},
            "usd_per_1m_output_tokens": s["cost"]["provisioned"]["usd_per_1m_output_tokens"],
            "requests": s["requests"]["measured"]}


def _fleet_yaml(catalogue: Catalogue, replicas: dict[str, int], out: Path) -> Path:
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
    fleet = {"policy": {"name": "cost-slo"}, "fallback": "fastest", "backends": backends}
    (out / "fleet.yaml").write_text("# Written by costroute plan: the chosen replica counts.\n"
                                    + yaml.safe_dump(fleet, sort_keys=False))
    serve = {"applications": [{"name": "costroute", "route_prefix": "/",
                               "import_path": "serving.app:app_builder",
                               "args": {"config": str(out / "fleet.yaml")}}]}
    (out / "serve.yaml").write_text("# serve run " + str(out / "serve.yaml") + "\n"
                                    + yaml.safe_dump(serve, sort_keys=False))
    return out / "fleet.yaml"


def plan_markdown(d: dict[str, Any], fleet: Path | None) -> str:
    offers = list(next(iter(d["capacity_rps_per_replica"].values())).keys())
    lines = ["# Fleet plan\n", f"Workload: {d['workload_description']}.", "",
             "Command:", "", "```", d["command"], "```", "",
             "## Capacity per replica (req/s within the SLO, from the profiles)", "",
             "| bucket | rate (req/s) | p90 prompt / output | " + " | ".join(offers) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in offers) + " |"]
    for b in d["buckets"]:
        caps = d["capacity_rps_per_replica"][b["label"]]
        lines.append(f"| {b['label']} | {b['rate_rps']:.3g} | {b['prompt_tokens']} / "
                     f"{b['output_tokens']} | " + " | ".join(f"{caps[o]:.3g}" for o in offers) + " |")
    lines += ["", "Profiles: " + "; ".join(f"{k}: {v['kind']} ({v['source']})"
                                             for k, v in d["profiles"].items()), ""]
    lines += ["## Answer", "", "| fleet | replicas | $/hour | simulated attainment | "
              "TTFT p50 / p90 ms | TPOT p50 / p90 ms | $/1M output tokens (provisioned) |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    homo = d["cheapest_homogeneous"]
    paper = d["ilp_on_paper"]
    rows = [("mix from the ILP as planned", paper, d["tries"][0]["attainment"], None),
            ("mix from the ILP, last try with less of each batch filled"
             if len(d["tries"]) > 1 else "", d["plan"], None, "plan"),
            ("cheapest homogeneous (verified)", homo, None, "homogeneous")]
    for name, p, attainment, check in rows:
        if not name or (check == "plan" and len(d["tries"]) == 1):
            continue
        if p is None or p["status"] != "optimal":
            lines.append(f"| {name} | {p['note'] if p else 'none meets the target'} | | | | | |")
            continue
        c = d["simulated_check"].get(check, {}) if check else {"attainment": attainment}
        reps = ", ".join(f"{k} x{v}" for k, v in p["replicas"].items())
        lines.append(f"| {name} | {reps} | {p['usd_per_hour']:.4g} | "
                     f"{_f(c.get('attainment'), '.3f')} | {_f(c.get('ttft_p50_ms'))} / "
                     f"{_f(c.get('ttft_p90_ms'))} | {_f(c.get('tpot_p50_ms'), '.2f')} / "
                     f"{_f(c.get('tpot_p90_ms'), '.2f')} | "
                     f"{_f(c.get('usd_per_1m_output_tokens'), '.4g')} |")
    if len(d["tries"]) > 1:
        lines += ["", "Tries (the simulator's check; each miss plans again with less of each "
                      "replica's batch filled):", ""]
        lines += [f"- utilisation {t['utilisation']:.3g}: "
                  + (", ".join(f"{k} x{v}" for k, v in t["replicas"].items()) or "infeasible")
                  + f", ${t['usd_per_hour']:.4g}/h, simulated attainment "
                  + _f(t["attainment"], ".3f") for t in d["tries"]]
    if homo is not None and paper["status"] == "optimal":
        gap = homo["usd_per_hour"] - paper["usd_per_hour"]
        lines += ["", f"On paper the ILP's mix costs ${paper['usd_per_hour']:.4g}/hour, "
                      f"${gap:.4g}/hour ({gap / homo['usd_per_hour'] * 100:.1f}%) less than the "
                      f"cheapest homogeneous fleet that meets the target in the simulator "
                      f"(${homo['usd_per_hour']:.4g}/hour). ILP solve "
                      f"{paper['solve_s'] * 1e3:.1f} ms."]
    rec = d["recommended"]
    if rec is None:
        lines += ["", "No candidate met the attainment target in the simulator."]
    else:
        lines += ["", f"Recommended (the cheapest that meets attainment >= "
                      f"{d['attainment_target']} in the simulator, cost-slo routing): the "
                      f"{'mix' if rec == 'mix' else 'homogeneous fleet'}."]
    if fleet is not None:
        lines += ["", f"Deploy: `costroute serve --config {fleet}` or `serve run "
                      f"{fleet.parent / 'serve.yaml'}`."]
    return "\n".join(lines) + "\n"


def _f(x: Any, spec: str = ".1f") -> str:
    return "–" if x is None else format(x, spec)


