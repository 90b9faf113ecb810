"""`costroute`: the command-line entry point.

Subcommands are registered here and import their heavy modules (torch, onnxruntime, vllm,
ray) only when run, so `costroute --help` answers at once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="costroute",
        description=(
            "Cost-aware, SLO-aware serving of LLMs across heterogeneous accelerators. "
            "Builds the project's own test model, runs its engines, serves fleets, "
            "profiles backends and load-tests endpoints."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    model = sub.add_parser("model", help="build or inspect the project's own Llama model")
    model_sub = model.add_subparsers(dest="model_command", metavar="ACTION")
    build = model_sub.add_parser(
        "build",
        help="build the model (tokenizer, HF weights, ONNX decoder) deterministically",
        description=(
            "Build one Llama-architecture model in two formats from the same weights: HF "
            "(for vLLM and transformers) and an ONNX decoder with KV cache (for ONNX "
            "Runtime), plus a manifest with checksums. Reuses a build whose manifest matches. "
            "Needs the `build` extra (torch, transformers, onnx, onnxscript)."
        ),
    )
    build.add_argument("--size", default="tiny", choices=["tiny", "small"],
                       help="tiny: ~4M parameters (tests); small: ~100M (benchmarks). Default: tiny")
    build.add_argument("--out", default=None,
                       help="output directory (default: $COSTROUTE_HOME/models/costroute-llama-SIZE; "
                            "COSTROUTE_HOME defaults to ~/.cache/costroute)")
    build.add_argument("--force", action="store_true", help="rebuild even if the manifest matches")
    build.set_defaults(func=_cmd_model_build)
    info = model_sub.add_parser("info", help="print a built model's manifest")
    info.add_argument("--model", default="tiny", help="size name or model directory (default: tiny)")
    info.set_defaults(func=_cmd_model_info)
    model.set_defaults(func=lambda args: _print_help(model))

    gen = sub.add_parser(
        "generate",
        help="generate a completion locally with one engine",
        description="Load one engine in this process, stream one completion to stdout.",
    )
    from backends.registry import ENGINE_KINDS

    gen.add_argument("--engine", default="onnxruntime", choices=sorted(ENGINE_KINDS),
                     help="default: onnxruntime")
    gen.add_argument("--model", default="tiny", help="size name (tiny, small) or model directory")
    gen.add_argument("--prompt", required=True, help="prompt text")
    gen.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    gen.add_argument("--max-tokens", type=int, default=32, help="tokens to generate (default: 32)")
    gen.add_argument("--temperature", type=float, default=0.0,
                     help="sampling temperature; 0 (default) is greedy")
    gen.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default: 1)")
    gen.add_argument("--top-k", type=int, default=0, help="top-k sampling; 0 (default) disables it")
    gen.add_argument("--seed", type=int, default=None, help="sampling seed")
    gen.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    gen.add_argument("--ignore-eos", action="store_true", help="do not stop at end-of-sequence")
    gen.add_argument("--provider", action="append", default=None,
                     help="ONNX Runtime execution provider, in priority order (repeatable; "
                          "default: CPUExecutionProvider)")
    gen.add_argument("--threads", type=int, default=0,
                     help="ONNX Runtime intra-op threads; 0 (default) lets it choose")
    gen.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE",
                     help="engine option (repeatable), e.g. max_num_seqs=8 or "
                          "kv_cache_space_gib=1 for vllm")
    gen.add_argument("--stats", action="store_true", help="print TTFT, tokens/s and usage to stderr")
    gen.set_defaults(func=_cmd_generate)

    from profiles.commands import register as register_profile

    register_profile(sub)

    from serving.serve_cmd import register as register_serve

    register_serve(sub)

    from loadtest.commands import register as register_loadtest

    register_loadtest(sub)

    from loadtest.simulate_cmd import register as register_simulate

    register_simulate(sub)

    from loadtest.plan_cmd import register as register_plan

    register_plan(sub)
    return parser


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from backends.errors import CostrouteError

    try:
        return int(args.func(args) or 0)
    except CostrouteError as exc:
        field = getattr(exc, "field", None)
        where = f" [{field}]" if field else ""
        print(f"costroute: error{where}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _cmd_model_build(args: argparse.Namespace) -> int:
    from backends.model import build_model

    out = build_model(args.size, out=args.out, force=args.force,
                      log=lambda m: print(m, file=sys.stderr))
    print(out)
    return 0


def _cmd_model_info(args: argparse.Namespace) -> int:
    import json

    from backends.model import read_manifest, resolve_model

    print(json.dumps(read_manifest(resolve_model(args.model)), indent=2))
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from backends.interface import GenerateRequest, SamplingParams

    sampling = SamplingParams(
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        seed=args.seed,
        stop=tuple(args.stop),
        ignore_eos=args.ignore_eos,
    )
    sampling.validate()
    return asyncio.run(_generate(args, sampling, GenerateRequest))


async def _generate(args, sampling, request_type) -> int:  # type: ignore[no-untyped-def]
    engine = _make_engine(args)
    await engine.start()
    try:
        prompt = args.prompt
        if args.chat:
            prompt = engine.tokenizer.apply_chat_template([{"role": "user", "content": prompt}])
        request = request_type(f"cli-{uuid.uuid4().hex[:8]}", prompt=prompt, sampling=sampling)
        started = time.perf_counter()
        first = None
        usage = reason = None
        async for chunk in engine.generate(request):
            if first is None:
                first = time.perf_counter()
            sys.stdout.write(chunk.text)
            sys.stdout.flush()
            usage, reason = chunk.usage or usage, chunk.finish_reason or reason
        sys.stdout.write("\n")
        if args.stats and usage is not None and first is not None:
            total = time.perf_counter() - started
            tps = usage.completion_tokens / total if total > 0 else 0.0
            print(
                f"engine={args.engine} prompt_tokens={usage.prompt_tokens} "
                f"completion_tokens={usage.completion_tokens} finish_reason={reason} "
                f"ttft_ms={(first - started) * 1e3:.1f} e2e_ms={total * 1e3:.1f} "
                f"tokens_per_s={tps:.1f}",
                file=sys.stderr,
            )
    finally:
        await engine.shutdown()
    return 0


def _make_engine(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from backends.registry import make_engine, parse_option_values

    options = {"model": args.model, **parse_option_values(args.engine_option)}
    if args.engine == "onnxruntime":
        if args.provider:
            options["providers"] = tuple(args.provider)
        if args.threads:
            options["intra_op_num_threads"] = args.threads
    return make_engine(args.engine, options)


if __name__ == "__main__":
    sys.exit(main())
