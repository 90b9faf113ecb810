#!/usr/bin/env python
"""Autoscaling in the simulator: what a day of traffic costs under three ways of sizing the
fleet, at what SLO attainment.

The catalogue and request mix of docs/examples/planning (roofline-estimated accelerators,
70% interactive chat, 30% relaxed documents). `costroute plan` sizes the fleet for the peak
rate (40 req/s) first; its verified fleet, calibrated capacities and mix factors are then
used by:

  static     the plan's fleet, fixed all day (what a fleet of fixed size must be)
  ray-*      Ray Serve's default autoscaling policy (ongoing requests per replica over
             target_ongoing_requests, 30 s up / 600 s down delays) on each of the plan's
             backends, at most twice the static fleet, with three targets: Ray's default
             (2), costroute's fleet-config default (16), and "tuned": what one replica of
             the static fleet carries at the peak (the figure an operator would tune it to)
  cost-aware costroute's CostAwareScaler (serving/scaling.py) over every accelerator of
             the catalogue, with the plan's capacities; the router follows its split
  oracle     the same scaler told the workload's true rate (the highest it reaches within
             a start-up ahead) instead of forecasting it, with no noise allowance or
             margin: what perfect foresight would save with the same capacities (the bound
             any forecast works against; not a policy one can run)

Both scaled fleets start as the static one. Every replica they add serves `--startup` seconds
after it is ordered; every replica is billed from its order to its release (after draining). Two workloads: a day (the rate follows a diurnal
curve, compressed `--compress` times) and a bursty one (gamma arrivals, burstiness 3, with
bursts of 2x). Figures: provisioned $ per 1M output tokens (replica-seconds x price over the
measured window / output tokens) and SLO attainment.

    python benchmarks/bench_autoscaling.py --out benchmarks/results/autoscaling.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from _results import provenance, write_results  # benchmarks/_results.py (on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EXAMPLE = ROOT / "docs" / "examples" / "planning"

from loadtest.metrics import measured_window  # noqa: E402
from loadtest.records import Record  # noqa: E402
from loadtest.simulator import SimBackend, Simulation  # noqa: E402
from loadtest.workload import WorkloadSpec, parse_workload  # noqa: E402
from profiles.latency import LatencyModel  # noqa: E402
from profiles.table import load_profile  # noqa: E402
from serving.policies import make_policy  # noqa: E402
from serving.scaling import (  # noqa: E402
    Autoscaler,
    CostAwareScaler,
    CostAwareSettings,
    OngoingRequestsScaler,
    ScaledBackend,
)

PEAK_RPS = 40.0
# A day's rate as a share of the peak, by hour (a typical diurnal shape: a night trough at a
# fifth of the peak, the afternoon peak); linear between the hours, repeating daily.
DAY = ((0, 0.45), (2, 0.3), (4, 0.2), (6, 0.3), (8, 0.55), (10, 0.8), (12, 0.95), (14, 1.0),
       (16, 0.95), (18, 0.9), (20, 0.8), (22, 0.6))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="write the results JSON here")
    ap.add_argument("--compress", type=float, default=6.0,
                    help="a simulated day lasts 24 h / this (default 6: 4 hours)")
    ap.add_argument("--burst-hours", type=float, default=1.0,
                    help="length of the bursty workload, simulated hours (default 1)")
    ap.add_argument("--startup", type=float, default=60.0,
                    help="seconds from ordering a replica to its serving (default 60)")
    ap.add_argument("--workloads", default="day,bursty", help="comma-separated: day, bursty")
    ap.add_argument("--cap", action="append", default=[], metavar="ID=N",
                    help="at most N replicas of accelerator ID (a supply cap, e.g. scarce "
                         "domestic cards): the plan, Ray and the cost-aware scaler all keep it")
    ap.add_argument("--margin", type=float,
                    help=f"the cost-aware scaler's forecast margin (default "
                         f"{CostAwareSettings.margin})")
    args = ap.parse_args()

    mix = yaml.safe_load((EXAMPLE / "workload.yaml").read_text())
    catalogue = yaml.safe_load((EXAMPLE / "catalogue.yaml").read_text())
    caps = {k: int(v) for k, v in (c.split("=", 1) for c in args.cap)}
    for a in catalogue["accelerators"]:
        if a["id"] in caps:
            a["max_replicas"] = caps.pop(a["id"])
    if caps:
        raise SystemExit(f"--cap: no accelerator {sorted(caps)} in the catalogue")
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        plan = _plan(mix, catalogue, Path(tmp))
        models = {oid: LatencyModel(load_profile(str(Path(tmp) / "plan" / "profiles" /
                                                     f"{oid}.json")))
                  for oid in plan["profiles"]}
    prices = {a["id"]: a["usd_per_hour"] for a in catalogue["accelerators"]}
    limits = {a["id"]: a.get("max_replicas") for a in catalogue["accelerators"]}
    static = plan["verified"]["replicas"] if plan["recommended"] == "mix" else \
        plan["verified_homogeneous"]["replicas"]
    table = plan["routing_table"] if plan["recommended"] == "mix" else None
    capacity = plan["capacity_rps_per_replica"]  # calibrated, times each offer's mix factor
    print(f"static fleet (the plan's, for {PEAK_RPS:g} req/s): {static}", file=sys.stderr)

    results: dict[str, Any] = {
        "provenance": provenance(),
        "what": "provisioned $ per 1M output tokens and SLO attainment, simulated, for a "
                "fleet sized for the peak, Ray Serve's default autoscaling and costroute's "
                "cost-aware scaling",
        "catalogue": "docs/examples/planning/catalogue.yaml (roofline-estimated profiles)",
        "peak_rps": PEAK_RPS, "startup_s": args.startup, "static_fleet": static,
        "compress": args.compress, "caps": args.cap, "cost_aware_settings": vars(_settings(args)),
        "plan": {k: plan[k] for k in ("recommended", "mix_factors", "summary")},
        "workloads": {},
    }
    for name in args.workloads.split(","):
        spec = _workload(name, mix, args)
        print(f"{name}: {spec.arrival.model_dump(exclude_none=True)}", file=sys.stderr)
        runs = {}
        base = _run("static", spec, [SimBackend(k, models[k], prices[k], n)
                                      for k, n in static.items()], None, table)
        runs["static"] = base
        per_replica = base["ongoing_per_replica_at_peak"]
        ray_backends = [ScaledBackend(k, prices[k], models[k], 1,
                                      min(2 * n, limits[k] or 2 * n), args.startup)
                        for k, n in static.items()]
        # The scaled fleets start as the static one (warm, no cold start) and scale from it.
        for label, target in (("ray-default", 2.0), ("ray-16", 16.0), ("ray-tuned", per_replica)):
            runs[label] = _run(label, spec, [SimBackend(k, models[k], prices[k], n,
                                                        startup_s=args.startup)
                                             for k, n in static.items()],
                               OngoingRequestsScaler(ray_backends, target), None)
            runs[label]["target_ongoing_requests"] = target
        cheapest = min(static, key=lambda k: prices[k])
        scaled = [ScaledBackend(k, prices[k], models[k], 1 if k == cheapest else 0, limits[k],
                                args.startup) for k in models]
        slos = {c: dict(v) for c, v in mix["slo_classes"].items()}
        runs["cost-aware"] = _run(
            "cost-aware", spec, [SimBackend(k, models[k], prices[k], static.get(k, 0),
                                            startup_s=args.startup) for k in models],
            CostAwareScaler(scaled, slos, _settings(args), capacity), None)
        runs["oracle"] = _run(
            "oracle", spec, [SimBackend(k, models[k], prices[k], static.get(k, 0),
                                        startup_s=args.startup) for k in models],
            OracleScaler(spec, scaled, slos, dataclasses.replace(_settings(args), margin=0.0,
                                                                 noise_z=0.0), capacity), None)
        for r in runs.values():
            for other in ("static", "ray-default", "ray-16", "ray-tuned", "oracle"):
                r[f"vs_{other}"] = _ratio(r["usd_per_1m_output_tokens"],
                                          runs[other]["usd_per_1m_output_tokens"])
        results["workloads"][name] = {"spec": spec.model_dump(mode="json", exclude_none=True),
                                      "runs": runs}
        for k, r in runs.items():
            print(f"  {k:11s} ${r['usd_per_1m_output_tokens']:.4f}/1M out "
                  f"({r['vs_static']:.3f}x static, {r['vs_ray-default']:.3f}x / "
                  f"{r['vs_ray-16']:.3f}x / {r['vs_ray-tuned']:.3f}x ray, "
                  f"{r['vs_oracle']:.3f}x oracle), attainment "
                  f"{r['attainment']:.4f}, mean ${r['mean_usd_per_hour']:.2f}/h, "
                  f"{r['sim_s']:.0f} s", file=sys.stderr)
    results["total_s"] = round(time.time() - started, 1)
    if args.out:
        write_results(args.out, results)
    print(json.dumps({w: {k: [r["usd_per_1m_output_tokens"], r["attainment"]]
                          for k, r in v["runs"].items()}
                      for w, v in results["workloads"].items()}, indent=1))
    return 0


class OracleScaler(CostAwareScaler):
    """CostAwareScaler with the workload's true rate in place of its forecast: each bucket
    keeps its smoothed share of the traffic, the total is the highest rate the workload
    reaches between now and a start-up ahead (what a replica ordered now must be ready for).
    Benchmark-only: it reads the scaler's bucket tracks."""

    def __init__(self, spec: WorkloadSpec, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrival = spec.arrival
        self.now = 0.0

    def decide(self, now: float, replicas: Any) -> Any:
        self.now = now
        return super().decide(now, replicas)

    def forecast(self) -> dict[str, float]:
        levels = {t.bucket.label: t.level for t in self._tracks.values() if t.level is not None}
        total = sum(levels.values())
        if total <= 0 or self.arrival.rate_rps is None:
            return {k: 0.0 for k in levels}
        ahead = np.linspace(self.now, self.now + self._lookahead_s, 64)
        true = self.arrival.rate_rps * float(self.arrival.factor(ahead).max())
        return {k: v / total * true for k, v in levels.items()}


def _settings(args: argparse.Namespace) -> CostAwareSettings:
    return CostAwareSettings() if args.margin is None else CostAwareSettings(margin=args.margin)


def _plan(mix: dict[str, Any], catalogue: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """`costroute plan` for the example's mix at the peak rate (its own command, as a user
    would run it)."""
    workload = dict(mix, arrival={"process": "poisson", "rate_rps": PEAK_RPS})
    (tmp / "peak.yaml").write_text(yaml.safe_dump(workload))
    (tmp / "catalogue.yaml").write_text(yaml.safe_dump(catalogue))
    subprocess.run([sys.executable, "-m", "costroute.cli", "plan", "--catalogue",
                    str(tmp / "catalogue.yaml"), "--workload", str(tmp / "peak.yaml"),
                    "--out", str(tmp / "plan"), "--no-progress"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads((tmp / "plan" / "plan.json").read_text())  # type: ignore[no-any-return]


def _workload(name: str, mix: dict[str, Any], args: argparse.Namespace) -> WorkloadSpec:
    raw = {k: v for k, v in mix.items() if k not in ("arrival", "duration_s")}
    hour = 3600.0 / args.compress
    if name == "day":
        raw["arrival"] = {"process": "poisson", "rate_rps": PEAK_RPS, "period_s": 24 * hour,
                          "rate_curve": [[h * hour, f] for h, f in DAY]}
        raw["duration_s"] = 24 * hour
    elif name == "bursty":
        length = args.burst_hours * 3600.0
        bursts = [{"at_s": at, "duration_s": 120.0, "factor": 2.0}
                  for at in (0.2 * length, 0.5 * length, 0.8 * length)]
        raw["arrival"] = {"process": "gamma", "burstiness": 3.0, "rate_rps": PEAK_RPS / 2,
                          "bursts": bursts}
        raw["duration_s"] = length
    else:
        raise SystemExit(f"unknown workload {name!r} (day, bursty)")
    raw["warmup_s"] = 0
    return parse_workload(raw)


def _run(name: str, spec: WorkloadSpec, backends: list[SimBackend],
         scaler: Autoscaler | None, table: list[dict[str, Any]] | None) -> dict[str, Any]:
    policy = make_policy("cost-slo", {"routing_table": table} if table else None)
    t0 = time.perf_counter()
    sim = Simulation(backends, policy, spec, scaler=scaler)
    records = sim.run()
    sim_s = time.perf_counter() - t0
    measured = [r for r in records if not r.warmup]
    start, end = measured_window(records)
    usd = sim.provisioned_usd(start, end)
    out_tokens = sum(r.completion_tokens for r in measured if r.ok)
    total = sum(usd.values())
    changes = [(round(t, 1), target) for t, target, _ in sim.scaling]
    return {
        "attainment": sum(1 for r in measured if r.met_slo()) / len(measured),
        "requests": len(measured), "errors": sum(1 for r in measured if not r.ok),
        "usd": total, "usd_by_backend": usd, "output_tokens": out_tokens,
        "usd_per_1m_output_tokens": total / out_tokens * 1e6,
        "mean_usd_per_hour": total / (end - start) * 3600, "window_s": end - start,
        "ongoing_per_replica_at_peak": _ongoing_at_peak(measured, backends),
        "replicas_over_time": _thin(changes), "sim_s": round(sim_s, 1),
    }


def _ongoing_at_peak(records: list[Record], backends: list[SimBackend]) -> float:
    """Requests in flight per replica over the busiest tenth of the run (Little's law on the
    requests sent then), for a fixed fleet: the figure Ray's target is tuned to."""
    ordered = sorted(records, key=lambda r: r.sent_s)
    span = ordered[-1].sent_s - ordered[0].sent_s
    width = span / 10 if span > 0 else 1.0
    best = 0.0
    for k in range(10):
        lo = ordered[0].sent_s + k * width
        rs = [r for r in ordered if lo <= r.sent_s < lo + width]
        busy = sum(r.done_s or 0.0 for r in rs) / width
        best = max(best, busy)
    return max(best / max(sum(b.replicas for b in backends), 1), 1.0)


def _thin(changes: list[tuple[float, dict[str, int]]]) -> list[Any]:
    """The targets where they change."""
    out: list[Any] = []
    for t, target in changes:
        if not out or out[-1][1] != target:
            out.append([t, target])
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


if __name__ == "__main__":
    raise SystemExit(main())
