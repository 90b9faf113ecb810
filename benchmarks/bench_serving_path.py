#!/usr/bin/env python
"""What the serving path costs: one engine alone vs the same engine behind costroute.

Sides, one after the other on the same machine (never two at once), the tiny model:

* `vllm-serve`: vLLM's own OpenAI server (`vllm serve`, through bench_vllm.py's shim) with the
  engine options of the fleet config's vLLM backend (float32, eager, KV-cache bytes,
  max-num-seqs);
* `costroute-vllm`: `costroute serve --backend <that backend>`: the same engine in a Ray Serve
  replica behind the routing ingress and Ray Serve's HTTP proxy;
* `vllm-inprocess` / `ort-inprocess`: the engine in this process (`backends/`), driven by an
  asyncio client: no HTTP, no Ray; what the engine itself does;
* `costroute-ort`: the ONNX Runtime backend behind costroute.

The HTTP sides are driven by the same load generator, `costroute loadtest run` (closed loop:
N workers, each sends its next request when the last one ends), at every concurrency N:
`--prompt-tokens` / `--output-tokens` fixed lengths, ignore_eos, greedy; TTFT p50/p99, TPOT
p50 ((E2E - TTFT) / (tokens - 1), per request), E2E p50 and output tok/s (all output tokens /
(last finish - first send)). With `--vllm-bench`, `vllm bench serve` also drives vllm-serve
and costroute-vllm at each N (where it runs). The costroute sides also report the ingress's own
time per request (`costroute_overhead_ms` from /metrics: mean of the run).

Then the router's decision time per request (`policy.choose`, cost-slo) for 2, 8 and 64
backends, each carrying 8 running and 2 waiting requests (`decision_times`); the JSON says
whether the decision core ran compiled (`make compile`) or from sources.

    python benchmarks/bench_serving_path.py --rounds 2 --vllm-bench \\
        --out benchmarks/results/serving-path.json
    python benchmarks/bench_serving_path.py --sides costroute-vllm --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _results import provenance, write_results  # benchmarks/_results.py (on sys.path)
from bench_vllm import _free_port, _stop, _vllm_env, _wait_ready, vllm_cli

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from backends.model import read_manifest, resolve_model  # noqa: E402
from backends.model.build import costroute_home  # noqa: E402
from serving.config import BackendSpec, load_fleet_config  # noqa: E402

SIDES = ("vllm-serve", "costroute-vllm", "vllm-inprocess", "ort-inprocess", "costroute-ort")
GIB = 1 << 30


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else None


def _requests_for(concurrency: int, per_worker: int) -> int:
    return max(16, per_worker * concurrency)


# ---- the load generators --------------------------------------------------------------------


def loadtest(args: argparse.Namespace, url: str, n: int, work: Path,
             server_pid: int | None = None) -> dict[str, Any]:
    """`costroute loadtest run` against `url` at concurrency n (the model: the server's own
    first of /v1/models); its figures, and with `server_pid` where the CPU went meanwhile
    (`cpu_ms_per_token`: the server's processes by name, and the load generator)."""
    out = work / f"loadtest-c{n}"
    cmd = [sys.executable, "-m", "costroute.cli", "loadtest", "run", "--url", url,
           "--concurrency", str(n),
           "--requests", str(_requests_for(n, args.requests_per_worker)),
           "--warmup", str(args.warmup_s), "--prompt-tokens", str(args.prompt_tokens),
           "--output-tokens", str(args.output_tokens), "--seed", str(args.seed),
           "--no-progress", "--no-report", "--out", str(out)]
    before = _cpu_ticks(server_pid) if server_pid else {}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, cwd=_REPO_ROOT, capture_output=True, text=True, timeout=1800)
    after = _cpu_ticks(server_pid) if server_pid else {}
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"costroute loadtest failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    s = json.loads((out / "summary.json").read_text())
    lat = s["latency_ms"]
    return {"driver": "costroute loadtest", "concurrency": n,
            "command": shlex.join(["costroute", *cmd[3:]]).replace(str(work) + "/", ""),
            "completed": s["requests"]["completed"], "failed": s["requests"].get("failed"),
            "output_tokens": s["tokens"]["output"],
            "ttft_p50_ms": lat["ttft"]["median"], "ttft_p99_ms": lat["ttft"]["p99"],
            "tpot_p50_ms": lat["tpot"]["median"], "e2e_p50_ms": lat["e2e"]["median"],
            "output_tokens_per_s": s["throughput"]["output_tokens_per_s"],
            **({"cpu_ms_per_token": _cpu_per_token(
                before, after, s["tokens"]["output"],
                children_after.ru_utime + children_after.ru_stime
                - children.ru_utime - children.ru_stime)} if server_pid else {})}


def _cpu_ticks(root: int) -> dict[int, tuple[int, str]]:
    """CPU time (utime + stime, clock ticks) of `root` and every process under it, each with
    a name: its process title for Ray and vLLM processes (`ray::ServeReplica:...`,
    `VLLM::EngineCore`), else its script or program; `root` is "server process"."""
    stats: dict[int, tuple[int, int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]), argv)
    under, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _, _) in stats.items():
            if ppid == parent and pid not in under:
                under.add(pid)
                frontier.append(pid)
    out = {}
    for pid in under:
        if pid not in stats:
            continue
        _, ticks, argv = stats[pid]
        args = [a for a in argv.split("\0") if a]
        first = args[0] if args else "?"
        if first.startswith(("ray::", "VLLM::")):
            name = first.split()[0][:60]
            if "ServeReplica" not in name:  # ray::ServeController.listen_for_change
                name = name.split(".")[0]
        elif pid == root:
            name = "server process"
        else:
            name = next((os.path.basename(a) for a in args[1:] if a.endswith(".py")),
                        os.path.basename(first))
        out[pid] = (ticks, name)
    return out


def _cpu_per_token(before: dict[int, tuple[int, str]], after: dict[int, tuple[int, str]],
                   tokens: float, generator_s: float) -> dict[str, float]:
    """CPU milliseconds per output token spent meanwhile, by process name (largest first),
    the load generator's under "load generator"."""
    hz = os.sysconf("SC_CLK_TCK")
    by_name: dict[str, float] = {}
    for pid, (ticks, name) in after.items():
        spent = (ticks - before.get(pid, (0, name))[0]) / hz
        by_name[name] = by_name.get(name, 0.0) + spent
    by_name["load generator"] = generator_s
    per_token = {k: 1e3 * v / max(tokens, 1) for k, v in by_name.items() if v > 0}
    return dict(sorted(per_token.items(), key=lambda kv: -kv[1]))


def vllm_bench(args: argparse.Namespace, url_port: int, model_dir: Path, n: int, work: Path,
               env: dict[str, str], served_name: str | None) -> dict[str, Any]:
    """`vllm bench serve` (closed loop: --max-concurrency n) against the server on url_port."""
    name = f"vllm-bench-c{n}.json"
    cmd = vllm_cli(
        "bench", "serve", "--backend", "vllm", "--host", "127.0.0.1", "--port", str(url_port),
        "--model", str(model_dir), "--tokenizer", str(model_dir), "--dataset-name", "random",
        "--random-input-len", str(args.prompt_tokens), "--random-output-len",
        str(args.output_tokens), "--random-range-ratio", "0", "--ignore-eos",
        "--max-concurrency", str(n), "--num-prompts",
        str(_requests_for(n, args.requests_per_worker)), "--num-warmups", str(min(n, 4)),
        "--seed", str(args.seed), "--temperature", "0",
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99",
        "--disable-tqdm", "--save-result", "--result-dir", str(work), "--result-filename", name)
    if served_name:  # costroute serves the model under its own name; the tokenizer is the dir
        cmd += ["--served-model-name", served_name]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        return {"driver": "vllm bench serve", "concurrency": n,
                "error": (done.stdout[-800:] + done.stderr[-800:]).strip()}
    raw = json.loads((work / name).read_text())
    return {"driver": "vllm bench serve", "concurrency": n,
            "command": shlex.join(["vllm", *cmd[3:]]).replace(str(work) + "/", ""),
            "completed": raw["completed"], "output_tokens": raw["total_output_tokens"],
            "ttft_p50_ms": raw["median_ttft_ms"], "ttft_p99_ms": raw["p99_ttft_ms"],
            "tpot_p50_ms": raw["median_tpot_ms"], "e2e_p50_ms": raw["median_e2el_ms"],
            "output_tokens_per_s": raw["output_throughput"]}


async def _inprocess_level(engine: Any, prompts: list[list[int]], n: int,
                           output_tokens: int, tag: str) -> dict[str, Any]:
    from backends.interface import GenerateRequest, SamplingParams

    gate = asyncio.Semaphore(n)

    async def one(i: int, ids: list[int]) -> tuple[float, float, float, int]:
        request = GenerateRequest(f"{tag}-{i}", prompt_token_ids=tuple(ids),
                                  sampling=SamplingParams(max_tokens=output_tokens,
                                                          ignore_eos=True))
        async with gate:
            sent, first, tokens = time.perf_counter(), 0.0, 0
            async for chunk in engine.generate(request):
                if chunk.token_ids and not first:
                    first = time.perf_counter()
                tokens += len(chunk.token_ids)
            return sent, first, time.perf_counter(), tokens

    started = time.perf_counter()
    results = await asyncio.gather(*(one(i, ids) for i, ids in enumerate(prompts)))
    tokens = sum(r[3] for r in results)
    duration = max(r[2] for r in results) - started
    ttft = [1e3 * (f - s) for s, f, _, _ in results]
    tpot = [1e3 * (e - f) / (k - 1) for s, f, e, k in results if k > 1]
    e2e = [1e3 * (e - s) for s, _, e, _ in results]
    return {"driver": "asyncio, in-process", "concurrency": n, "completed": len(results),
            "output_tokens": tokens, "ttft_p50_ms": _pct(ttft, 50), "ttft_p99_ms": _pct(ttft, 99),
            "tpot_p50_ms": _pct(tpot, 50), "e2e_p50_ms": _pct(e2e, 50),
            "output_tokens_per_s": tokens / duration}


async def inprocess(args: argparse.Namespace, spec: BackendSpec, model_dir: Path,
                    log: Any) -> dict[str, Any]:
    from backends.registry import make_engine

    options = dict(spec.engine_options)
    options["model"] = str(model_dir)
    engine = make_engine(spec.engine, options)
    await engine.start()
    vocab = int(read_manifest(model_dir)["vocab_size"])
    rng = np.random.default_rng(args.seed)

    def prompts(count: int) -> list[list[int]]:
        return [[int(t) for t in rng.integers(10, vocab, size=args.prompt_tokens)]
                for _ in range(count)]

    levels = []
    try:
        await _inprocess_level(engine, prompts(4), 4, 16, "warmup")
        for n in args.concurrency:
            level = await _inprocess_level(engine, prompts(_requests_for(n, args.requests_per_worker)),
                                           n, args.output_tokens, f"c{n}")
            log(f"  in-process {spec.engine} N={n}: {level['output_tokens_per_s']:.0f} tok/s")
            levels.append(level)
    finally:
        await engine.shutdown()
    return {"engine": spec.engine, "engine_options": options, "levels": levels}


# ---- the servers ----------------------------------------------------------------------------


def _overhead_mean_ms(url: str) -> float | None:
    """Mean of costroute_overhead_ms over every request the server has answered."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    total = sum(float(v) for v in re.findall(r"^costroute_overhead_ms_sum\{[^}]*\} (\S+)", text, re.M))
    count = sum(float(v) for v in re.findall(r"^costroute_overhead_ms_count\{[^}]*\} (\S+)", text, re.M))
    return total / count if count else None


def serve_side(args: argparse.Namespace, side: str, spec: BackendSpec, model_dir: Path,
               log: Any) -> dict[str, Any]:
    """Start one server (vllm serve or costroute serve), drive it at every N, stop it."""
    root = costroute_home() / "tmp" / "bench-serving-path"
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{side}-", dir=root))
    port = _free_port()
    env = _vllm_env(work)
    if side == "vllm-serve":
        kv = spec.engine_options.get("kv_cache_space_gib", 1) * GIB
        cmd = vllm_cli("serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
                       "--dtype", "float32", "--enforce-eager", "--kv-cache-memory-bytes", str(kv),
                       "--max-num-seqs", str(spec.engine_options.get("max_num_seqs", 32)),
                       "--disable-uvicorn-access-log", "--disable-log-stats")
        shown = shlex.join(["vllm", *cmd[3:]])
    else:
        cmd = [sys.executable, "-m", "costroute.cli", "serve", "--config", args.config,
               "--backend", spec.id, "--port", str(port)]
        shown = shlex.join(["costroute", *cmd[3:]])
        # Ray keeps its sockets under $TMPDIR, whose path must stay short (AF_UNIX): the default
        env.pop("VLLM_RPC_BASE_PATH", None)
        env.pop("TMPDIR", None)
    url = f"http://127.0.0.1:{port}"
    info: dict[str, Any] = {"side": side, "server_command": shown.replace(str(work) + "/", ""),
                            "levels": []}
    with open(work / "server.log", "w") as out:
        proc = subprocess.Popen(cmd, cwd=_REPO_ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, process_group=0)  # not a new session: see _stop
        try:
            info["ready_s"] = _wait_ready(proc, port, args.server_timeout_s)
            log(f"{side}: ready in {info['ready_s']:.0f}s")
            for n in args.concurrency:
                level = loadtest(args, url, n, work, proc.pid)
                log(f"  {side} N={n}: {level['output_tokens_per_s']:.0f} tok/s, TPOT p50 "
                    f"{level['tpot_p50_ms']:.2f} ms, E2E p50 {level['e2e_p50_ms']:.0f} ms")
                info["levels"].append(level)
            if side.startswith("costroute"):
                info["overhead_mean_ms"] = _overhead_mean_ms(url)
            if args.vllm_bench and "vllm" in side:
                name = None if side == "vllm-serve" else args.served_model_name
                info["vllm_bench"] = [vllm_bench(args, port, model_dir, n, work, env, name)
                                      for n in args.concurrency]
        except BaseException:
            log(f"{side}: server log tail:\n{(work / 'server.log').read_text()[-3000:]}")
            raise
        finally:
            _stop(proc)
            if args.keep:
                log(f"{side}: kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    return info


# ---- the decision -------------------------------------------------------------------------


def decision_times(n_backends: int, iterations: int) -> dict[str, float]:
    """`policy.choose` (cost-slo) over `n_backends` backends (the measured cpu-onnxruntime
    table), each with 8 running and 2 waiting requests. No two calls see the same state (a
    live router's contexts and remaining tokens move on with every token), so nothing the
    latency model could memoise is warm; contexts of 200-1,100 tokens, the measured grid's range."""
    from profiles.latency import BackendLoad, LatencyModel, RequestShape, RunningSeq
    from profiles.table import load_profile
    from serving.policies import BackendView, RoutingContext, Slo, make_policy

    model = LatencyModel(load_profile(_REPO_ROOT / "profiles/tables/cpu-onnxruntime.json"))
    policy = make_policy("cost-slo")
    def load(k: int) -> BackendLoad:
        return BackendLoad(running=tuple(RunningSeq(200 + 60 * i + (k * 7 + i) % 331,
                                                    20 + 5 * i + (k * 13 + 3 * i) % 97)
                                         for i in range(8)),
                           waiting=(RequestShape(100 + k % 157, 64),) * 2, arrival_rate_per_s=5,
                           mean_prompt_tokens=128)

    samples = []
    for k in range(iterations):  # each context built untimed, just before its decision
        ctx = RoutingContext(RequestShape(100 + (k * 11) % 200, 64), Slo(ttft_ms=200, tpot_ms=50),
                             tuple(BackendView(f"b{i}", 0.1 + i * 0.01, model,
                                               load(k * n_backends + i))
                                   for i in range(n_backends)))
        t = time.perf_counter()
        policy.choose(ctx)
        samples.append((time.perf_counter() - t) * 1e6)
    samples.sort()
    p50 = samples[len(samples) // 2]
    return {"p50_us": p50, "p99_us": samples[int(len(samples) * 0.99)],
            "per_backend_us": p50 / n_backends}


def decisions(iterations: int) -> dict[str, Any]:
    from profiles.compiled import compiled_modules

    times = {str(n): decision_times(n, iterations) for n in (2, 8, 64)}
    return {"compiled_modules": compiled_modules(), "cost-slo": times}


# ---- report ---------------------------------------------------------------------------------


def pooled(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One side's rounds as one: each figure of each level the median over the rounds; the
    rounds themselves kept under "rounds"."""
    def median_levels(lists: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        out = []
        for levels in zip(*lists):
            merged = dict(levels[0])
            for key, value in levels[0].items():
                values = [lv.get(key) for lv in levels]
                if isinstance(value, (int, float)) and key != "concurrency" and all(
                        isinstance(v, (int, float)) for v in values):
                    merged[key] = float(np.median(values))
                elif isinstance(value, dict) and all(isinstance(v, dict) for v in values):
                    merged[key] = {k: float(np.median([v.get(k, 0.0) for v in values]))
                                   for k in value}  # e.g. cpu_ms_per_token, by process
            out.append(merged)
        return out

    first = dict(rounds[0])
    first["levels"] = median_levels([r["levels"] for r in rounds])
    if "vllm_bench" in first:
        first["vllm_bench"] = median_levels([r["vllm_bench"] for r in rounds])
    overheads = [r["overhead_mean_ms"] for r in rounds if r.get("overhead_mean_ms") is not None]
    if overheads:
        first["overhead_mean_ms"] = float(np.median(overheads))
    first["rounds"] = [{k: v for k, v in r.items() if k in ("levels", "vllm_bench", "ready_s",
                                                          "overhead_mean_ms")} for r in rounds]
    return first


def _level(side: dict[str, Any] | None, n: int) -> dict[str, Any] | None:
    if side is None:
        return None
    return next((lv for lv in side["levels"] if lv["concurrency"] == n), None)


def ratios(results: dict[str, Any], concurrency: list[int]) -> list[dict[str, Any]]:
    """costroute / reference at each N, for vLLM (vs vllm serve and vs in-process) and ORT."""
    rows = []
    pairs = (("costroute-vllm", "vllm-serve"), ("costroute-vllm", "vllm-inprocess"),
             ("costroute-ort", "ort-inprocess"))
    for ours, ref in pairs:
        for n in concurrency:
            a, b = _level(results.get(ours), n), _level(results.get(ref), n)
            if a is None or b is None:
                continue
            row: dict[str, Any] = {"ours": ours, "reference": ref, "concurrency": n}
            for key in ("output_tokens_per_s", "tpot_p50_ms", "e2e_p50_ms", "ttft_p50_ms"):
                if a.get(key) and b.get(key):
                    row[key] = a[key] / b[key]
            row["added_ttft_p50_ms"] = a["ttft_p50_ms"] - b["ttft_p50_ms"]
            rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'costroute vs':<16}{'N':>4}{'tok/s x':>9}{'TPOT x':>8}{'E2E x':>8}"
             f"{'TTFT +ms':>10}"]
    for r in rows:
        lines.append(f"{r['reference']:<16}{r['concurrency']:>4}"
                     f"{r.get('output_tokens_per_s', float('nan')):>9.3f}"
                     f"{r.get('tpot_p50_ms', float('nan')):>8.3f}"
                     f"{r.get('e2e_p50_ms', float('nan')):>8.3f}{r['added_ttft_p50_ms']:>10.1f}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--config", default="deploy/local.yaml",
                   help="fleet config whose backends give the engine options")
    p.add_argument("--vllm-backend", default="cpu-vllm", help="the config's vLLM backend id")
    p.add_argument("--ort-backend", default="cpu-onnxruntime",
                   help="the config's ONNX Runtime backend id")
    p.add_argument("--sides", default=",".join(SIDES),
                   help=f"comma-separated subset of {','.join(SIDES)}; empty: the decision "
                        "time only")
    p.add_argument("--concurrency", default="1,8,32", help="levels (default 1,8,32)")
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--output-tokens", type=int, default=128)
    p.add_argument("--requests-per-worker", type=int, default=4,
                   help="measured requests per worker at each level (at least 16 in all)")
    p.add_argument("--warmup-s", type=float, default=2.0,
                   help="loadtest: leading seconds excluded from the figures")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=1,
                   help="run every side this many times, the order reversed every other "
                        "round; each figure is the median over the rounds")
    p.add_argument("--vllm-bench", action="store_true",
                   help="also drive the vLLM HTTP sides with `vllm bench serve`")
    p.add_argument("--decision-iterations", type=int, default=5000)
    p.add_argument("--keep", action="store_true",
                   help="keep each server's folder (its log, the load tests' records)")
    p.add_argument("--server-timeout-s", type=float, default=300)
    p.add_argument("--out", default=None, help="JSON result file")
    args = p.parse_args(argv)
    args.concurrency = [int(x) for x in args.concurrency.split(",")]
    args.sides = [s for s in args.sides.split(",") if s]
    unknown = [s for s in args.sides if s not in SIDES]
    if unknown:
        p.error(f"--sides: unknown {unknown}; choose from {list(SIDES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    config = load_fleet_config(args.config)
    specs = {b.id: b for b in config.backends}
    vllm_spec, ort_spec = specs[args.vllm_backend], specs[args.ort_backend]
    model_dir = resolve_model(str(vllm_spec.engine_options.get("model", "tiny")))
    args.served_model_name = config.served_model_name
    load_before = os.getloadavg()
    started = time.time()
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in args.sides}
    for r in range(args.rounds):  # alternate the order: drift on the machine hits both ends
        for side in (args.sides if r % 2 == 0 else args.sides[::-1]):
            log(f"round {r + 1}/{args.rounds}: {side}")
            if side == "vllm-inprocess":
                runs[side].append(asyncio.run(inprocess(args, vllm_spec, model_dir, log)))
            elif side == "ort-inprocess":
                runs[side].append(asyncio.run(inprocess(args, ort_spec, model_dir, log)))
            else:
                spec = ort_spec if side.endswith("ort") else vllm_spec
                runs[side].append(serve_side(args, side, spec, model_dir, log))
    results = {side: pooled(rounds) for side, rounds in runs.items()}
    decision = decisions(args.decision_iterations)
    rows = ratios(results, args.concurrency)
    print(table(rows))
    for n, d in decision["cost-slo"].items():
        print(f"decision, cost-slo, {n:>2} backends: p50 {d['p50_us']:.1f} us "
              f"({'compiled' if decision['compiled_modules'] else 'sources'})")
    if args.out:
        import ray
        import vllm

        meta = provenance()
        meta["machine"].update(vllm=vllm.__version__, ray=ray.__version__,
                               loadavg_before=load_before, wall_s=time.time() - started)
        write_results(args.out, {
            "benchmark": "bench_serving_path",
            **meta,
            "rounds": args.rounds,
            "workload": {"prompt_tokens": args.prompt_tokens, "output_tokens": args.output_tokens,
                         "concurrency": args.concurrency, "seed": args.seed,
                         "requests": [_requests_for(n, args.requests_per_worker)
                                      for n in args.concurrency],
                         "closed_loop": True, "ignore_eos": True},
            "config": args.config,
            "stream_interval_ms": {b.id: b.stream_interval_ms for b in (vllm_spec, ort_spec)},
            "sides": results, "ratios": rows, "decision": decision,
        })
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
