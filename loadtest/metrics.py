"""Metric arithmetic (pure): records + run facts -> the summary (a versioned JSON dict).

Definitions (shared with the server and the simulator; see loadtest/records.py for the
per-request ones):
- the measured window runs from the first measured request sent to the last one finished;
  warm-up requests are excluded from every figure;
- throughput = completed requests (or their output / prompt + output tokens) / window;
- SLO attainment = requests meeting every target they carry / requests (errors are misses);
  goodput = requests meeting their SLO / window;
- provisioned cost = fleet usd_per_hour x window; attributed cost = sum of the per-request
  expected costs the router reports (x-costroute-cost-usd). Each is also given per 1M output
  tokens and per 1M total (prompt + output) tokens, and every cost figure names which it is.
Percentiles are numpy's linear ones, as `vllm bench serve` reports them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loadtest.records import Record

SCHEMA = "costroute-loadtest-summary"
SCHEMA_VERSION = 1

PROVISIONED = "provisioned: replicas x usd_per_hour x measured window, used or idle"
ATTRIBUTED = "attributed: sum of the router's expected cost per request (x-costroute-cost-usd)"


@dataclass(frozen=True)
class Pricing:
    """What the endpoint's fleet costs per hour, and where that figure comes from."""

    usd_per_hour: float
    source: str
    backends: dict[str, float] = field(default_factory=dict)  # backend id -> usd_per_hour (all replicas)


def stats(values: Iterable[float | None]) -> dict[str, float | int | None]:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return {"count": 0, "mean": None, "median": None, "p90": None, "p99": None}
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return {"count": int(v.size), "mean": float(v.mean()), "median": float(p50),
            "p90": float(p90), "p99": float(p99)}


def window_s(records: Sequence[Record]) -> float:
    """First measured send to last measured finish, seconds (0 when nothing was measured)."""
    start, end = measured_window(records)
    return max(end - start, 0.0)


def measured_window(records: Sequence[Record]) -> tuple[float, float]:
    """(first measured send, last measured finish), seconds from the start of the run;
    (0, 0) when nothing was measured."""
    measured = [r for r in records if not r.warmup]
    if not measured:
        return 0.0, 0.0
    return (min(r.sent_s for r in measured),
            max(r.sent_s + _finished(r) for r in measured))


def _finished(r: Record) -> float:
    for t in (r.done_s, r.end_s, r.token_s[-1] if r.token_s else None):
        if t is not None:
            return t
    return 0.0


def summarize(records: Sequence[Record], *, pricing: Pricing | None = None,
              target_rate_rps: float | None = None,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary of one run. `extra` (run facts: target, workload, command, ...) is merged
    in at the top level."""
    measured = [r for r in records if not r.warmup]
    ok = [r for r in measured if r.ok]
    window = window_s(records)
    per_s = (lambda x: x / window) if window > 0 else (lambda x: 0.0)
    out_tokens = sum(r.completion_tokens for r in ok)
    in_tokens = sum(r.prompt_tokens for r in ok)
    met = [r for r in measured if r.met_slo()]
    summary: dict[str, Any] = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "requests": {
            "total": len(records), "warmup": len(records) - len(measured),
            "measured": len(measured), "completed": len(ok),
            "failed": len(measured) - len(ok),
            "usage_from_server": sum(r.usage_from_server for r in ok),
        },
        "window_s": window,
        "pacing": _pacing(measured, target_rate_rps),
        "latency_ms": {
            "ttft": stats(r.ttft_ms for r in ok),
            "tpot": stats(r.tpot_ms for r in ok),
            "itl": stats(g for r in ok for g in r.itl_ms),
            "e2e": stats(r.e2e_ms for r in ok),
        },
        "throughput": {
            "requests_per_s": per_s(len(ok)),
            "output_tokens_per_s": per_s(out_tokens),
            "total_tokens_per_s": per_s(in_tokens + out_tokens),
        },
        "tokens": {"prompt": in_tokens, "output": out_tokens,
                   "output_meeting_slo": sum(r.completion_tokens for r in met)},
        "slo": _slo(measured, {id(r) for r in met}, window),
        "backends": _backends(measured, {id(r) for r in met}),
        "cost": _cost(measured, ok, met, window, pricing),
        "errors": _errors(measured),
    }
    if extra:
        summary.update(extra)
    return summary


def _pacing(measured: Sequence[Record], target: float | None) -> dict[str, Any]:
    lags = [r.lag_ms for r in measured if r.lag_ms is not None]
    sends = sorted(r.sent_s for r in measured)
    span = sends[-1] - sends[0] if len(sends) > 1 else 0.0
    return {
        "target_rate_rps": target,
        "achieved_rate_rps": (len(sends) - 1) / span if span > 0 else None,
        "schedule_lag_ms": stats(lags) | {"max": max(lags) if lags else None},
    }


def _slo(measured: Sequence[Record], met_ids: set[int], window: float) -> dict[str, Any]:
    """`met_ids`: id() of the measured records that met their SLO (judged once)."""
    classes: dict[str, list[Record]] = {}
    for r in measured:
        classes.setdefault(r.slo_class or "(none)", []).append(r)
    per_class = {}
    for name, rs in sorted(classes.items()):
        met = sum(id(r) in met_ids for r in rs)
        per_class[name] = {
            "requests": len(rs), "met": met, "attainment": met / len(rs),
            "goodput_rps": met / window if window > 0 else 0.0,
            "targets": rs[0].slo,
        }
    met = len(met_ids)
    return {
        "attainment": met / len(measured) if measured else None,
        "met": met,
        "goodput_rps": met / window if window > 0 else 0.0,
        "classes": per_class,
    }


def _backends(measured: Sequence[Record], met_ids: set[int]) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    completed: Counter[str] = Counter()
    met: Counter[str] = Counter()
    for r in measured:
        b = r.backend
        counts[b] += 1
        completed[b] += r.ok
        met[b] += id(r) in met_ids
    n = len(measured) or 1
    return {b: {"requests": c, "share": c / n, "completed": completed[b], "met_slo": met[b]}
            for b, c in counts.most_common()}


def _per_million(usd: float | None, tokens: int) -> float | None:
    return None if usd is None or tokens <= 0 else usd / tokens * 1e6


def _cost(measured: Sequence[Record], ok: Sequence[Record], met: Sequence[Record],
          window: float, pricing: Pricing | None) -> dict[str, Any]:
    out = sum(r.completion_tokens for r in ok)
    total = out + sum(r.prompt_tokens for r in ok)
    out_met = sum(r.completion_tokens for r in met)
    cost: dict[str, Any] = {"provisioned": None, "attributed": None}
    if pricing is not None:
        usd = pricing.usd_per_hour * window / 3600.0
        cost["provisioned"] = {
            "what": PROVISIONED, "source": pricing.source,
            "usd_per_hour": pricing.usd_per_hour, "backends_usd_per_hour": pricing.backends,
            "usd": usd,
            "usd_per_1m_output_tokens": _per_million(usd, out),
            "usd_per_1m_total_tokens": _per_million(usd, total),
            "usd_per_1m_output_tokens_meeting_slo": _per_million(usd, out_met),
        }
    priced = [r for r in ok if r.cost_usd is not None]
    if priced:
        usd = sum(r.cost_usd or 0.0 for r in priced)
        p_out = sum(r.completion_tokens for r in priced)
        p_total = p_out + sum(r.prompt_tokens for r in priced)
        cost["attributed"] = {
            "what": ATTRIBUTED, "requests_priced": len(priced), "usd": usd,
            "usd_per_1m_output_tokens": _per_million(usd, p_out),
            "usd_per_1m_total_tokens": _per_million(usd, p_total),
        }
    return cost


def _errors(measured: Sequence[Record]) -> dict[str, Any]:
    failed = [r for r in measured if not r.ok]
    by_status = Counter(str(r.status) for r in failed)
    examples: list[str] = []
    for r in failed:
        msg = f"HTTP {r.status}: {r.error}" if r.status else str(r.error)
        if msg not in examples:
            examples.append(msg)
        if len(examples) == 5:
            break
    return {"count": len(failed), "by_status": dict(by_status), "examples": examples}
