"""`costroute profile validate`: predicted vs measured TTFT, TPOT and E2E on a held-out
random workload (open-loop Poisson arrivals at several loads), with and without the online
correction. The predictions are made exactly as the router makes them: from the requests in
flight at the moment each request is sent (profiles/tracking.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from profiles.latency import (
    BackendLoad,
    Correction,
    LatencyModel,
    Prediction,
    RequestShape,
    RunningSeq,
)
from profiles.profiler import prompt_ids
from profiles.targets import Target, Timing
from profiles.tracking import InflightTracker


@dataclass(frozen=True)
class ValidationPlan:
    loads: tuple[float, ...] = (0.3, 0.6, 0.85)
    """Utilisation per load level: arrival rate x the replica time a mean request uses when
    it shares the batch with 3 others (from the profile)."""
    requests_per_load: int = 60
    prompt_tokens: tuple[int, int] = (24, 384)
    output_tokens: tuple[int, int] = (8, 64)
    seed: int = 1


@dataclass
class _Record:
    load: float
    shape: RequestShape
    raw: Prediction
    corrected: Prediction
    timing: Timing


async def validate(
    target: Target,
    model: LatencyModel,
    vocab_size: int,
    plan: ValidationPlan,
    progress: Callable[[int], None] = lambda n: None,
) -> dict[str, Any]:
    rng = np.random.default_rng(plan.seed)
    tracker = InflightTracker()
    correction = Correction()
    records: list[_Record] = []
    ids = 0
    for load in plan.loads:
        mean = RequestShape(sum(plan.prompt_tokens) // 2, sum(plan.output_tokens) // 2)
        sharing = BackendLoad(running=(RunningSeq(mean.prompt_tokens, mean.output_tokens),) * 3)
        rate = load / (model.predict(mean, sharing).replica_ms / 1e3)
        gaps = rng.exponential(1.0 / rate, size=plan.requests_per_load)
        shapes = [
            RequestShape(int(rng.integers(*plan.prompt_tokens)), int(rng.integers(*plan.output_tokens)))
            for _ in range(plan.requests_per_load)
        ]
        prompts = [prompt_ids(rng, s.prompt_tokens, vocab_size) for s in shapes]
        tasks = []
        start = time.perf_counter()
        due = 0.0
        for gap, shape, prompt in zip(gaps, shapes, prompts):
            due += gap
            delay = start + due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            ids += 1
            rid = f"v{ids}"
            now = time.perf_counter()
            snapshot = tracker.snapshot(now)
            raw = model.predict(shape, snapshot)
            corrected = model.predict(shape, snapshot, correction)
            tracker.submit(rid, shape.prompt_tokens, shape.output_tokens, now)

            async def one(rid: str = rid, shape: RequestShape = shape, prompt: list[int] = prompt,
                          raw: Prediction = raw, corrected: Prediction = corrected,
                          load: float = load) -> None:
                nonlocal correction
                timing = await target.run(prompt, shape.output_tokens,
                                          lambda n: tracker.tokens(rid, n))
                tracker.finish(rid)
                if not timing.error and timing.token_times:
                    correction = correction.update(corrected, timing.ttft_ms, timing.tpot_ms)
                records.append(_Record(load, shape, raw, corrected, timing))
                progress(1)

            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return report(records, correction)


def _errors(records: list[_Record], which: str, metric: str) -> dict[str, float | int]:
    pred, obs = [], []
    for r in records:
        t = r.timing
        if t.error or not t.token_times:
            continue
        observed = {"ttft": t.ttft_ms, "tpot": t.tpot_ms, "e2e": t.e2e_ms}[metric]
        if observed is None or observed <= 0:
            continue
        p = getattr(r.raw if which == "raw" else r.corrected, f"{metric}_ms")
        pred.append(p)
        obs.append(observed)
    if not obs:
        return {"n": 0}
    p_arr, o_arr = np.asarray(pred), np.asarray(obs)
    rel = (p_arr - o_arr) / o_arr
    return {
        "n": len(obs),
        "mape_pct": float(np.mean(np.abs(rel)) * 100),
        "p90_abs_error_ms": float(np.percentile(np.abs(p_arr - o_arr), 90)),
        "bias_pct": float(np.mean(rel) * 100),
        "median_observed_ms": float(np.median(o_arr)),
        "median_predicted_ms": float(np.median(p_arr)),
    }


def report(records: list[_Record], correction: Correction) -> dict[str, Any]:
    out: dict[str, Any] = {"requests": len(records),
                           "errors": sum(1 for r in records if r.timing.error)}
    for which in ("raw", "corrected"):
        out[which] = {m: _errors(records, which, m) for m in ("ttft", "tpot", "e2e")}
    out["by_load"] = {
        str(load): {m: _errors([r for r in records if r.load == load], "raw", m)
                    for m in ("ttft", "tpot", "e2e")}
        for load in sorted({r.load for r in records})
    }
    out["extrapolated_share"] = (
        sum(r.raw.extrapolated for r in records) / len(records) if records else 0.0
    )
    out["final_correction"] = {"ttft_factor": correction.ttft_factor,
                               "tpot_factor": correction.tpot_factor}
    return out


def format_report(rep: dict[str, Any]) -> str:
    lines = [f"{rep['requests']} requests, {rep['errors']} errors, "
             f"{rep['extrapolated_share']:.0%} of predictions extrapolated",
             f"{'metric':<6} {'correction':<10} {'MAPE %':>8} {'p90 |err| ms':>13} "
             f"{'bias %':>8} {'median obs ms':>14} {'median pred ms':>15}"]
    for which in ("raw", "corrected"):
        for m in ("ttft", "tpot", "e2e"):
            e = rep[which][m]
            if not e.get("n"):
                continue
            lines.append(
                f"{m:<6} {'with' if which == 'corrected' else 'without':<10} "
                f"{e['mape_pct']:>8.1f} {e['p90_abs_error_ms']:>13.2f} {e['bias_pct']:>8.1f} "
                f"{e['median_observed_ms']:>14.2f} {e['median_predicted_ms']:>15.2f}"
            )
    return "\n".join(lines)
