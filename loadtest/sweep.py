"""`costroute loadtest sweep`: rising rates until SLO attainment falls below a target.

Pure: the rates, each point, the best one and the sweep's record; the CLI
(loadtest/commands.py) drives the runs. The answer is the endpoint's price-performance: the highest goodput among the rates
that met the target, and the dollars per 1M output tokens (provisioned) there.
"""

from __future__ import annotations

import json
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


def sweep_record(label: str, summary: dict[str, Any], attainment_target: float,
                 workload_description: str, points: list[dict[str, Any]],
                 started_utc: str) -> dict[str, Any]:
    """sweep.json after the points so far (`summary`: the last point's run summary)."""
    return {
        "schema": SWEEP_SCHEMA, "schema_version": SWEEP_VERSION, "label": label,
        "target": summary["target"], "attainment_target": attainment_target,
        "workload_description": workload_description,
        "pricing": (summary["cost"].get("provisioned") or {}).get("source"),
        "points": points, "best": best_point(points),
        "command": summary["command"], "created_utc": started_utc,
    }


def read_sweep(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "sweep.json"
    data = json.loads(path.read_text())
    if data.get("schema") != SWEEP_SCHEMA or data.get("schema_version") != SWEEP_VERSION:
        raise ConfigError(f"{path} is not a costroute sweep v{SWEEP_VERSION}", "sweep")
    data["_path"] = str(path)
    return data
