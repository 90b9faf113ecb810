"""Router overheads.

1. Decision time (pure): `policy.choose(context)` for fleets of 8 and 64 backends built from a
   measured profile table, each backend carrying 8 running sequences and 2 waiting requests.
2. Added latency (real app on a local Ray cluster): the same request through our ingress
   (OpenAI protocol, SLO, policy, tracking) vs through a pass-through ingress that forwards
   straight to the same backend deployment; TTFT and E2E, p50 and p99, at 1 and 32 concurrent.

    python benchmarks/bench_router.py --decision-only
    python benchmarks/bench_router.py --out benchmarks/results/router.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from _results import provenance, write_results  # benchmarks/_results.py (on sys.path)
from fastapi import Request  # module level: FastAPI resolves the endpoint's annotation here

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "tables" / "cpu-onnxruntime.json"


def decision_times(n_backends: int, policy_name: str, iterations: int) -> dict[str, float]:
    from profiles.latency import BackendLoad, LatencyModel, RequestShape, RunningSeq
    from profiles.table import load_profile
    from serving.policies import BackendView, RoutingContext, Slo, make_policy

    model = LatencyModel(load_profile(PROFILE))
    load = BackendLoad(running=tuple(RunningSeq(200 + 10 * i, 50 + 5 * i) for i in range(8)),
                       waiting=(RequestShape(128, 64),) * 2, arrival_rate_per_s=5,
                       mean_prompt_tokens=128)
    views = tuple(BackendView(f"b{i}", 0.1 + i * 0.01, model, load) for i in range(n_backends))
    policy = make_policy(policy_name)
    ctx = RoutingContext(RequestShape(128, 64), Slo(ttft_ms=200, tpot_ms=50), views)
    samples = []
    for _ in range(iterations):
        t = time.perf_counter()
        policy.choose(ctx)
        samples.append((time.perf_counter() - t) * 1e6)
    samples.sort()
    return {"p50_us": samples[len(samples) // 2], "p99_us": samples[int(len(samples) * 0.99)],
            "per_backend_us": samples[len(samples) // 2] / n_backends}


async def _drive(url: str, concurrency: int, requests: int) -> dict[str, float]:
    import httpx

    body = {"model": "costroute-llama-tiny", "prompt": [17] * 32, "max_tokens": 16,
            "temperature": 0, "ignore_eos": True, "stream": True}
    ttft: list[float] = []
    e2e: list[float] = []
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=256)) as client:
        async def one() -> None:
            async with sem:
                t0 = time.perf_counter()
                first = None
                async with client.stream("POST", url, json=body) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data: {") and first is None:
                            first = time.perf_counter()
                ttft.append(((first or time.perf_counter()) - t0) * 1e3)
                e2e.append((time.perf_counter() - t0) * 1e3)

        await asyncio.gather(*(one() for _ in range(requests)))
    q = lambda xs, p: sorted(xs)[min(int(p * len(xs)), len(xs) - 1)]  # noqa: E731
    return {"ttft_p50_ms": statistics.median(ttft), "ttft_p99_ms": q(ttft, 0.99),
            "e2e_p50_ms": statistics.median(e2e), "e2e_p99_ms": q(e2e, 0.99)}


def added_latency(requests: int) -> dict[str, object]:
    import ray
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse
    from ray import serve

    from backends.interface import GenerateRequest, SamplingParams
    from serving.app import BackendDeployment, build_app
    from serving.config import parse_fleet_config

    fleet = {"backends": [{"id": "ort", "engine": "onnxruntime",
                           "engine_options": {"model": "tiny", "max_num_seqs": 32},
                           "accelerator": "cpu", "usd_per_hour": 0.2, "profile": str(PROFILE)}]}
    passthrough = FastAPI()

    @serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1024)
    @serve.ingress(passthrough)
    class PassThrough:
        def __init__(self, backend) -> None:  # type: ignore[no-untyped-def]
            self.backend = backend
            self.n = 0

        @passthrough.post("/v1/completions")
        async def completions(self, request: Request) -> StreamingResponse:
            body = await request.json()
            self.n += 1
            req = GenerateRequest(f"p{self.n}", prompt_token_ids=tuple(body["prompt"]),
                                  sampling=SamplingParams(max_tokens=body["max_tokens"],
                                                          ignore_eos=True))
            stream = self.backend.options(stream=True).generate.remote(req)

            async def events():  # type: ignore[no-untyped-def]
                async for batch in stream:  # the replica sends its chunks in batches
                    yield "".join(f"data: {json.dumps({'text': c.text})}\n\n" for c in batch)
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": 8765})
        serve.run(build_app(parse_fleet_config(fleet)), name="costroute", route_prefix="/")
        spec = parse_fleet_config(fleet).backends[0]  # the same engine and stream interval
        backend = BackendDeployment.options(name="direct-backend").bind(
            spec.id, spec.engine, dict(spec.engine_options), spec.stream_interval_ms)
        serve.run(PassThrough.bind(backend), name="direct", route_prefix="/direct")
        out: dict[str, object] = {}
        for conc in (1, 32):
            n = requests if conc == 1 else requests * 4
            asyncio.run(_drive("http://127.0.0.1:8765/v1/completions", conc, 20))  # warm-up
            asyncio.run(_drive("http://127.0.0.1:8765/direct/v1/completions", conc, 20))
            ours = asyncio.run(_drive("http://127.0.0.1:8765/v1/completions", conc, n))
            direct = asyncio.run(_drive("http://127.0.0.1:8765/direct/v1/completions", conc, n))
            out[str(conc)] = {"ingress": ours, "direct": direct,
                              "added_ttft_p50_ms": ours["ttft_p50_ms"] - direct["ttft_p50_ms"],
                              "added_ttft_p99_ms": ours["ttft_p99_ms"] - direct["ttft_p99_ms"],
                              "added_e2e_p50_ms": ours["e2e_p50_ms"] - direct["e2e_p50_ms"]}
            print(f"concurrency {conc}: ingress {ours}\n  direct {direct}\n  "
                  f"added TTFT p50 {out[str(conc)]['added_ttft_p50_ms']:.2f} ms, "
                  f"p99 {out[str(conc)]['added_ttft_p99_ms']:.2f} ms")
        return out
    finally:
        serve.shutdown()
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decision-only", action="store_true", help="skip the Ray part")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=100, help="requests at concurrency 1")
    parser.add_argument("--out", default=None, help="write the results as JSON")
    args = parser.parse_args()
    results: dict[str, object] = {**provenance(), "decision": {}}
    for policy in ("cost-slo", "round-robin"):
        for n in (8, 64):
            r = decision_times(n, policy, args.iterations)
            results["decision"][f"{policy}/{n}"] = r  # type: ignore[index]
            print(f"decision {policy:<12} {n:>3} backends: p50 {r['p50_us']:.1f} us, "
                  f"p99 {r['p99_us']:.1f} us ({r['per_backend_us']:.2f} us per backend)")
    if not args.decision_only:
        results["added_latency"] = added_latency(args.requests)
    if args.out:
        write_results(args.out, results)


if __name__ == "__main__":
    main()
