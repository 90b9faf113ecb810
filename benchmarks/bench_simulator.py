"""Simulator speed and planner solve time.

* simulator: an 8-backend fleet (the three measured CPU profiles and five roofline-estimated
  GPU profiles of the tiny model, each with its price) under Poisson chat/document traffic,
  routed by the cost-slo policy (and round-robin, the cheapest policy to evaluate):
  simulated requests per second and per minute of wall time, on one core.
* planner: 20 accelerator types (roofline estimates of an 8B-shaped model from varied
  datasheet figures and prices) and the mixed chat/document workload: the time to compute
  the capacities (bucket x accelerator) and to solve the integer program (HiGHS).

It says which modules ran compiled (`make compile`: the decision core built with mypyc) and
which from source:

    make uncompile && python benchmarks/bench_simulator.py --out benchmarks/results/simulator.json
    make compile && python benchmarks/bench_simulator.py \
        --out benchmarks/results/simulator-compiled.json
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

from _results import write_results  # benchmarks/_results.py (this folder is on sys.path)

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from backends.model import read_manifest, resolve_model  # noqa: E402
from loadtest.planner import buckets, plan  # noqa: E402
from loadtest.simulator import SimBackend, simulate  # noqa: E402
from loadtest.workload import chat_doc_preset, load_workload, parse_workload  # noqa: E402
from profiles.compiled import compiled_modules  # noqa: E402
from profiles.estimate import estimate_profile  # noqa: E402
from profiles.latency import LatencyModel  # noqa: E402
from profiles.table import load_profile  # noqa: E402
from serving.sizing import Offer, solve  # noqa: E402

TABLES = _REPO_ROOT / "profiles" / "tables"
GPUS = (("nvidia-h100-sxm", 2.69), ("nvidia-h200", 3.5), ("nvidia-a100-80gb", 1.64),
        ("nvidia-l40s", 0.99), ("amd-mi300x", 1.85))


def eight_backends() -> list[SimBackend]:
    out = [SimBackend(name, LatencyModel(load_profile(TABLES / f"{name}.json")), price, 2)
           for name, price in (("cpu-vllm", 0.40), ("cpu-onnxruntime", 0.20),
                               ("cpu-onnxruntime-1t", 0.08))]
    manifest = read_manifest(resolve_model("tiny"))
    for acc, price in GPUS:
        table = estimate_profile(accelerator=acc, manifest=manifest, efficiency=0.02,
                                 backend_id=acc)  # a tiny model uses a sliver of a GPU
        out.append(SimBackend(acc, LatencyModel(table), price, 1))
    return out


def bench_simulator(requests: int) -> list[dict[str, Any]]:
    from serving.policies import make_policy

    backends = eight_backends()
    rows = []
    for policy in ("cost-slo", "round-robin"):
        spec = parse_workload({
            "arrival": {"process": "poisson", "rate_rps": 60.0},
            "mix": [c.model_dump() for c in chat_doc_preset()],
            "slo_classes": {"interactive": {"ttft_ms": 250, "tpot_ms": 40},
                            "standard": {"ttft_ms": 1000, "tpot_ms": 100}},
            "slo_mix": {"interactive": 0.3, "standard": 0.7},
            "num_requests": requests, "seed": 1})
        started = time.perf_counter()
        records = simulate(backends, make_policy(policy), spec)
        wall = time.perf_counter() - started
        ok = sum(r.ok for r in records)
        rows.append({"policy": policy, "backends": len(backends), "requests": len(records),
                     "completed": ok, "wall_s": wall, "requests_per_s": len(records) / wall,
                     "requests_per_minute": 60 * len(records) / wall})
        print(f"simulator {policy:<12} {len(backends)} backends: {len(records)} requests in "
              f"{wall:.1f} s = {60 * len(records) / wall:,.0f} requests/minute", flush=True)
    return rows


def twenty_offers() -> list[Offer]:
    manifest = {"name": "llama-3-8b-shape", "checksum": "shape-only", "num_parameters": 8.03e9,
                "recipe": {"num_hidden_layers": 32, "hidden_size": 4096,
                           "num_attention_heads": 32, "num_key_value_heads": 8,
                           "max_position_embeddings": 8192}}
    offers = []
    for i in range(20):
        bw = 300 + 260 * i  # GB/s, 300 .. 5240
        tf = 100 + 60 * i
        mem = (24, 48, 64, 80, 96, 141, 192)[i % 7]
        price = round(0.3 + 0.0006 * bw + 0.001 * tf, 2)
        table = estimate_profile(accelerator=f"acc-{i}", manifest=manifest, bandwidth_gbs=bw,
                                 tflops=tf, memory_gib=mem, efficiency=0.5 + 0.02 * (i % 5),
                                 backend_id=f"acc-{i}")
        offers.append(Offer(f"acc-{i}", LatencyModel(table), price))
    return offers


def bench_planner(repeats: int) -> dict[str, Any]:
    spec = load_workload(_REPO_ROOT / "docs" / "examples" / "planning" / "workload.yaml")
    bs = buckets(spec)
    offers = twenty_offers()
    started = time.perf_counter()
    result = plan(bs, offers)
    plan_s = time.perf_counter() - started
    solves = []
    for _ in range(repeats):
        started = time.perf_counter()
        p = solve(bs, offers, result.capacity)
        solves.append(time.perf_counter() - started)
    solves.sort()
    row = {"accelerator_types": len(offers), "buckets": len(bs),
           "plan_s (capacities + ILP + 20 homogeneous ILPs)": plan_s,
           "ilp_solve_s_median": solves[len(solves) // 2], "ilp_solve_s_max": solves[-1],
           "status": p.status, "usd_per_hour": p.usd_per_hour, "replicas": p.replicas}
    print(f"planner: {len(offers)} accelerator types x {len(bs)} buckets: ILP solve median "
          f"{row['ilp_solve_s_median'] * 1e3:.1f} ms (max {solves[-1] * 1e3:.1f} ms); whole "
          f"plan incl. capacities {plan_s:.2f} s; {p.status}, ${p.usd_per_hour:.2f}/h "
          f"{p.replicas}", flush=True)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=200_000)
    p.add_argument("--solves", type=int, default=20)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    sim = bench_simulator(args.requests)
    compiled = compiled_modules()
    print(f"compiled modules: {', '.join(compiled) or 'none (sources)'}", flush=True)
    planner = bench_planner(args.solves)
    if args.out:
        write_results(args.out, {
            "benchmark": "simulator speed and planner solve time",
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"platform": platform.platform(), "python": platform.python_version()},
            "command": "python benchmarks/bench_simulator.py " + " ".join(sys.argv[1:]),
            "compiled_modules": compiled, "simulator": sim, "planner": planner,
            "goals": {"simulator_requests_per_minute": 1_000_000, "planner_solve_s": 1.0},
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
