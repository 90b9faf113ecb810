"""`costroute simulate`: a fleet config + a workload + a policy -> a simulated load-test run
(records, the load tester's summary and report), or a sweep over one setting."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backends.errors import ConfigError

_EPILOG = """\
examples:
  # the default fleet under its cost-slo policy, mixed chat/document traffic at 4 req/s
  costroute simulate --fleet deploy/local.yaml --rate 4 --mix chat-doc \\
      --slo-mix interactive=0.3,standard=0.5,batch=0.2 --duration 600 --out runs/sim

  # tune the policy: which safety margin is cheapest at 99% attainment?
  costroute simulate --fleet deploy/local.yaml --rate 6 --mix chat-doc --duration 600 \\
      --slo-mix interactive=0.3,standard=0.7 --sweep safety_margin=1,1.2,1.5,2 --attainment 0.99

  # compare policies on the same workload
  costroute simulate --fleet deploy/local.yaml --rate 6 --duration 600 \\
      --sweep policy=cost-slo,round-robin,least-loaded,fastest,cheapest
"""


def register(sub: Any) -> None:
    from loadtest.commands import add_workload_args

    p = sub.add_parser(
        "simulate", help="what-if: simulate a fleet under a workload and a routing policy",
        description=(
            "Discrete-event simulation of a fleet config's backends (each replica a "
            "continuous-batching engine driven by its profile table) under a workload, routed "
            "by the same policy code the live ingress runs. Writes what a load test writes "
            "(records.jsonl, summary.json, report); --sweep runs one simulation per value of a "
            "setting and names the cheapest that meets --attainment."),
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fleet", default="deploy/local.yaml",
                   help="fleet config (backends, profiles, prices, replicas, SLO classes, "
                        "policy); default deploy/local.yaml")
    p.add_argument("--backend", action="append", default=None, metavar="ID",
                   help="simulate only these backends of the fleet (repeatable)")
    p.add_argument("--replicas", action="append", default=[], metavar="ID=N",
                   help="override a backend's replica count (repeatable)")
    p.add_argument("--profile", action="append", default=[], metavar="ID=PATH",
                   help="what a backend's replicas really do, if not its fleet profile "
                        "(repeatable), e.g. a table measured through the serving path; the "
                        "router still predicts with the fleet's tables")
    p.add_argument("--interference", default=None, metavar="TABLE",
                   help="backends that share a machine slow each other down by this table's "
                        "measured factors (`costroute profile interference`)")
    p.add_argument("--policy", default=None, help="policy name or import path (default: the fleet's)")
    p.add_argument("--policy-param", action="append", default=[], metavar="K=V",
                   help="policy parameter (repeatable; numbers are read as numbers)")
    p.add_argument("--fallback", choices=["fastest", "reject"], default=None,
                   help="when no backend meets the SLO (default: the fleet's)")
    p.add_argument("--sweep", default=None, metavar="PARAM=V1,V2,...",
                   help="one run per value: a policy parameter (e.g. safety_margin), "
                        "`policy`, `fallback`, or a setting of the fleet's autoscaler "
                        "(e.g. autoscaler.margin=0,0.05,0.1)")
    p.add_argument("--attainment", type=float, default=0.99,
                   help="with --sweep: the SLO attainment target (default 0.99)")
    add_workload_args(p)
    p.add_argument("--out", default=None, help="output folder (default runs/simulate-UTCSTAMP)")
    p.add_argument("--label", default=None, help="short name in reports")
    p.add_argument("--no-report", action="store_true", help="records and summary only")
    p.add_argument("--against", default=None, metavar="RUN",
                   help="validate: simulate the workload of this live load-test run (its "
                        "summary.json names it) and compare attainment, TTFT, TPOT and "
                        "share per backend with what was measured")
    p.add_argument("--no-oracle", action="store_true",
                   help="skip the cost oracle (an LP lower bound on any router's cost)")
    p.set_defaults(func=_cmd_simulate)


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def fleet_backends(fleet: Any, replicas: dict[str, int],
                   profiles: dict[str, str] | None = None) -> list[Any]:
    from loadtest.simulator import SimBackend
    from profiles.latency import LatencyModel
    from profiles.table import load_profile

    profiles = profiles or {}
    unknown = sorted(set(profiles) - {b.id for b in fleet.backends})
    if unknown:
        raise ConfigError(f"--profile names backends not in the fleet: {unknown}", "profile")
    scaled = fleet.autoscaler is not None  # its autoscaler runs: from the minimum up
    return [SimBackend(b.id, LatencyModel(load_profile(b.profile)), b.usd_per_hour,
                       replicas.get(b.id, b.replicas if b.autoscaling is None
                                    else b.autoscaling.min_replicas if scaled
                                    else max(b.autoscaling.min_replicas, 1)),
                       LatencyModel(load_profile(profiles[b.id])) if b.id in profiles else None,
                       b.autoscaling.startup_s if scaled and b.autoscaling is not None else 0.0)
            for b in fleet.backends]


def load_interference_for(path: str | None, backends: list[Any]) -> Any:
    """The interference table at `path` (None: none), checked against the fleet's backends."""
    if path is None:
        return None
    from profiles.interference import load_interference

    table = load_interference(path)
    shared = set(table.backends) & {b.id for b in backends}
    if len(shared) < 2:
        raise ConfigError(f"--interference {path}: it measured {list(table.backends)}, which "
                          f"share fewer than two backends with the fleet "
                          f"({[b.id for b in backends]})", "interference")
    return table


def simulate_run(model_name: str, backends: list[Any], policy_name: str, params: dict[str, Any],
                 fallback: str, spec: Any, out: Path | None, label: str,
                 report: bool = True, oracle: bool = True,
                 interference: Any = None, plans: Any = None,
                 target: float | None = None, fleet: Any = None) -> dict[str, Any]:
    """One simulation -> its summary (written to `out` with its records when given). With
    `target` (and `plans`, the arrivals), a run that cannot reach that attainment stops
    there and returns only {"stopped_early": True, "attainment": its bound, "measured": n}
    (`Simulation`). With `fleet` (its config) and an `autoscaler` in it, the fleet's
    cost-aware autoscaler runs (a new one for the run) and the provisioned cost is each
    replica's billed time."""
    from loadtest.metrics import Pricing, measured_window, summarize
    from loadtest.simulator import Simulation
    from serving.policies import make_policy

    policy = make_policy(policy_name, params)
    scaler = None
    if fleet is not None and fleet.autoscaler is not None:
        from serving.router import fleet_scaler

        scaler = fleet_scaler(fleet, {b.id: b.model for b in backends})
    started = time.perf_counter()
    sim = Simulation(backends, policy, spec, fallback, interference,  # type: ignore[arg-type]
                     plans, target, scaler)
    records = sim.run()
    if sim.stopped:
        return {"stopped_early": True, "attainment": sim.attainment_bound,
                "measured": sim.measured_plans}
    wall = time.perf_counter() - started
    per = {b.id: b.replicas * b.usd_per_hour for b in backends}
    pricing = Pricing(sum(per.values()), "simulated fleet: replicas x usd_per_hour of "
                      + ", ".join(f"{b.id} x{b.replicas}" for b in backends), per)
    scaling = None
    if scaler is not None:
        start, end = measured_window(records)
        hours = max(end - start, 1e-9) / 3600
        per = {k: usd / hours for k, usd in sim.provisioned_usd(start, end).items()}
        pricing = Pricing(sum(per.values()), "simulated, autoscaled (cost-aware): every "
                          "replica billed from its order to its release, mean over the "
                          "measured window", per)
        scaling = {"interval_s": scaler.interval_s, "decisions": len(sim.scaling),
                   "timeline": _timeline(sim, backends)}
    target = (spec.arrival.rate_rps if spec.arrival.process != "closed" and not spec.trace
              and not spec.arrival.varies() else None)
    summary = summarize(records, pricing=pricing, target_rate_rps=target, extra={
        "label": label,
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "costroute " + shlex.join(sys.argv[1:]),
        "target": {"url": "simulated", "model": model_name},
        "workload": spec.model_dump(mode="json"),
        "workload_description": spec.describe(),
        "simulated": True,
        "simulation": {
            "policy": policy_name, "params": params, "fallback": fallback,
            "backends": [{"id": b.id, "replicas": b.replicas, "usd_per_hour": b.usd_per_hour,
                          "profile": b.model.profile.backend_id} for b in backends],
            "interference": None if interference is None else {
                "node": interference.node, "backends": list(interference.backends),
                "created": interference.created, "command": interference.command},
            "scaling": scaling,
            "wall_s": wall, "requests_per_wall_s": len(records) / wall if wall > 0 else None,
            "note": "ITL is not simulated (requests record first and last token only)",
            "oracle": _oracle(records, backends) if oracle else None,
        },
    })
    if out is not None:
        from loadtest.results import write_run

        write_run(out, records, summary)
        if report:
            from loadtest.report import write_report

            write_report(out, summary, records)
    return summary


_ORACLE_MAX_REQUESTS = 50_000


def _timeline(sim: Any, backends: list[Any]) -> list[dict[str, Any]]:
    """Provisioned cost over time: at each decision that changed a target, the targets and
    what they cost per hour."""
    price = {b.id: b.usd_per_hour for b in backends}
    out: list[dict[str, Any]] = []
    for t, target, reason in sim.scaling:
        if not out or out[-1]["replicas"] != target:
            out.append({"t_s": round(t, 3), "replicas": dict(target),
                        "usd_per_hour": sum(n * price[k] for k, n in target.items()),
                        "reason": reason})
    return out


def _oracle(records: list[Any], backends: list[Any]) -> dict[str, Any]:
    """Policy cost / the oracle's lower bound, both as attributed cost of measured requests."""
    from loadtest.oracle import oracle_cost

    measured = [r for r in records if not r.warmup]
    if len(measured) > _ORACLE_MAX_REQUESTS:
        return {"status": f"skipped: more than {_ORACLE_MAX_REQUESTS} requests"}
    result = oracle_cost(measured, backends)
    policy = sum(r.cost_usd or 0.0 for r in measured if r.ok)
    return {"what": "lower bound on the attributed cost any router could reach "
                    "(loadtest/oracle.py)", "usd": result.usd, "policy_usd": policy,
            "policy_over_oracle": policy / result.usd if result.usd > 0 else None,
            "status": result.status, "infeasible_alone": result.infeasible_alone,
            "solve_s": result.solve_s}


def _cmd_simulate(args: argparse.Namespace) -> int:
    from loadtest.commands import one_line, parse_pairs, workload_from_args
    from serving.config import load_fleet_config, select_backends

    fleet = load_fleet_config(args.fleet)
    if args.backend:
        fleet = select_backends(fleet, args.backend)
    replicas = {k: int(v) for k, v in (parse_pairs(",".join(args.replicas), "replicas", str)
                                       if args.replicas else {}).items()}
    unknown = sorted(set(replicas) - {b.id for b in fleet.backends})
    if unknown or any(n < 1 for n in replicas.values()):
        raise ConfigError(f"--replicas: unknown backend {unknown} or a count < 1 ({replicas})",
                          "replicas")
    if args.against:
        from loadtest.results import read_summary
        from loadtest.workload import parse_workload

        live = read_summary(args.against)
        if live.get("simulated"):
            raise ConfigError(f"--against {args.against} is a simulated run; give a live one",
                              "against")
        spec = parse_workload(live["workload"], f"{args.against} workload")
    else:
        live = None
        spec = workload_from_args(args, dict(fleet.slo_classes), fleet.default_slo_class)
    profiles = parse_pairs(",".join(args.profile), "profile", str) if args.profile else {}
    backends = fleet_backends(fleet, replicas, profiles)
    interference = load_interference_for(args.interference, backends)
    policy = args.policy or fleet.policy.name
    params = dict(fleet.policy.params) if args.policy is None else {}
    params.update({k: _value(v) for k, v in (parse_pairs(",".join(args.policy_param), "policy_param",
                                                     str) if args.policy_param else {}).items()})
    fallback = args.fallback or fleet.fallback
    out = Path(args.out) if args.out else Path("runs") / (
        f"simulate-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}")
    if live is not None:
        s = simulate_run(fleet.served_model_name, backends, policy, params, fallback, spec, out,
                         args.label or f"simulated {live.get('label', '')}".strip(),
                         not args.no_report, False, interference, fleet=fleet)
        text = write_validation(out, live, s)
        print(text)
        return 0
    if not args.sweep:
        s = simulate_run(fleet.served_model_name, backends, policy, params, fallback, spec, out,
                         args.label or out.name, not args.no_report, not args.no_oracle,
                         interference, fleet=fleet)
        print(one_line(s))
        sim = s["simulation"]
        o = sim["oracle"] or {}
        if o.get("policy_over_oracle") is not None:
            print(f"attributed cost: policy ${o['policy_usd']:.4g}, oracle lower bound "
                  f"${o['usd']:.4g}: policy / oracle = {o['policy_over_oracle']:.3f} "
                  f"({o['status']})")
        if sim["scaling"]:
            prov = s["cost"]["provisioned"]
            print(f"autoscaled: {sim['scaling']['decisions']} decisions, "
                  f"{len(sim['scaling']['timeline'])} changes; provisioned "
                  f"${prov['usd_per_hour']:.3f}/h on average")
        print(f"simulated {s['requests']['total']} requests in {sim['wall_s']:.2f} s "
              f"({sim['requests_per_wall_s']:.0f} requests/s of wall time); wrote {out}/")
        return 0
    return _sweep(args, fleet, backends, policy, params, fallback, spec, out, interference)


def _sweep(args: argparse.Namespace, fleet: Any, backends: list[Any], policy: str,
           params: dict[str, Any], fallback: str, spec: Any, out: Path,
           interference: Any) -> int:
    from loadtest.commands import one_line

    name, sep, values = args.sweep.partition("=")
    if not sep or not values:
        raise ConfigError(f"--sweep: expected PARAM=V1,V2,... (got {args.sweep!r})", "sweep")
    if name.startswith("autoscaler.") and fleet.autoscaler is None:
        raise ConfigError(f"--sweep {name}: the fleet config has no autoscaler", "sweep")
    summaries = []
    for raw in values.split(","):
        v = _value(raw)
        p_name, p_params, fb, p_fleet = policy, dict(params), fallback, fleet
        if name.startswith("autoscaler."):
            from serving.config import parse_fleet_config

            setting = {**fleet.autoscaler.model_dump(), name.partition(".")[2]: v}
            p_fleet = parse_fleet_config({**fleet.model_dump(), "autoscaler": setting},
                                         f"--sweep {name}={raw}")
        elif name == "policy":
            p_name, p_params = str(v), {}
        elif name == "fallback":
            if v not in ("fastest", "reject"):
                raise ConfigError(f"--sweep fallback: {v!r} is not fastest or reject", "sweep")
            fb = str(v)
        else:
            p_params[name] = v
        label = f"{name}={raw}"
        s = simulate_run(fleet.served_model_name, backends, p_name, p_params, fb, spec,
                         out / label.replace("=", "-"), label, not args.no_report,
                         not args.no_oracle, interference, fleet=p_fleet)
        print(f"{label}: {one_line(s)}")
        summaries.append(s)
    from loadtest.report import write_comparison
    from loadtest.results import read_summary

    written = write_comparison(out, [read_summary(out / s["label"].replace("=", "-"))
                                     for s in summaries])
    print(cheapest_meeting(summaries, args.attainment))
    print(f"wrote {written.get('compare.md', out)}")
    return 0


def cheapest_meeting(summaries: list[dict[str, Any]], target: float) -> str:
    """Names the setting with the lowest cost per 1M output tokens among those that meet the
    attainment target: by provisioned cost when an autoscaler sized the fleet, else by
    attributed cost (the provisioned cost is then the same fleet for every setting)."""
    ok = [s for s in summaries if (s["slo"]["attainment"] or 0) >= target]
    if not ok:
        best = max(summaries, key=lambda s: s["slo"]["attainment"] or 0)
        return (f"no setting meets attainment >= {target}; the closest is {best['label']} "
                f"({best['slo']['attainment']:.3f})")

    scaled = all((s.get("simulation") or {}).get("scaling") for s in ok)
    kind = "provisioned" if scaled else "attributed"

    def cost(s: dict[str, Any]) -> float:
        usd = (s["cost"].get(kind) or {}).get("usd_per_1m_output_tokens")
        return float("inf") if usd is None else float(usd)

    best = min(ok, key=cost)
    return (f"cheapest setting with attainment >= {target}: {best['label']} (attainment "
            f"{best['slo']['attainment']:.3f}, {kind} ${cost(best):.4g} per 1M output "
            f"tokens)")


# Goals of the validation (issue 7): attainment within 3 points, median TTFT and TPOT
# within 15% of the live run.
_GOALS = {"attainment_points": 3.0, "median_rel": 0.15}


def validation_rows(live: dict[str, Any], sim: dict[str, Any]) -> list[dict[str, Any]]:
    """Live vs simulated, metric by metric: shares and attainments compared in points,
    latencies relatively; the goal is judged on attainment and the TTFT / TPOT medians."""
    rows: list[dict[str, Any]] = []

    def add(name: str, a: float | None, b: float | None, points: bool, judged: bool) -> None:
        gap = None
        if a is not None and b is not None:
            gap = (b - a) * 100 if points else ((b - a) / a if a else None)
        limit = _GOALS["attainment_points"] if points else _GOALS["median_rel"]
        rows.append({"metric": name, "live": a, "simulated": b, "gap": gap,
                     "unit": "points" if points else "relative",
                     "meets_goal": (abs(gap) <= limit) if judged and gap is not None else None})

    add("SLO attainment", live["slo"]["attainment"], sim["slo"]["attainment"], True, True)
    for cls, v in sorted(live["slo"]["classes"].items()):
        other = sim["slo"]["classes"].get(cls, {}).get("attainment")
        add(f"attainment, class {cls}", v["attainment"], other, True, False)
    for m in ("ttft", "tpot"):
        add(f"{m.upper()} p50 (ms)", live["latency_ms"][m]["median"],
            sim["latency_ms"][m]["median"], False, True)
        add(f"{m.upper()} p90 (ms)", live["latency_ms"][m]["p90"], sim["latency_ms"][m]["p90"],
            False, False)
    add("E2E p50 (ms)", live["latency_ms"]["e2e"]["median"], sim["latency_ms"]["e2e"]["median"],
        False, False)
    for b in sorted(set(live["backends"]) | set(sim["backends"])):
        add(f"share {b}", live["backends"].get(b, {}).get("share", 0.0),
            sim["backends"].get(b, {}).get("share", 0.0), True, False)
    return rows


def write_validation(out: Path, live: dict[str, Any], sim: dict[str, Any],
                     title: str = "Simulator vs live", second: str = "simulated") -> str:
    """validation.{json,md} in `out`: `sim` (a simulated run, or a repeat of the live run,
    which shows the live runs' own spread) against the live run."""
    from loadtest.results import write_json

    rows = validation_rows(live, sim)
    write_json(out / "validation.json", {
        "schema": "costroute-simulator-validation", "schema_version": 1,
        "live_run": live["_path"], "live_command": live.get("command"),
        "simulate_command": sim["command"], "workload": live["workload_description"],
        "goals": _GOALS, "rows": rows})

    def fmt(v: float | None, unit: str, gap: bool = False) -> str:
        if v is None:
            return "–"
        if unit == "points":
            return f"{v:+.1f} pts" if gap else f"{v * 100:.1f}%"
        return f"{v * 100:+.1f}%" if gap else f"{v:.3g}"

    lines = [f"# {title}: {live.get('label', '')}", "",
             f"Workload: {live['workload_description']}.", "",
             f"Live run: `{live.get('command')}`", "",
             f"{second.capitalize()} run: `{sim['command']}`", "",
             f"| metric | live | {second} | gap | goal |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        goal = {True: "met", False: "MISSED", None: ""}[r["meets_goal"]]
        lines.append(f"| {r['metric']} | {fmt(r['live'], r['unit'])} | "
                     f"{fmt(r['simulated'], r['unit'])} | {fmt(r['gap'], r['unit'], True)} "
                     f"| {goal} |")
    lines += ["", "Goals: SLO attainment within 3 points; median TTFT and TPOT within 15%."]
    (out / "validation.md").write_text("\n".join(lines) + "\n")
    return "\n".join(lines)
