"""The `costroute profile` subcommands: measure, probe, rescale, validate, interference,
estimate."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    profile = sub.add_parser(
        "profile",
        help="measure a backend's latency profile, validate it, or estimate one",
        description=(
            "Profiles are measured tables of prefill and decode-step times that the router's "
            "latency model reads. `measure` sweeps a live backend (an engine in this process, "
            "or any OpenAI-compatible server over HTTP), `validate` checks the latency model "
            "against a held-out random workload, `estimate` writes a roofline table from "
            "datasheet figures for hardware you do not own."
        ),
    )
    actions = profile.add_subparsers(dest="profile_command", metavar="ACTION")

    measure = actions.add_parser("measure", help="sweep a live backend and write its table",
                                 description="Sweep a live backend and write its profile table.")
    _target_args(measure)
    measure.add_argument("--backend-id", required=True, help="backend id the table is for")
    measure.add_argument("--accelerator", default="cpu",
                         help="accelerator label, e.g. cpu, nvidia-h100, ascend-910b (default: cpu)")
    measure.add_argument("--out", required=True, help="where to write the table (JSON)")
    mode = measure.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="a small grid and 3 repetitions (1-2 minutes on the tiny model; default)")
    mode.add_argument("--full", action="store_true", help="a larger grid and 5 repetitions")
    measure.add_argument("--idle-ms", type=float, default=0.0, metavar="MS",
                         help="leave the backend idle this long before each prefill measurement, "
                              "as sparse traffic finds it (over HTTP a quiet serving path is "
                              "slower to answer than a busy one); default 0: back to back")
    measure.set_defaults(func=_cmd_measure)

    probe = actions.add_parser(
        "probe", help="how fast a backend is now against its table (seconds, not minutes)",
        description=(
            "Re-measure a few of a table's own batch-1 cells (prefill up to 256 prompt tokens, "
            "the decode step at every context) with the table's method, and write the "
            "measured / table ratios and the lone prefills' spread (path jitter). A machine whose speed drifts (shared or virtual) can be "
            "probed right before and after a load test; `profile rescale` then gives the "
            "table as of that test."))
    _target_args(probe)
    probe.add_argument("--table", required=True, help="the backend's profile table")
    probe.add_argument("--repetitions", type=int, default=5,
                       help="samples per cell; the median counts (default 5)")
    probe.add_argument("--out", required=True, help="where to write the probe (JSON)")
    probe.set_defaults(func=_cmd_probe)

    rescale = actions.add_parser(
        "rescale", help="a table times the speed its probes measured",
        description=(
            "Multiply a table's prefill and join surfaces by its probes' prefill factor and "
            "its decode surface by their decode factor (geometric means over the probes), "
            "and replace its path jitter with theirs. The new table names the original and the "
            "probes in notes.rescaled."))
    rescale.add_argument("--table", required=True, help="the profile table the probes measured")
    rescale.add_argument("--probe", action="append", required=True, metavar="PROBE",
                         help="a probe of that table (`profile probe`; repeatable)")
    rescale.add_argument("--out", required=True, help="where to write the rescaled table")
    rescale.set_defaults(func=_cmd_rescale)

    validate = actions.add_parser(
        "validate", help="predicted vs measured latency on a held-out workload",
        description=(
            "Run a random open-loop workload at several loads against the backend and "
            "compare the latency model's TTFT/TPOT/E2E predictions (made from the requests in "
            "flight at send time) with what was measured: MAPE, p90 absolute error, bias, "
            "with and without the online correction."))
    _target_args(validate)
    validate.add_argument("--profile", required=True, help="the profile table to validate")
    validate.add_argument("--requests", type=int, default=60, help="requests per load level")
    validate.add_argument("--loads", default="0.3,0.6,0.85",
                          help="utilisation per level, comma-separated (default 0.3,0.6,0.85): "
                               "arrival rate x replica time of a mean request")
    validate.add_argument("--force", action="store_true",
                          help="accept a table measured on another model checksum")
    validate.add_argument("--out", default=None, help="also write the report as JSON")
    validate.set_defaults(func=_cmd_validate)

    interference = actions.add_parser(
        "interference", help="how much backends that share a machine slow each other down",
        description=(
            "Measure, through a running costroute fleet, each backend's prefill and decode "
            "step with its neighbours idle and with them busy (requests pinned with "
            "x-costroute-pin-backend), for every set of up to --max-set busy neighbours, "
            "decoding and prefilling. "
            "Writes an interference table for `costroute simulate --interference`."))
    interference.add_argument("--url", required=True,
                              help="the fleet's HTTP address, e.g. http://127.0.0.1:8000")
    interference.add_argument("--model", required=True, help="the served model name")
    interference.add_argument("--tokenizer-model", default="tiny",
                              help="local model whose vocabulary the prompts are drawn from")
    interference.add_argument("--backends", required=True, metavar="ID,ID,...",
                              help="the backends that share the machine (at least two)")
    interference.add_argument("--node", default=None,
                              help="what they share, e.g. a host name (default: this host's name)")
    interference.add_argument("--repetitions", type=int, default=5,
                              help="idle/busy probe pairs per row (default 5)")
    interference.add_argument("--background", default="1,2", metavar="N,N,...",
                              help="requests each busy neighbour keeps in flight, one row per "
                                   "count; the simulator interpolates between them (default 1,2)")
    interference.add_argument("--max-set", type=int, default=2,
                              help="largest set of busy neighbours measured; larger sets are "
                                   "estimated from single neighbours (default 2)")
    interference.add_argument("--out", required=True, help="where to write the table (JSON)")
    interference.set_defaults(func=_cmd_interference)

    estimate = actions.add_parser(
        "estimate", help="a roofline profile from datasheet figures (labelled estimated)",
        description=(
            "Write a roofline profile for an accelerator you do not own: decode step >= "
            "max(bytes read / memory bandwidth, FLOPs / peak); prefill likewise. Known "
            "accelerators have shipped figures; others need --bandwidth-gbs and --tflops."))
    from profiles.estimate import KNOWN_ACCELERATORS

    estimate.add_argument("--accelerator", required=True,
                          help=f"one of {', '.join(sorted(KNOWN_ACCELERATORS))}, or any label "
                               "with your own figures")
    estimate.add_argument("--model", default="small", help="size name or model directory")
    estimate.add_argument("--bandwidth-gbs", type=float, default=None,
                          help="memory bandwidth, GB/s (overrides the shipped figure)")
    estimate.add_argument("--tflops", type=float, default=None,
                          help="dense peak TFLOPS at the model's dtype (overrides the shipped figure)")
    estimate.add_argument("--memory-gib", type=float, default=None, help="accelerator memory, GiB")
    estimate.add_argument("--efficiency", type=float, default=0.7,
                          help="share of peak bandwidth/compute reached (default 0.7)")
    estimate.add_argument("--backend-id", default=None, help="default: ACCELERATOR-estimated")
    estimate.add_argument("--out", required=True, help="where to write the table (JSON)")
    estimate.set_defaults(func=_cmd_estimate)
    profile.set_defaults(func=lambda args: _help(profile))


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _target_args(p: argparse.ArgumentParser) -> None:
    from backends.registry import ENGINE_KINDS

    p.add_argument("--engine", choices=sorted(ENGINE_KINDS), default="onnxruntime",
                   help="engine to run in this process (default: onnxruntime)")
    p.add_argument("--model", default="tiny", help="size name or model directory (default: tiny)")
    p.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE",
                   help="engine option (repeatable), e.g. max_num_seqs=32 intra_op_num_threads=1")
    p.add_argument("--url", default=None,
                   help="profile an OpenAI-compatible server instead (e.g. http://127.0.0.1:8000); "
                        "--model is then the served model name and --tokenizer-model the local "
                        "model whose vocabulary the prompts are drawn from")
    p.add_argument("--tokenizer-model", default="tiny", help="with --url: local model for vocab size")
    p.add_argument("--pin-backend", default=None, metavar="ID",
                   help="with --url on a costroute fleet: send every request to this backend "
                        "(x-costroute-pin-backend), to profile it through the running fleet")
    p.add_argument("--max-num-seqs", type=int, default=32,
                   help="with --url: the server's concurrent-sequence cap (default 32)")
    p.add_argument("--max-model-len", type=int, default=2048,
                   help="with --url: the server's context length (default 2048)")
    p.add_argument("--kv-tokens", type=int, default=65536,
                   help="with --url: the server's KV-cache tokens (default 65536)")


async def _open_target(args: argparse.Namespace) -> tuple[Any, dict[str, Any], Any]:
    """(target, facts, closer): facts has vocab_size, model, capacity, max_model_len, engine."""
    from backends.model import read_manifest, resolve_model
    from profiles.targets import EngineTarget, HttpTarget

    if args.url:
        manifest = read_manifest(resolve_model(args.tokenizer_model))
        engine = {"name": "openai-http", "url": args.url, "served_model": args.model}
        pin = getattr(args, "pin_backend", None)
        if pin:
            engine["pinned_backend"] = pin
        target = HttpTarget(args.url, args.model, engine,
                            {"x-costroute-pin-backend": pin} if pin else None)
        facts = {
            "vocab_size": manifest["vocab_size"],
            "model": _model_facts(manifest),
            "capacity": {"max_num_seqs": args.max_num_seqs, "kv_tokens": args.kv_tokens},
            "max_model_len": args.max_model_len,
            "engine": engine,
        }
        return target, facts, target.aclose
    from backends.registry import make_engine, parse_option_values

    options = {"model": args.model, **parse_option_values(args.engine_option)}
    engine_obj = make_engine(args.engine, options)
    await engine_obj.start()
    manifest = read_manifest(resolve_model(args.model))
    load = engine_obj.load()
    description = describe_engine(args.engine, engine_obj)
    facts = {
        "vocab_size": manifest["vocab_size"],
        "model": _model_facts(manifest),
        "capacity": {"max_num_seqs": load.max_num_seqs, "kv_tokens": load.kv_tokens_capacity},
        "max_model_len": engine_obj.max_model_len,
        "engine": description,
    }
    return EngineTarget(engine_obj, description), facts, engine_obj.shutdown


def describe_engine(kind: str, engine: Any) -> dict[str, Any]:
    options = dataclasses.asdict(engine.options)
    out: dict[str, Any] = {"name": kind, "options": options}
    if kind == "onnxruntime":
        import onnxruntime

        out["version"] = onnxruntime.__version__
        first = options["providers"][0]
        out["execution_provider"] = first if isinstance(first, str) else first[0]
    else:
        try:
            import vllm

            out["version"] = vllm.__version__
        except ImportError:
            out["version"] = None
        out["execution_provider"] = None
    return out


def _model_facts(manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": manifest["name"],
        "checksum": manifest["checksum"],
        "dtype": manifest["dtype"],
        "num_parameters": manifest["num_parameters"],
    }


def _cmd_measure(args: argparse.Namespace) -> int:
    return asyncio.run(_measure(args))


async def _measure(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from profiles.profiler import FULL, QUICK, make_table, sweep

    if args.idle_ms < 0:
        print(f"costroute profile measure: --idle-ms must be >= 0, got {args.idle_ms:g}",
              file=sys.stderr)
        return 2
    target, facts, close = await _open_target(args)
    try:
        plan = (FULL if args.full else QUICK).fitted(
            facts["capacity"]["max_num_seqs"], facts["max_model_len"])
        started = time.monotonic()
        with tqdm(total=plan.measurements, desc=f"profiling {args.backend_id}", unit="run",
                  file=sys.stderr) as bar:
            swept = await sweep(target, plan, facts["vocab_size"], bar.update,
                                idle_s=args.idle_ms / 1e3, max_model_len=facts["max_model_len"])
        table = make_table(
            backend_id=args.backend_id,
            accelerator=args.accelerator,
            engine=facts["engine"],
            model=facts["model"],
            command=_command_line(),
            swept=swept,
            capacity=facts["capacity"],
            plan=plan,
            elapsed_s=time.monotonic() - started,
            idle_ms=args.idle_ms,
        )
        table.save(Path(args.out))
        print(f"wrote {args.out} ({plan.measurements} runs in {time.monotonic() - started:.0f}s)",
              file=sys.stderr)
    finally:
        await close()
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    from profiles.table import load_profile

    if args.repetitions < 1:
        print(f"costroute profile probe: --repetitions must be >= 1, got {args.repetitions}",
              file=sys.stderr)
        return 2
    return asyncio.run(_probe(args, load_profile(args.table)))


async def _probe(args: argparse.Namespace, table: Any) -> int:
    from tqdm import tqdm

    from profiles.drift import measure_probe, probe_plan

    target, facts, close = await _open_target(args)
    try:
        total = probe_plan(table, args.repetitions).measurements
        with tqdm(total=total, unit="run", file=sys.stderr,
                  desc=f"probing {table.backend_id}") as bar:
            probe = await measure_probe(target, table, facts["vocab_size"], _command_line(),
                                        args.repetitions, bar.update)
    finally:
        await close()
    probe.save(Path(args.out))
    for c in probe.cells:
        print(f"{c.surface:8s} batch {c.batch} {c.tokens:5d} tokens: {c.measured_ms:8.2f} ms "
              f"(table {c.table_ms:.2f}, x{c.ratio:.3f})")
    print(f"wrote {args.out}: prefill x{probe.factor('prefill'):.3f}, "
          f"decode x{probe.factor('decode'):.3f}", file=sys.stderr)
    return 0


def _cmd_rescale(args: argparse.Namespace) -> int:
    from profiles.drift import load_probe, rescale
    from profiles.table import load_profile

    table = rescale(load_profile(args.table), [load_probe(p) for p in args.probe],
                    _command_line())
    table.save(Path(args.out))
    r = table.notes["rescaled"]
    print(f"wrote {args.out}: prefill x{r['prefill']:.3f}, decode x{r['decode']:.3f} "
          f"({len(args.probe)} probe(s))", file=sys.stderr)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    return asyncio.run(_validate(args))


async def _validate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from profiles.latency import LatencyModel
    from profiles.table import load_profile
    from profiles.validate import ValidationPlan, format_report, validate

    loads = tuple(float(x) for x in args.loads.split(","))
    target, facts, close = await _open_target(args)
    try:
        table = load_profile(args.profile, facts["model"]["checksum"], force=args.force)
        plan = ValidationPlan(loads=loads, requests_per_load=args.requests)
        with tqdm(total=len(loads) * args.requests, desc="validating", unit="req",
                  file=sys.stderr) as bar:
            rep = await validate(target, LatencyModel(table), facts["vocab_size"], plan, bar.update)
    finally:
        await close()
    rep["profile"] = str(args.profile)
    rep["command"] = _command_line()
    print(format_report(rep))
    if args.out:
        Path(args.out).write_text(json.dumps(rep, indent=2) + "\n")
    return 0


def _cmd_interference(args: argparse.Namespace) -> int:
    return asyncio.run(_interference(args))


async def _interference(args: argparse.Namespace) -> int:
    import socket

    from tqdm import tqdm

    from backends.model import read_manifest, resolve_model
    from profiles.interference_measure import make_table, measure, neighbour_sets
    from profiles.targets import HttpTarget

    names = [b for b in args.backends.split(",") if b]
    try:
        streams = sorted({int(n) for n in args.background.split(",") if n.strip()})
    except ValueError:
        streams = []
    if not streams or streams[0] < 1:
        print(f"costroute profile interference: --background must be >= 1, got "
              f"{args.background}", file=sys.stderr)
        return 2
    for flag, value, low in (("--repetitions", args.repetitions, 1),
                             ("--max-set", args.max_set, 1)):
        if value < low:
            print(f"costroute profile interference: {flag} must be >= {low}, got {value}",
                  file=sys.stderr)
            return 2
    if len(set(names)) < 2 or len(set(names)) != len(names):
        print(f"costroute profile interference: --backends needs two or more distinct ids, "
              f"got {args.backends!r}", file=sys.stderr)
        return 2
    vocab = read_manifest(resolve_model(args.tokenizer_model))["vocab_size"]
    targets = {b: HttpTarget(args.url, args.model, {"url": args.url, "pinned_backend": b},
                             {"x-costroute-pin-backend": b}) for b in names}
    rows_total = 2 * len(streams) * sum(len(neighbour_sets(names, b, args.max_set))
                                        for b in names)
    started = time.monotonic()
    try:
        with tqdm(total=rows_total * args.repetitions, desc="interference", unit="pair",
                  file=sys.stderr) as bar:
            rows = await measure(targets, vocab, repetitions=args.repetitions,  # type: ignore[arg-type]
                                 streams=streams, max_set=args.max_set,
                                 progress=bar.update)
    finally:
        for t in targets.values():
            await t.aclose()
    table = make_table(args.node or socket.gethostname(), rows, _command_line(),
                       repetitions=args.repetitions, elapsed_s=time.monotonic() - started)
    table.save(Path(args.out))
    for r in rows:
        print(f"{r.backend:20s} {'+'.join(r.busy) + ' ' + r.neighbour_op:46s} x{r.streams} "
              f"prefill x{r.prefill:.2f}  decode x{r.decode:.2f}")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _cmd_estimate(args: argparse.Namespace) -> int:
    from backends.model import read_manifest, resolve_model
    from profiles.estimate import estimate_profile

    manifest = read_manifest(resolve_model(args.model))
    table = estimate_profile(
        accelerator=args.accelerator,
        manifest=manifest,
        bandwidth_gbs=args.bandwidth_gbs,
        tflops=args.tflops,
        memory_gib=args.memory_gib,
        efficiency=args.efficiency,
        backend_id=args.backend_id,
        command=_command_line(),
    )
    table.save(Path(args.out))
    print(f"wrote {args.out} (estimated: {table.notes['rule']})", file=sys.stderr)
    return 0


def _command_line() -> str:
    return "costroute " + " ".join(shlex.quote(a) for a in sys.argv[1:])
