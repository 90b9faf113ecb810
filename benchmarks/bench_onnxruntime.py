#!/usr/bin/env python
"""Side-by-side throughput/latency benchmark: our ONNX Runtime engine vs onnxruntime-genai.

For every model size and every concurrency level N, both engines get the same N requests,
all submitted at once: each has the same fixed prompt of `--prompt-tokens` token ids (drawn
from a seeded numpy RNG in [10, vocab)) and generates exactly `--output-tokens` tokens
greedily (ours: ignore_eos=True; onnxruntime-genai: a minimum-generated-token floor that
masks EOS). Measured per run:

* aggregate output tokens/s = all output tokens / (last finish - first submit);
* TTFT per request = its submit -> its first token; the table shows the median (p50)
  pooled over all requests of all repeats.

The onnxruntime-genai side ("og") runs the same weights: the HF model directory that
`backends.model.build_model` writes is converted with og's model builder
(`python -m onnxruntime_genai.models.builder -p fp32 -e cpu`), cached under
$COSTROUTE_HOME/og/<size>-<manifest checksum[:12]> (default ~/.cache/costroute/og/...).
It is driven through `og.Engine` (the Request/Turn/event-buffer API of onnxruntime-genai
0.18). NOTE: on the CPU execution provider og.Engine cannot use dynamic (continuous)
batching -- that needs PagedAttention, which the builder only emits for CUDA/WebGPU -- so
it falls back to its *static* batch scheduler, which admits at most 4 requests per batch
(a hard-coded constant; `engine.static_batching.max_batch_size` in genai_config only
changes what `get_capabilities()` reports) and starts the next batch only after the whole
previous one finished. `--og-api generator` instead runs all N requests as one static
batch of N through the classic `og.Generator` (also the automatic fallback when og.Engine
is unusable); the output says which API produced the og figures.

Sanity check (printed, never fatal): for each size, one prompt is decoded greedily for 32
tokens by both engines (natural EOS, no forced length) and the token ids are compared.

Each engine is warmed up once per size before timing. Runs are sequential (one engine at a
time). Other load on the machine makes the figures noisy; the JSON records the load average.

Examples:
    python benchmarks/bench_onnxruntime.py                       # tiny,small x 1,8,32
    python benchmarks/bench_onnxruntime.py --sizes tiny --repeats 5 --out /tmp/bench.json
    python benchmarks/bench_onnxruntime.py --sizes small --concurrency 1,4 --og-api generator
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
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _results import write_results  # benchmarks/_results.py (this folder is on sys.path)

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(_REPO_ROOT))

from backends.interface import GenerateRequest, SamplingParams
from backends.model import build_model, read_manifest
from backends.model.build import costroute_home
from backends.onnxruntime_engine import OnnxRuntimeEngine, OnnxRuntimeOptions

SANITY_TOKENS = 32
OG_STATIC_BATCH = 4  # og's StaticBatchScheduler constant (what the CPU Engine path uses)
DEFAULT_REPEATS = {"tiny": 3, "small": 2}  # others: 1 (a default run stays well under 10 min)


@dataclass
class RunResult:
    """One timed run of N concurrent requests."""

    concurrency: int
    wall_s: float
    output_tokens: int
    tokens_per_s: float
    ttft_s: list[float]
    batches: int | None = None  # og.Engine: distinct first-token times (static batches seen)


@dataclass
class Cell:
    engine: str
    size: str
    concurrency: int
    runs: list[RunResult] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return statistics.median(r.tokens_per_s for r in self.runs)

    @property
    def ttft_p50_ms(self) -> float:
        return 1000 * statistics.median(t for r in self.runs for t in r.ttft_s)

    def summary(self) -> dict[str, Any]:
        ttfts = sorted(t for r in self.runs for t in r.ttft_s)
        return {
            "engine": self.engine,
            "size": self.size,
            "concurrency": self.concurrency,
            "repeats": len(self.runs),
            "tokens_per_s_median": self.tokens_per_s,
            "ttft_ms_p50": self.ttft_p50_ms,
            "ttft_ms_p90": 1000 * ttfts[min(len(ttfts) - 1, int(0.9 * len(ttfts)))],
            "ttft_ms_max": 1000 * ttfts[-1],
            "runs": [asdict(r) for r in self.runs],
        }


# ---- prompts ------------------------------------------------------------------------------


def make_prompts(vocab_size: int, count: int, length: int, seed: int) -> np.ndarray:
    """`count` fixed prompts of `length` ids in [10, vocab), the same for both engines."""
    rng = np.random.default_rng(seed)
    return rng.integers(10, vocab_size, size=(count, length), dtype=np.int64)


# ---- our engine ---------------------------------------------------------------------------


async def _ours_one(
    engine: OnnxRuntimeEngine, rid: str, prompt: list[int], sampling: SamplingParams
) -> tuple[float, float | None, float, list[int]]:
    gen = engine.generate(GenerateRequest(rid, prompt_token_ids=tuple(prompt), sampling=sampling))
    tokens: list[int] = []
    first: float | None = None
    submit = time.perf_counter()  # the request enters the engine on the first __anext__
    async for chunk in gen:
        if chunk.token_ids:
            if first is None:
                first = time.perf_counter()
            tokens.extend(chunk.token_ids)
        if chunk.finished:
            break
    return submit, first, time.perf_counter(), tokens


async def ours_run(
    engine: OnnxRuntimeEngine,
    prompts: np.ndarray,
    n: int,
    out_tokens: int,
    tag: str,
    *,
    ignore_eos: bool = True,
) -> tuple[RunResult, list[list[int]]]:
    sampling = SamplingParams(max_tokens=out_tokens, ignore_eos=ignore_eos)
    jobs = [
        _ours_one(engine, f"{tag}-{i}", [int(t) for t in prompts[i]], sampling) for i in range(n)
    ]
    results = await asyncio.gather(*jobs)
    t0 = min(r[0] for r in results)
    t1 = max(r[2] for r in results)
    total = sum(len(r[3]) for r in results)
    ttft = [(r[1] if r[1] is not None else r[2]) - r[0] for r in results]
    res = RunResult(n, t1 - t0, total, total / (t1 - t0), ttft)
    return res, [r[3] for r in results]


async def bench_ours(
    size: str,
    prompts: np.ndarray,
    levels: list[int],
    repeats: int,
    out_tokens: int,
    max_num_seqs: int,
) -> tuple[list[Cell], list[int], dict]:
    opts = OnnxRuntimeOptions(model=size, max_num_seqs=max_num_seqs)
    engine = OnnxRuntimeEngine(opts)
    await engine.start()
    try:
        # warm-up: one concurrent batch at the largest level, a few tokens
        await ours_run(engine, prompts, max(levels), min(8, out_tokens), "warm")
        cells = []
        for n in levels:
            cell = Cell("ours", size, n)
            for rep in range(repeats):
                res, _ = await ours_run(engine, prompts, n, out_tokens, f"c{n}r{rep}")
                cell.runs.append(res)
                _progress("ours", size, res)
            cells.append(cell)
        _, outs = await ours_run(engine, prompts, 1, SANITY_TOKENS, "sanity", ignore_eos=False)
        return cells, outs[0], {k: str(v) for k, v in asdict(opts).items()}
    finally:
        await engine.shutdown()


# ---- onnxruntime-genai --------------------------------------------------------------------


def og_model_dir(size: str, hf_dir: Path, log=print) -> Path:
    """The og conversion of `hf_dir`, built once and cached by manifest checksum."""
    checksum = read_manifest(hf_dir)["checksum"]
    out = costroute_home() / "og" / f"{size}-{checksum[:12]}"
    if (out / "genai_config.json").is_file():
        log(f"[og] reusing converted model {out}")
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    work = Path(tempfile.mkdtemp(prefix="og-builder-cache-"))  # the builder's -c scratch dir
    cmd = [
        sys.executable,
        "-m",
        "onnxruntime_genai.models.builder",
        "-i",
        str(hf_dir),
        "-o",
        str(tmp),
        "-p",
        "fp32",
        "-e",
        "cpu",
        "-c",
        str(work),
    ]
    log(f"[og] converting {hf_dir} -> {out}\n      {shlex.join(cmd)}")
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=False)
        (tmp / "builder.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
        if proc.returncode != 0 or not (tmp / "genai_config.json").is_file():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
            raise RuntimeError(f"og model builder failed (rc={proc.returncode}):\n{tail}")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    log(f"[og] converted in {time.monotonic() - started:.1f}s")
    return out


class OgEngineRunner:
    """N requests submitted at once to og.Engine; events pumped on this (owner) thread."""

    api = "Engine"

    def __init__(self, og: Any, model: Any) -> None:
        self.og = og
        self.engine = og.Engine(model)
        caps = self.engine.get_capabilities()
        self.capabilities = {
            "configured_max_batch_size": int(caps.configured_max_batch_size),
            "max_request_length": int(caps.max_request_length),
            "max_scheduled_tokens": int(caps.max_scheduled_tokens),
        }

    def run(
        self,
        prompts: np.ndarray,
        n: int,
        out_tokens: int,
        *,
        force_length: bool = True,
        timeout_s: float = 1800.0,
    ) -> tuple[RunResult, list[list[int]]]:
        og = self.og
        flag_token = int(og.EngineEventFlags.TOKEN)
        flag_done = int(og.EngineEventFlags.TURN_FINISHED)
        flag_failed = int(og.EngineEventFlags.FAILED)
        prompt_len = prompts.shape[1]
        requests, submit = [], []
        t_start = time.perf_counter()
        for i in range(n):
            ropts = og.RequestOptions()
            ropts.set_max_session_tokens(prompt_len + out_tokens)
            req = self.engine.create_request(options=ropts)
            turn = og.TurnOptions(req)
            turn.set_do_sample(False)
            turn.set_max_generated_tokens(out_tokens)
            if force_length:
                turn.set_min_generated_tokens(out_tokens)  # masks EOS until out_tokens
            submit.append(time.perf_counter())
            req.begin_turn(prompts[i].astype(np.int32), turn)
            requests.append(req)
        index = {id(r): i for i, r in enumerate(requests)}
        buf = self.engine.create_event_buffer(max(16, 2 * n))
        tokens: list[list[int]] = [[] for _ in range(n)]
        first: list[float | None] = [None] * n
        done: list[float | None] = [None] * n
        remaining = n
        try:
            while remaining:
                events = self.engine.run(buf)
                now = time.perf_counter()
                if now - t_start > timeout_s:
                    raise TimeoutError(f"og.Engine run exceeded {timeout_s}s")
                for k in range(len(events)):
                    ev = events[k]
                    flags = int(ev.flags)
                    req = ev.request
                    if req is None:
                        if flags & flag_failed:
                            raise RuntimeError(f"og.Engine failed: {ev.error_code}")
                        continue  # capacity-blocked / retryable: keep pumping
                    i = index[id(req)]
                    if flags & flag_token:
                        tokens[i].append(int(ev.token))
                        if first[i] is None:
                            first[i] = now
                    if flags & flag_done:
                        if flags & flag_failed:
                            raise RuntimeError(
                                f"og request {i} failed: {ev.finish_reason} {ev.error_code}"
                            )
                        done[i] = now
                        remaining -= 1
                if not len(events) and not self.engine.has_pending_requests() and remaining:
                    raise RuntimeError("og.Engine has no pending work but requests are unfinished")
        finally:
            for r in requests:
                r.close()
        t0 = min(submit)
        t1 = max(d for d in done if d is not None)
        total = sum(len(t) for t in tokens)
        ttft = [(f if f is not None else t1) - s for f, s in zip(first, submit)]
        batches = len({round(f, 6) for f in first if f is not None})
        return RunResult(n, t1 - t0, total, total / (t1 - t0), ttft, batches), tokens


class OgGeneratorRunner:
    """All N requests as one static batch through og.Generator (batch_size=N)."""

    api = "Generator"

    def __init__(self, og: Any, model: Any) -> None:
        self.og = og
        self.model = model
        self.capabilities: dict[str, int] = {}

    def run(
        self,
        prompts: np.ndarray,
        n: int,
        out_tokens: int,
        *,
        force_length: bool = True,
        timeout_s: float = 1800.0,
    ) -> tuple[RunResult, list[list[int]]]:
        og = self.og
        prompt_len = prompts.shape[1]
        params = og.GeneratorParams(self.model)
        opts: dict[str, Any] = {
            "max_length": prompt_len + out_tokens,
            "do_sample": False,
            "batch_size": n,
        }
        if force_length:
            opts["min_length"] = prompt_len + out_tokens
        params.set_search_options(**opts)
        t0 = time.perf_counter()
        gen = og.Generator(self.model, params)
        gen.append_tokens(np.ascontiguousarray(prompts[:n].astype(np.int32)))
        cols: list[np.ndarray] = []
        first = None
        while not gen.is_done():
            gen.generate_next_token()
            cols.append(gen.get_next_tokens().copy())
            if first is None:
                first = time.perf_counter()
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError(f"og.Generator run exceeded {timeout_s}s")
        t1 = time.perf_counter()
        # Rows that hit EOS early keep emitting pad tokens; count the real ones via sequences.
        tokens = [gen.get_sequence(i)[prompt_len:].tolist() for i in range(n)]
        del gen
        total = sum(len(t) for t in tokens)
        ttft = [(first or t1) - t0] * n
        return RunResult(n, t1 - t0, total, total / (t1 - t0), ttft, 1), tokens


def bench_og(
    size: str,
    og_dir: Path,
    prompts: np.ndarray,
    levels: list[int],
    repeats: int,
    out_tokens: int,
    api: str,
) -> tuple[list[Cell], list[int], dict]:
    import onnxruntime_genai as og

    model = og.Model(str(og_dir))
    info: dict[str, Any] = {"requested_api": api}
    runner: OgEngineRunner | OgGeneratorRunner
    if api == "engine":
        try:
            runner = OgEngineRunner(og, model)
            runner.run(prompts, max(levels), min(8, out_tokens))  # warm-up (doubles as probe)
        except Exception as exc:  # noqa: BLE001 - any failure -> documented fallback
            info["fallback_reason"] = f"og.Engine unusable: {exc!r}"
            print(
                f"[og] WARNING: og.Engine unusable ({exc!r}); FALLING BACK to og.Generator "
                "(one static batch of N per run)"
            )
            runner = OgGeneratorRunner(og, model)
            runner.run(prompts, max(levels), min(8, out_tokens))
    else:
        runner = OgGeneratorRunner(og, model)
        runner.run(prompts, max(levels), min(8, out_tokens))
    info["api"] = runner.api
    info["capabilities"] = runner.capabilities
    cells = []
    for n in levels:
        cell = Cell(f"og.{runner.api}", size, n)
        for _ in range(repeats):
            res, _ = runner.run(prompts, n, out_tokens)
            cell.runs.append(res)
            _progress(f"og.{runner.api}", size, res)
        cells.append(cell)
    _, outs = runner.run(prompts, 1, SANITY_TOKENS, force_length=False)
    return cells, outs[0], info


# ---- reporting ----------------------------------------------------------------------------


def _progress(name: str, size: str, r: RunResult) -> None:
    extra = f", {r.batches} static batch(es)" if r.batches and name == "og.Engine" else ""
    print(
        f"  {name:<13} {size:<6} N={r.concurrency:<3} {r.tokens_per_s:9.1f} tok/s  "
        f"wall {r.wall_s:7.2f}s  TTFT p50 {1000 * statistics.median(r.ttft_s):8.1f} ms{extra}",
        flush=True,
    )


def _strip_eos(tokens: list[int], eos: set[int]) -> list[int]:
    out = list(tokens)
    while out and out[-1] in eos:
        out.pop()
    return out


def sanity(size: str, ours: list[int], theirs: list[int], eos: set[int]) -> dict[str, Any]:
    a, b = _strip_eos(ours, eos), _strip_eos(theirs, eos)
    n = min(len(a), len(b))
    diverge = next((i for i in range(n) if a[i] != b[i]), None)
    match = diverge is None and len(a) == len(b)
    common = n if diverge is None else diverge
    print(
        f"[sanity] {size}: first {SANITY_TOKENS} greedy tokens, same prompt (natural EOS): "
        + ("MATCH" if match else "MISMATCH")
        + f" ({common} leading tokens agree; ours {len(a)} tokens, og {len(b)} tokens)"
    )
    if not match:
        print(f"         ours: {a}\n         og:   {b}")
    return {"size": size, "match": match, "agreeing_prefix": common, "ours": a, "og": b}


def print_table(rows: list[tuple[Cell, Cell | None]], og_label: str) -> None:
    cols = [
        "size",
        "conc",
        "ours tok/s",
        f"{og_label} tok/s",
        "ratio",
        "ours TTFT p50 ms",
        f"{og_label} TTFT p50 ms",
    ]
    lines = []
    for ours, og in rows:
        lines.append(
            [
                ours.size,
                str(ours.concurrency),
                f"{ours.tokens_per_s:.1f}",
                f"{og.tokens_per_s:.1f}" if og else "n/a",
                f"{ours.tokens_per_s / og.tokens_per_s:.2f}" if og else "n/a",
                f"{ours.ttft_p50_ms:.1f}",
                f"{og.ttft_p50_ms:.1f}" if og else "n/a",
            ]
        )
    widths = [max(len(c), *(len(line[i]) for line in lines)) for i, c in enumerate(cols)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )

    head = fmt(cols)
    print("\n" + head + "\n" + "-" * len(head))
    for line in lines:
        print(fmt(line))


def machine_info() -> dict[str, Any]:
    cpu_model, physical = None, set()
    try:
        phys_id = None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            key, val = key.strip(), val.strip()
            if key == "model name" and cpu_model is None:
                cpu_model = val
            elif key == "physical id":
                phys_id = val
            elif key == "core id":
                physical.add((phys_id, val))
    except OSError:
        pass
    return {
        "cpu_model": cpu_model or platform.processor(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "physical_cores": len(physical) or None,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for mod in ("onnxruntime", "onnxruntime_genai", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            out[mod] = None
    return out


# ---- main ---------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    vals = [int(x) for x in text.split(",") if x.strip()]
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError("expected a comma-separated list of positive integers")
    return vals


def _size_list(text: str) -> list[str]:
    vals = [x.strip() for x in text.split(",") if x.strip()]
    if not vals:
        raise argparse.ArgumentTypeError("expected a comma-separated list of model sizes")
    return vals


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(
        prog="bench_onnxruntime.py",
        description=doc.split("\n\nExamples:")[0],
        epilog="Examples:" + doc.split("\n\nExamples:")[1] if "\n\nExamples:" in doc else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--sizes",
        type=_size_list,
        default=["tiny", "small"],
        help="comma-separated model sizes to build/benchmark (default: tiny,small)",
    )
    p.add_argument(
        "--concurrency",
        type=_int_list,
        default=[1, 8, 32],
        help="comma-separated concurrency levels N; N requests are submitted at "
        "once (default: 1,8,32)",
    )
    p.add_argument(
        "--prompt-tokens",
        type=int,
        default=128,
        help="prompt length in token ids per request (default: 128)",
    )
    p.add_argument(
        "--output-tokens",
        type=int,
        default=128,
        help="tokens generated per request, EOS suppressed (default: 128)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed runs per (size, N, engine); default: 3 for tiny, 2 for small, "
        "1 otherwise. tok/s is the median over runs; TTFT p50 pools all "
        "requests",
    )
    p.add_argument("--seed", type=int, default=1234, help="seed of the prompt token ids")
    p.add_argument(
        "--og-api",
        choices=("engine", "generator"),
        default="engine",
        help="onnxruntime-genai API: 'engine' = og.Engine (static batches of <=4 on "
        "CPU), falling back to og.Generator if unusable; 'generator' = one "
        "og.Generator static batch of N (default: engine)",
    )
    p.add_argument("--skip-og", action="store_true", help="only benchmark our engine")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write the results as JSON here (machine, versions, date, command)",
    )
    args = p.parse_args(argv)
    if args.prompt_tokens < 1 or args.output_tokens < 1:
        p.error("--prompt-tokens and --output-tokens must be >= 1")
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    levels = sorted(set(args.concurrency))
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    report: dict[str, Any] = {
        "benchmark": "bench_onnxruntime",
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine_info(),
        "versions": versions(),
        "settings": {
            "sizes": args.sizes,
            "concurrency": levels,
            "prompt_tokens": args.prompt_tokens,
            "output_tokens": args.output_tokens,
            "repeats": args.repeats,
            "seed": args.seed,
            "og_api": args.og_api,
            "sampling": "greedy",
        },
        "loadavg_start": list(os.getloadavg()),
        "sizes": {},
        "results": [],
        "sanity": [],
    }
    print(
        f"machine: {report['machine']['cpu_model']} ({report['machine']['logical_cores']} "
        f"cores); versions: {report['versions']}"
    )
    all_rows: list[tuple[Cell, Cell | None]] = []
    og_label = "og"
    for size in args.sizes:
        repeats = args.repeats or DEFAULT_REPEATS.get(size, 1)
        print(
            f"\n=== {size}: concurrency {levels}, {args.prompt_tokens} prompt + "
            f"{args.output_tokens} output tokens, {repeats} repeat(s) ===",
            flush=True,
        )
        hf_dir = build_model(size, log=lambda m: print(f"[model] {m}", flush=True))
        manifest = read_manifest(hf_dir)
        vocab = int(manifest["vocab_size"])
        cfg = json.loads((hf_dir / "config.json").read_text())
        eos_cfg = cfg.get("eos_token_id")
        eos = set(
            eos_cfg if isinstance(eos_cfg, list) else [eos_cfg] if eos_cfg is not None else []
        )
        prompts = make_prompts(vocab, max(levels), args.prompt_tokens, args.seed)
        size_info: dict[str, Any] = {
            "hf_dir": str(hf_dir),
            "checksum": manifest["checksum"],
            "num_parameters": manifest.get("num_parameters"),
            "vocab_size": vocab,
            "repeats": repeats,
        }

        ours_cells, ours_sanity, ours_opts = asyncio.run(
            bench_ours(
                size,
                prompts,
                levels,
                repeats,
                args.output_tokens,
                max_num_seqs=max(32, max(levels)),
            )
        )
        size_info["ours_options"] = ours_opts
        og_cells: list[Cell | None] = [None] * len(levels)
        if not args.skip_og:
            og_dir = og_model_dir(size, hf_dir)
            size_info["og_dir"] = str(og_dir)
            cells, og_sanity, og_info = bench_og(
                size, og_dir, prompts, levels, repeats, args.output_tokens, args.og_api
            )
            og_cells = list(cells)
            size_info["og"] = og_info
            og_label = f"og.{og_info['api']}"
            if "fallback_reason" in og_info:
                print(
                    f"[og] NOTE: og figures for {size} come from og.Generator (fallback): "
                    f"{og_info['fallback_reason']}"
                )
            report["sanity"].append(sanity(size, ours_sanity, og_sanity, eos))
        if read_manifest(hf_dir)["checksum"] != manifest["checksum"]:
            size_info["warning"] = "model rebuilt during the run; figures may mix two models"
            print(
                f"[model] WARNING: {hf_dir} was rebuilt during this run (checksum changed); "
                "the figures and the sanity check may mix two different models"
            )
        report["sizes"][size] = size_info
        for ours, og in zip(ours_cells, og_cells):
            all_rows.append((ours, og))
            report["results"].append(
                {
                    "size": size,
                    "concurrency": ours.concurrency,
                    "ours": ours.summary(),
                    "og": og.summary() if og else None,
                    "ratio_tokens_per_s": ours.tokens_per_s / og.tokens_per_s if og else None,
                }
            )

    print_table(all_rows, og_label)
    if not args.skip_og and args.og_api == "engine" and og_label == "og.Engine":
        print(
            f"\nnote: og.Engine on CPU uses static batching: at most {OG_STATIC_BATCH} "
            "requests per batch, next batch only after the previous one finishes "
            "(no continuous batching without PagedAttention, which og builds only for "
            "CUDA/WebGPU). Try --og-api generator for one static batch of N."
        )
    elapsed = time.monotonic() - started
    print(f"\ntotal time {elapsed:.0f}s")
    report["loadavg_end"] = list(os.getloadavg())
    report["elapsed_s"] = elapsed
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_results(args.out, report)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
