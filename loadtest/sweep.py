"""`costroute loadtest sweep`: rising rates until SLO attainment falls below a target.

The decisions are pure (`sweep_rates`, `sweep_point`, `best_point`); `run_sweep` drives the
runs. The answer is the endpoint's price-performance: the highest goodput among the rates
that met the target, and the dollars per 1M output tokens (provisioned) there.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backends.errors import ConfigError

SWEEP_SCHEMA = "costroute-loadtest-sweep"
SWEEP_VERSION = 1


def sweep_rates(rates: str | None, start: float, factor: float, max_rate: float) -> list[float]:
    if rates:
        try:
            out = [float(r) for r in rates.split(",") if r.strip()]
        except ValueError:
            raise ConfigError(f"--rates: expected comma-separated numbers (got {rates!r})",
                              "rates") from None
        if not out or any(r <= 0 for r in out):
            raise ConfigError(f"--rates must be positive (got {rates!r})", "rates")
        return sorted(out)
    if start <= 0 or factor <= 1 or max_rate < start:
        raise ConfigError(f"need start > 0, factor > 1, max-rate >= start (got {start}, "
                          f"{factor}, {max_rate})", "start")
    out, r = [], start
    while r <= max_rate * (1 + 1e-9):
        out.append(round(r, 6))
        r *= factor
    return out


def sweep_point(rate: float, run: str, summary: dict[str, Any], target: float) -> dict[str, Any]:
    cost = summary["cost"]
    attainment = summary["slo"]["attainment"]
    return {
        "rate_rps": rate,
        "run": run,
        "achieved_rate_rps": summary["pacing"]["achieved_rate_rps"],
        "attainment": attainment,
        "goodput_rps": summary["slo"]["goodput_rps"],
        "output_tokens_per_s": summary["throughput"]["output_tokens_per_s"],
        "usd_per_1m_output_tokens": (cost.get("provisioned") or {}).get("usd_per_1m_output_tokens"),
        "usd_per_1m_output_tokens_attributed":
            (cost.get("attributed") or {}).get("usd_per_1m_output_tokens"),
        "ttft_p50_ms": summary["latency_ms"]["ttft"]["median"],
        "tpot_p50_ms": summary["latency_ms"]["tpot"]["median"],
        "meets_target": attainment is not None and attainment >= target,
    }


def best_point(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    good = [p for p in points if p["meets_target"]]
    return max(good, key=lambda p: p["goodput_rps"]) if good else None


async def run_sweep(args: argparse.Namespace, rates: list[float], pricing: Any,
                    classes: tuple[dict[str, Any], str | None], out: Path, label: str,
                    slo_headers: str) -> dict[str, Any]:
    """`classes`: the fleet's SLO classes and its default class."""
    from loadtest.commands import one_line, run_once, workload_from_args
    from loadtest.results import write_json

    out.mkdir(parents=True, exist_ok=True)
    points: list[dict[str, Any]] = []
    misses = 0
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    sweep: dict[str, Any] = {}
    for rate in rates:
        args.rate = rate
        spec = workload_from_args(args, *classes)
        name = f"rate-{rate:g}"
        summary = await run_once(args, spec, pricing, out / name, f"{label} @ {rate:g} req/s",
                                 slo_headers)
        print(f"rate {rate:g} req/s: {one_line(summary)}")
        points.append(sweep_point(rate, name, summary, args.attainment))
        sweep = {
            "schema": SWEEP_SCHEMA, "schema_version": SWEEP_VERSION, "label": label,
            "target": summary["target"], "attainment_target": args.attainment,
            "workload_description": spec.describe(", ".join(f"{r:g}" for r in rates[:len(points)])),
            "pricing": (summary["cost"].get("provisioned") or {}).get("source"),
            "points": points, "best": best_point(points),
            "command": summary["command"], "created_utc": started,
        }
        write_json(out / "sweep.json", sweep)  # after every point: a cut-off sweep keeps its data
        misses = misses + 1 if not points[-1]["meets_target"] else 0
        if misses >= args.patience:
            break
    if not args.no_report:
        from loadtest.report import write_sweep_report

        write_sweep_report(out, sweep)
    return sweep


def read_sweep(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "sweep.json"
    data = json.loads(path.read_text())
    if data.get("schema") != SWEEP_SCHEMA or data.get("schema_version") != SWEEP_VERSION:
        raise ConfigError(f"{path} is not a costroute sweep v{SWEEP_VERSION}", "sweep")
    data["_path"] = str(path)
    return data
