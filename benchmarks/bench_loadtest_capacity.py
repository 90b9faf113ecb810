"""The load generator's own capacity: how fast it can send, and how late.

Two measurements at rising target rates (constant arrivals, so any shortfall is ours):
* http: the real client (httpx, streaming, on uvloop) against loadtest/trivial_server.py in
  another process (a raw asyncio endpoint that answers at once: 8-token prompt, 1 token out);
* pacer: the same runner with a sender that does no I/O, i.e. the scheduler alone.
For each: achieved send rate, completed rate, and the schedule lag (real - scheduled send
time) p50/p99/max. "Sustained" = achieved and completed rates both >= 95% of the target.

    python benchmarks/bench_loadtest_capacity.py --out benchmarks/results/loadtest-capacity.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _results import write_results  # benchmarks/_results.py (this folder is on sys.path)

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from loadtest.client import OpenAIClient, TokenPool  # noqa: E402
from loadtest.metrics import summarize  # noqa: E402
from loadtest.records import Record  # noqa: E402
from loadtest.runner import run_load  # noqa: E402
from loadtest.workload import Planned, parse_workload  # noqa: E402


class NoIO:
    """A sender that answers at once: what is left is the runner's own cost."""

    async def send(self, plan: Planned, t0: float, scheduled: float | None) -> Record:
        sent = time.perf_counter()
        return Record(index=plan.index, sent_s=sent - t0,
                      scheduled_s=None if scheduled is None else scheduled - t0,
                      status=200, token_s=[0.0], end_s=0.0, done_s=0.0, completion_tokens=1)


def spec(rate: float, duration: float) -> Any:
    return parse_workload({
        "arrival": {"process": "constant", "rate_rps": rate},
        "mix": [{"prompt_tokens": {"mean": 8}, "output_tokens": {"mean": 1}}],
        "duration_s": duration, "warmup_s": 0.5, "max_in_flight": 1024})


async def measure(rate: float, duration: float, url: str | None) -> dict[str, Any]:
    s = spec(rate, duration)
    if url is None:
        records, _ = await run_load(s, NoIO(), progress=False)
    else:
        client = OpenAIClient(url, "trivial", pool=TokenPool(0, 16, 1024), max_connections=1024)
        try:
            records, _ = await run_load(s, client, progress=False)
        finally:
            await client.aclose()
    summary = summarize(records, target_rate_rps=rate)
    lag = summary["pacing"]["schedule_lag_ms"]
    achieved = summary["pacing"]["achieved_rate_rps"] or 0.0
    completed = summary["throughput"]["requests_per_s"]
    return {"target_rps": rate, "achieved_send_rps": achieved, "completed_rps": completed,
            "failed": summary["requests"]["failed"], "lag_p50_ms": lag["median"],
            "lag_p99_ms": lag["p99"], "lag_max_ms": lag["max"],
            "sustained": achieved >= 0.95 * rate and completed >= 0.95 * rate
            and summary["requests"]["failed"] == 0}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    sustained = [r for r in rows if r["sustained"]]
    tight = [r for r in sustained if r["lag_p99_ms"] <= 1.0]
    pick = lambda rs: max(rs, key=lambda r: r["target_rps"]) if rs else None  # noqa: E731
    return {"highest_sustained": pick(sustained), "highest_sustained_at_p99_lag_le_1ms": pick(tight)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--http-rates", default="250,500,750,1000,1250,1500,2000,3000,5000")
    p.add_argument("--pacer-rates", default="1000,5000,10000,20000,50000")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per rate")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    import uvloop

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "loadtest.trivial_server", "--port",
                               str(port)], cwd=_REPO_ROOT)
    time.sleep(1.0)
    url = f"http://127.0.0.1:{port}"
    results: dict[str, list[dict[str, Any]]] = {"http": [], "pacer": []}
    try:
        for side, rates in (("pacer", args.pacer_rates), ("http", args.http_rates)):
            for rate in [float(r) for r in rates.split(",")]:
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    row = runner.run(measure(rate, args.duration, url if side == "http" else None))
                results[side].append(row)
                print(f"{side:<6} target {rate:>8.0f}/s  sent {row['achieved_send_rps']:>9.1f}/s  "
                      f"completed {row['completed_rps']:>9.1f}/s  lag p50 {row['lag_p50_ms']:.3f} "
                      f"p99 {row['lag_p99_ms']:.3f} max {row['lag_max_ms']:.1f} ms"
                      f"{'' if row['sustained'] else '  (not sustained)'}", flush=True)
    finally:
        server.terminate()
        server.wait(10)
    summary = {side: best(rows) for side, rows in results.items()}
    print(summary)
    if args.out:
        write_results(args.out, {
            "benchmark": "costroute loadtest generator capacity (constant arrivals)",
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "python": platform.python_version()},
            "command": "python benchmarks/bench_loadtest_capacity.py " + " ".join(sys.argv[1:]),
            "duration_s_per_rate": args.duration, "results": results, "best": summary,
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
