"""The `costroute loadtest` subcommands: run, sweep, compare, report."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backends.errors import ConfigError

_EPILOG = """\
examples:
  # 30 s of Poisson arrivals at 4 req/s, mixed chat/document lengths, SLO classes and prices
  # taken from the fleet config
  costroute loadtest run --url http://127.0.0.1:8000 --fleet deploy/local.yaml \\
      --rate 4 --mix chat-doc --slo-mix interactive=0.3,standard=0.5,batch=0.2 --duration 30

  # a single endpoint priced by hand, fixed lengths, closed loop of 8
  costroute loadtest run --url http://127.0.0.1:8001 --price 0.40 --concurrency 8 \\
      --prompt-tokens 128 --output-tokens 64 --requests 200

  # price-performance: raise the rate until fewer than 90% of requests meet their SLO
  costroute loadtest sweep --url http://127.0.0.1:8000 --fleet deploy/local.yaml \\
      --rates 1,2,4,8,16 --duration 20 --attainment 0.9 --slo-mix standard=1

  costroute loadtest compare runs/a runs/b --out runs/a-vs-b
"""


def register(sub: Any) -> None:
    lt = sub.add_parser(
        "loadtest", help="load-test an OpenAI-compatible endpoint and report cost at SLO",
        description=(
            "Send a seeded workload (open-loop Poisson/gamma/constant arrivals, a closed loop, "
            "or a replayed trace) to any OpenAI-compatible server, streaming, and report "
            "latency (TTFT, TPOT, ITL, E2E as vllm bench serve defines them), throughput, SLO "
            "attainment and goodput, share per backend, and cost: provisioned ($/hour x time) "
            "and attributed (the router's per-request costs), per 1M tokens."),
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = lt.add_subparsers(dest="loadtest_command", metavar="ACTION")

    run = actions.add_parser("run", help="one run: records, summary and report",
                             description="One load-test run; writes RUN/records.jsonl, "
                                         "RUN/summary.json and RUN/report.{md,html}.",
                             epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _target_args(run)
    add_workload_args(run)
    run.add_argument("--out", default=None,
                     help="run folder (default: runs/loadtest-UTCSTAMP)")
    run.add_argument("--label", default=None, help="short name of the run in reports")
    run.set_defaults(func=_cmd_run)

    sweep = actions.add_parser(
        "sweep", help="raise the rate until SLO attainment falls below a target",
        description=(
            "Run the workload at rising arrival rates (each a full run in OUT/rate-R/) until "
            "SLO attainment falls below --attainment; report the highest goodput at the target "
            "and its $ per 1M tokens: the endpoint's price-performance."),
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _target_args(sweep)
    add_workload_args(sweep, sweep=True)
    sweep.add_argument("--rates", default=None,
                       help="comma-separated rates, req/s (default: --start x --factor^k)")
    sweep.add_argument("--start", type=float, default=1.0, help="first rate (default 1)")
    sweep.add_argument("--factor", type=float, default=2.0, help="rate multiplier (default 2)")
    sweep.add_argument("--max-rate", type=float, default=64.0, help="highest rate (default 64)")
    sweep.add_argument("--attainment", type=float, default=0.9,
                       help="SLO attainment target, 0-1 (default 0.9)")
    sweep.add_argument("--patience", type=int, default=1,
                       help="stop after this many rates below the target (default 1)")
    sweep.add_argument("--out", default=None, help="sweep folder (default: runs/sweep-UTCSTAMP)")
    sweep.add_argument("--label", default=None, help="short name of the sweep in reports")
    sweep.set_defaults(func=_cmd_sweep)

    compare = actions.add_parser(
        "compare", help="runs (or sweeps) side by side: one table, one plot",
        description="Compare run folders side by side; sweep folders give the "
                    "price-performance frontier.")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="run or sweep folders")
    compare.add_argument("--out", required=True, help="folder for compare.{md,html} and plots")
    compare.set_defaults(func=_cmd_compare)

    report = actions.add_parser("report", help="(re)write a run's report from its files")
    report.add_argument("run", metavar="RUN", help="run folder")
    report.set_defaults(func=_cmd_report)
    lt.set_defaults(func=lambda args: (lt.print_help(), 2)[1])


def _target_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("target")
    g.add_argument("--url", required=True,
                   help="base URL of an OpenAI-compatible server (e.g. http://127.0.0.1:8000)")
    g.add_argument("--model", default=None,
                   help="model name to send (default: the first of GET /v1/models)")
    g.add_argument("--endpoint", choices=["completions", "chat"], default="completions",
                   help="completions (token-id prompts of exact length; default) or chat")
    g.add_argument("--no-ignore-eos", action="store_true",
                   help="let the model stop at EOS (default: ignore_eos, exact output lengths)")
    g.add_argument("--slo-headers", choices=["auto", "targets", "class", "none"], default="auto",
                   help="how requests carry their SLO: x-slo-*-ms targets, plus x-slo-class "
                        "when the classes come from --fleet (auto, the default), or none")
    g.add_argument("--timeout", type=float, default=600.0, help="per-request timeout, s")
    g.add_argument("--api-key", default=None, help="bearer token, if the server wants one")
    g.add_argument("--header", action="append", default=[], metavar="NAME=VALUE",
                   help="extra request header (repeatable)")
    c = p.add_argument_group("cost (provisioned)")
    c.add_argument("--fleet", default=None,
                   help="fleet config: its prices (replicas x usd_per_hour) and SLO classes")
    c.add_argument("--backend", action="append", default=None, metavar="ID",
                   help="with --fleet: price only these backends (the endpoint serves them alone)")
    c.add_argument("--price", type=float, default=None, metavar="USD_PER_HOUR",
                   help="what the endpoint costs per hour (instead of --fleet)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="write records and summary only")


def add_workload_args(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    g = p.add_argument_group("workload (flags override --workload)")
    g.add_argument("--workload", default=None, help="workload YAML (loadtest.workload.WorkloadSpec)")
    if not sweep:
        g.add_argument("--rate", type=float, default=None, help="open-loop arrival rate, req/s")
        g.add_argument("--concurrency", type=int, default=None,
                       help="closed loop: requests kept in flight (instead of --rate)")
    g.add_argument("--arrival", choices=["poisson", "gamma", "constant"], default=None,
                   help="open-loop arrival process (default poisson)")
    g.add_argument("--burstiness", type=float, default=None,
                   help="gamma shape (implies --arrival gamma); < 1 burstier")
    g.add_argument("--trace", default=None, help="JSONL trace to replay")
    g.add_argument("--prompt-tokens", default=None, metavar="SPEC",
                   help="N | uniform:N:RATIO | lognormal:N:SIGMA (default 128)")
    g.add_argument("--output-tokens", default=None, metavar="SPEC", help="as --prompt-tokens (default 64)")
    g.add_argument("--mix", default=None, help="length preset instead: chat-doc")
    g.add_argument("--slo-class", action="append", default=[], metavar="NAME:K=V,...",
                   help="an SLO class, e.g. interactive:ttft_ms=250,tpot_ms=40 (repeatable)")
    g.add_argument("--slo-mix", default=None, metavar="NAME=SHARE,...",
                   help="share of requests per SLO class, e.g. interactive=0.3,batch=0.7")
    g.add_argument("--duration", type=float, default=None, help="measured seconds (after warm-up)")
    g.add_argument("--requests", type=int, default=None, help="measured requests (after warm-up)")
    g.add_argument("--warmup", type=float, default=None, help="leading seconds excluded (default 0)")
    g.add_argument("--max-in-flight", type=int, default=None, help="cap (default 256)")
    g.add_argument("--seed", type=int, default=None, help="seed (default 0)")


# --------------------------------------------------------------------------- building


def workload_from_args(args: argparse.Namespace, classes: dict[str, Any],
                       default_class: str | None = None) -> Any:
    """The WorkloadSpec: --workload's YAML, overridden by flags, classes filled from --fleet.
    With no SLO mix, every request is of the fleet's default class (as the server treats a
    request that carries no SLO)."""
    from loadtest.workload import LengthSpec, chat_doc_preset, load_workload, parse_workload

    raw: dict[str, Any] = load_workload(args.workload).model_dump() if args.workload else {}
    arrival = dict(raw.get("arrival") or {})
    rate, concurrency = getattr(args, "rate", None), getattr(args, "concurrency", None)
    if rate is not None and concurrency is not None:
        raise ConfigError("give --rate (open loop) or --concurrency (closed loop), not both",
                          "rate")
    if concurrency is not None:
        arrival = {"process": "closed", "concurrency": concurrency}
    if rate is not None:
        arrival = {k: v for k, v in arrival.items() if k != "concurrency"}
        arrival.update(rate_rps=rate)
        if arrival.get("process") in (None, "closed"):
            arrival["process"] = "poisson"
    if args.arrival:
        arrival["process"] = args.arrival
    if args.burstiness is not None:
        arrival.update(process="gamma", burstiness=args.burstiness)
    raw["arrival"] = arrival or {"process": "poisson", "rate_rps": 1.0}
    if args.mix:
        if args.mix != "chat-doc":
            raise ConfigError(f"--mix: unknown preset {args.mix!r}; choose chat-doc", "mix")
        raw["mix"] = [c.model_dump() for c in chat_doc_preset()]
    if args.prompt_tokens or args.output_tokens or "mix" not in raw:
        prompt = LengthSpec.parse(args.prompt_tokens or "128", "prompt_tokens")
        output = LengthSpec.parse(args.output_tokens or "64", "output_tokens")
        raw["mix"] = [{"name": "default", "share": 1.0, "prompt_tokens": prompt.model_dump(),
                       "output_tokens": output.model_dump()}]
    raw["slo_classes"] = {**{k: v.model_dump() for k, v in classes.items()},
                          **raw.get("slo_classes", {}), **_classes_from_flags(args.slo_class)}
    if args.slo_mix:
        raw["slo_mix"] = parse_pairs(args.slo_mix, "slo_mix", float)
    elif not raw.get("slo_mix") and default_class is not None and not any(
            c.get("slo_class") for c in raw["mix"]):
        raw["slo_mix"] = {default_class: 1.0}
    for flag, key in (("trace", "trace"), ("duration", "duration_s"), ("requests", "num_requests"),
                      ("warmup", "warmup_s"), ("max_in_flight", "max_in_flight"), ("seed", "seed")):
        if getattr(args, flag) is not None:
            raw[key] = getattr(args, flag)
    if not raw.get("duration_s") and not raw.get("num_requests") and not raw.get("trace"):
        raise ConfigError("a run needs a bound: --duration and/or --requests (a --trace ends "
                          "with its last request)", "duration")
    return parse_workload(raw)


def _classes_from_flags(items: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    for item in items:
        name, sep, rest = item.partition(":")
        if not sep or not name or not rest:
            raise ConfigError(f"--slo-class {item!r}: expected NAME:ttft_ms=..,tpot_ms=..,e2e_ms=..",
                              "slo_class")
        out[name] = parse_pairs(rest, f"slo_class {name}", float)
    return out


def parse_pairs(text: str, field: str, kind: type) -> dict[str, Any]:
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        try:
            if not sep or not key.strip():
                raise ValueError
            out[key.strip()] = kind(value)
        except ValueError:
            raise ConfigError(f"{field}: cannot read {part!r}; expected KEY=VALUE", field) from None
    return out


def _fleet_facts(args: argparse.Namespace) -> tuple[Any, dict[str, Any], str | None]:
    """(Pricing or None, SLO classes, default class) from --fleet / --backend / --price."""
    from loadtest.metrics import Pricing

    if args.fleet and args.price is not None:
        raise ConfigError("give --fleet or --price, not both", "price")
    if args.backend and not args.fleet:
        raise ConfigError("--backend needs --fleet", "backend")
    if args.price is not None:
        if args.price < 0:
            raise ConfigError(f"--price must be >= 0 (got {args.price})", "price")
        return Pricing(args.price, "--price (given on the command line)"), {}, None
    if not args.fleet:
        return None, {}, None
    from serving.config import load_fleet_config, select_backends

    fleet = load_fleet_config(args.fleet)
    if args.backend:
        fleet = select_backends(fleet, args.backend)
    per = {}
    for b in fleet.backends:
        n = b.replicas if b.autoscaling is None else b.autoscaling.min_replicas
        per[b.id] = n * b.usd_per_hour
    note = "" if all(b.autoscaling is None for b in fleet.backends) else \
        " (autoscaled backends priced at min_replicas)"
    pricing = Pricing(sum(per.values()), f"fleet config {Path(args.fleet).name}: replicas x "
                      f"usd_per_hour of {', '.join(per)}{note}", per)
    return pricing, dict(fleet.slo_classes), fleet.default_slo_class


async def _model_name(args: argparse.Namespace) -> str:
    if args.model:
        return str(args.model)
    import httpx

    url = args.url.rstrip("/").removesuffix("/v1") + "/v1/models"
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            response = await client.get(url)
            response.raise_for_status()
            return str(response.json()["data"][0]["id"])
    except Exception as exc:
        raise ConfigError(f"cannot read the model name from {url} ({type(exc).__name__}: {exc}); "
                          f"is the server up? Or give --model", "model") from None


# --------------------------------------------------------------------------- run


async def run_once(args: argparse.Namespace, spec: Any, pricing: Any, out: Path, label: str,
                   slo_headers: str) -> dict[str, Any]:
    """One run into `out`: records, summary (and report unless --no-report)."""
    from loadtest.client import OpenAIClient, TokenPool
    from loadtest.metrics import summarize
    from loadtest.results import write_run
    from loadtest.runner import run_load

    model = await _model_name(args)
    lo, hi = spec.token_id_range
    client = OpenAIClient(args.url, model, pool=TokenPool(spec.seed, lo, hi),
                          endpoint=args.endpoint, ignore_eos=not args.no_ignore_eos,
                          slo_headers=slo_headers, timeout_s=args.timeout,  # type: ignore[arg-type]
                          max_connections=max(spec.max_in_flight, 1), api_key=args.api_key,
                          extra_headers=parse_pairs(",".join(args.header), "header", str)
                          if args.header else None)
    try:
        records, info = await run_load(spec, client, progress=not args.no_progress)
    finally:
        await client.aclose()
    target = (spec.arrival.rate_rps if spec.arrival.process != "closed" and not spec.trace
              and not spec.arrival.varies() else None)
    summary = summarize(records, pricing=pricing, target_rate_rps=target, extra={
        "label": label,
        "created_utc": info.started_utc,
        "command": "costroute " + shlex.join(sys.argv[1:]) if sys.argv else "",
        "target": {"url": args.url, "model": model, "endpoint": args.endpoint},
        "workload": spec.model_dump(mode="json"),
        "workload_description": spec.describe(),
        "run": {"wall_s": info.wall_s, "stopped": info.stopped, "planned": info.planned},
        "simulated": False,
    })
    write_run(out, records, summary)
    if not args.no_report:
        from loadtest.report import write_report

        write_report(out, summary, records)
    return summary


def run_async(coro: Any) -> Any:
    """Run on uvloop when it is installed (it comes with ray[serve]): a cheaper client."""
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def _slo_headers(args: argparse.Namespace) -> str:
    if args.slo_headers != "auto":
        return str(args.slo_headers)
    return "class" if args.fleet else "targets"


def _default_out(kind: str) -> Path:
    return Path("runs") / f"{kind}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


def _cmd_run(args: argparse.Namespace) -> int:
    pricing, classes, default = _fleet_facts(args)
    spec = workload_from_args(args, classes, default)
    out = Path(args.out) if args.out else _default_out("loadtest")
    summary = run_async(run_once(args, spec, pricing, out, args.label or out.name,
                                   _slo_headers(args)))
    print(one_line(summary))
    print(f"wrote {out}/ (records.jsonl, summary.json"
          f"{'' if args.no_report else ', report.md, report.html, plots/'})")
    return 0


def one_line(s: dict[str, Any]) -> str:
    lat, slo, cost = s["latency_ms"], s["slo"], s["cost"]
    prov = (cost.get("provisioned") or {}).get("usd_per_1m_output_tokens")
    attr = (cost.get("attributed") or {}).get("usd_per_1m_output_tokens")
    fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
    return (f"{s['requests']['completed']}/{s['requests']['measured']} ok, "
            f"{s['throughput']['requests_per_s']:.2f} req/s, "
            f"{s['throughput']['output_tokens_per_s']:.1f} out tok/s, "
            f"TTFT p50 {fmt(lat['ttft']['median'], '.1f')} ms, "
            f"TPOT p50 {fmt(lat['tpot']['median'], '.1f')} ms, "
            f"SLO attainment {fmt(slo['attainment'], '.3f')}, goodput {slo['goodput_rps']:.2f} "
            f"req/s, $/1M output tokens: provisioned {fmt(prov, '.4g')}, attributed "
            f"{fmt(attr, '.4g')}")


def _cmd_sweep(args: argparse.Namespace) -> int:
    from loadtest.sweep import sweep_rates

    if not 0 < args.attainment <= 1:
        raise ConfigError(f"--attainment must be in (0, 1] (got {args.attainment})", "attainment")
    rates = sweep_rates(args.rates, args.start, args.factor, args.max_rate)
    pricing, classes, default = _fleet_facts(args)
    args.rate, args.concurrency = rates[0], None
    workload_from_args(args, classes, default)  # fail fast on a bad workload, before any request
    out = Path(args.out) if args.out else _default_out("sweep")
    result = run_async(_run_sweep(args, rates, pricing, (classes, default), out,
                                  args.label or out.name, _slo_headers(args)))
    best = result["best"]
    if best is None:
        print(f"no rate met attainment >= {args.attainment}; see {out}/")
    else:
        print(f"highest goodput at attainment >= {args.attainment}: {best['goodput_rps']:.2f} "
              f"req/s (rate {best['rate_rps']:g}), $/1M output tokens (provisioned) "
              f"{_money(best['usd_per_1m_output_tokens'])}")
    print(f"wrote {out}/")
    return 0


async def _run_sweep(args: argparse.Namespace, rates: list[float], pricing: Any,
                     classes: tuple[dict[str, Any], str | None], out: Path, label: str,
                     slo_headers: str) -> dict[str, Any]:
    """One run per rate until `args.patience` rates in a row miss; `classes`: the fleet's SLO
    classes and its default class."""
    from loadtest.results import write_json
    from loadtest.sweep import sweep_point, sweep_record

    out.mkdir(parents=True, exist_ok=True)
    points: list[dict[str, Any]] = []
    misses = 0
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    sweep: dict[str, Any] = {}
    for rate in rates:
        args.rate = rate
        spec = workload_from_args(args, *classes)
        name = f"rate-{rate:g}"
        summary = await run_once(args, spec, pricing, out / name, f"{label} @ {rate:g} req/s",
                                 slo_headers)
        print(f"rate {rate:g} req/s: {one_line(summary)}")
        points.append(sweep_point(rate, name, summary, args.attainment))
        sweep = sweep_record(label, summary, args.attainment,
                             spec.describe(", ".join(f"{r:g}" for r in rates[:len(points)])),
                             points, started)
        write_json(out / "sweep.json", sweep)  # after every point: a cut-off sweep keeps its data
        misses = misses + 1 if not points[-1]["meets_target"] else 0
        if misses >= args.patience:
            break
    if not args.no_report:
        from loadtest.report import write_sweep_report

        write_sweep_report(out, sweep)
    return sweep


def _money(x: float | None) -> str:
    return "n/a" if x is None else f"${x:.4g}"


def _cmd_compare(args: argparse.Namespace) -> int:
    from loadtest.report import write_comparison, write_frontier
    from loadtest.results import read_summary
    from loadtest.sweep import read_sweep

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sweeps = [read_sweep(r) for r in args.runs if (Path(r) / "sweep.json").exists()]
    runs = [read_summary(r) for r in args.runs if not (Path(r) / "sweep.json").exists()]
    written = {}
    if runs:
        written.update(write_comparison(out, runs))
    if sweeps:
        written.update(write_frontier(out, sweeps))
    for path in written.values():
        print(path)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from loadtest.report import write_report
    from loadtest.results import read_summary, run_records

    summary = read_summary(args.run)
    for path in write_report(Path(args.run), summary, run_records(summary)).values():
        print(path)
    return 0
