"""Where a live request's time goes: the load tester's view joined to the engines' own.

Serves a fleet (`costroute serve`) with `COSTROUTE_ENGINE_TRACE` set, so its ONNX Runtime
engines log when each request reached the engine, was admitted, had its first token and
finished (backends/onnxruntime_engine.py); runs the load tester against it at each rate;
joins each client record to its engine line (same prompt and max_tokens, the engine's
arrival the first after the client's send); and splits TTFT into

    to engine     client send -> the engine has it (HTTP, Ray Serve proxy, ingress, routing,
                  the handle call to the backend replica)
    engine queue  -> admitted to the batch
    prefill       -> the engine has the first token (the prefill run, as the engine ran it)
    first out     -> the client reads the first token (back through replica, ingress, proxy)

and compares TPOT as the engine produced the tokens with TPOT as the client read them.
vLLM backends keep their own timings; their requests are left out of the join.

    python benchmarks/ttft_breakdown.py --config deploy/local.yaml --rates 0.5,1.5,3 \\
        --out docs/examples/simulator-validation/breakdown.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import write_results  # benchmarks/_results.py (this folder is on sys.path)
from bench_vllm import _free_port

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from loadtest.client import OpenAIClient, TokenPool  # noqa: E402
from loadtest.records import BACKEND_HEADER, Record  # noqa: E402
from loadtest.runner import run_load  # noqa: E402
from loadtest.workload import Planned, WorkloadSpec, chat_doc_preset, parse_workload  # noqa: E402
from serving.config import FleetConfig, load_fleet_config  # noqa: E402

PARTS = ("to_engine_ms", "engine_queue_ms", "prefill_ms", "first_out_ms", "ttft_ms",
         "engine_tpot_ms", "client_tpot_ms")


class _Stamped:
    """The client, noting each request's absolute send time (perf_counter)."""

    def __init__(self, client: OpenAIClient) -> None:
        self.client = client
        self.sent: dict[int, float] = {}

    async def send(self, plan: Planned, t0: float, scheduled: float | None) -> Record:
        self.sent[plan.index] = time.perf_counter()
        return await self.client.send(plan, t0, scheduled)


def serve(config: str, port: int, trace: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, COSTROUTE_ENGINE_TRACE=str(trace))
    out = open(log, "wb")  # noqa: SIM115  (the server's, for its lifetime)
    proc = subprocess.Popen([sys.executable, "-m", "costroute.cli", "serve", "--config", config,
                             "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
                            cwd=_REPO_ROOT)
    deadline = time.monotonic() + 600
    while b"costroute: serving" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"costroute serve did not start:\n{log.read_text()[-3000:]}")
        time.sleep(1)
    return proc


def workload(fleet: FleetConfig, rate: float, duration: float, warmup: float,
             seed: int) -> WorkloadSpec:
    return parse_workload({
        "arrival": {"process": "poisson", "rate_rps": rate},
        "mix": [c.model_dump() for c in chat_doc_preset()],
        "slo_classes": {k: v.model_dump() for k, v in fleet.slo_classes.items()},
        "slo_mix": {"interactive": 0.3, "standard": 0.5, "batch": 0.2},
        "duration_s": duration, "warmup_s": warmup, "seed": seed})


def join(records: list[Record], sent: dict[int, float],
         lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each measured, served record with its engine line (nearest engine arrival after the
    send, same prompt and max_tokens), split into parts (ms)."""
    free = sorted(lines, key=lambda line: line["arrived"])
    rows = []
    for r in sorted(records, key=lambda r: sent.get(r.index, 0.0)):
        if r.warmup or not r.ok or not r.token_s or r.index not in sent:
            continue
        at = sent[r.index]
        match = next((line for line in free if line["arrived"] >= at
                      and line["prompt_tokens"] == r.prompt_tokens
                      and line["max_tokens"] == r.planned_output_tokens), None)
        if match is None or match["arrived"] - at > 5.0:
            continue
        free.remove(match)
        n = len(r.token_s)
        rows.append({
            "component": r.component, "backend": r.headers.get(BACKEND_HEADER),
            "to_engine_ms": (match["arrived"] - at) * 1e3,
            "engine_queue_ms": (match["admitted"] - match["arrived"]) * 1e3,
            "prefill_ms": (match["first_token"] - match["admitted"]) * 1e3,
            "first_out_ms": (at + r.token_s[0] - match["first_token"]) * 1e3,
            "ttft_ms": r.token_s[0] * 1e3,
            "engine_tpot_ms": ((match["finished"] - match["first_token"]) / (n - 1) * 1e3
                               if n > 1 else None),
            "client_tpot_ms": (r.token_s[-1] - r.token_s[0]) / (n - 1) * 1e3 if n > 1 else None,
        })
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["component"], row["backend"]), []).append(row)
    out = []
    for (component, backend), group in sorted(groups.items()):
        entry: dict[str, Any] = {"component": component, "backend": backend,
                                 "requests": len(group)}
        for part in PARTS:
            values = sorted(v for v in (g[part] for g in group) if v is not None)
            if values:
                entry[part] = {"p50": statistics.median(values),
                               "p90": values[min(len(values) - 1, int(0.9 * len(values)))]}
        out.append(entry)
    return out


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| rate | component | backend | n | " + " | ".join(
        p.removesuffix("_ms").replace("_", " ") + " p50 / p90 ms" for p in PARTS) + " |",
        "| " + " | ".join(["---"] * (4 + len(PARTS))) + " |"]
    for result in results:
        for e in result["groups"]:
            cells = [f"{e[p]['p50']:.1f} / {e[p]['p90']:.1f}" if p in e else "-" for p in PARTS]
            lines.append(f"| {result['rate']:g} | {e['component']} | {e['backend']} | "
                         f"{e['requests']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


async def measure(url: str, model: str, spec: WorkloadSpec) -> tuple[list[Record], dict[int, float]]:
    client = OpenAIClient(url, model, pool=TokenPool(spec.seed, 16, 500))
    stamped = _Stamped(client)
    try:
        records, _ = await run_load(spec, stamped, progress=False)
    finally:
        await client.aclose()
    return records, stamped.sent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="deploy/local.yaml", help="fleet config to serve")
    p.add_argument("--rates", default="0.5,1.5,3", help="Poisson rates, req/s, comma-separated")
    p.add_argument("--duration", type=float, default=60.0, help="measured seconds per rate")
    p.add_argument("--warmup", type=float, default=5.0, help="warm-up seconds per rate")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default=None, help="write results JSON here (and .md beside it)")
    args = p.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    fleet = load_fleet_config(args.config)
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        trace, log = Path(tmp) / "trace.jsonl", Path(tmp) / "serve.log"
        server = serve(args.config, port, trace, log)
        results = []
        try:
            for rate in rates:
                trace.write_text("")
                spec = workload(fleet, rate, args.duration, args.warmup, args.seed)
                records, sent = asyncio.run(measure(f"http://127.0.0.1:{port}",
                                                    fleet.served_model_name, spec))
                time.sleep(1.0)  # the last lines reach the file
                lines = [json.loads(line) for line in trace.read_text().splitlines() if line]
                rows = join(records, sent, lines)
                results.append({"rate": rate, "records": len(records), "joined": len(rows),
                                "groups": summarise(rows)})
                print(f"rate {rate:g}: {len(rows)} of {len(records)} requests joined", flush=True)
        finally:
            server.send_signal(2)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
    table = markdown(results)
    print(table)
    if args.out:
        write_results(Path(args.out), {
            "benchmark": "TTFT breakdown: client vs engine timestamps on a live fleet",
            "command": "python " + " ".join([f"benchmarks/{Path(__file__).name}", *sys.argv[1:]]),
            "machine": {"platform": platform.platform(), "cores": os.cpu_count()},
            "config": args.config, "workload": "chat-doc, SLO classes interactive/standard/"
            "batch 0.3/0.5/0.2, Poisson", "duration_s": args.duration, "results": results})
        Path(args.out).with_suffix(".md").write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
