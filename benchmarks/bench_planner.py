#!/usr/bin/env python
"""`costroute plan` over a suite of cases: does the verified fleet keep the paper saving?

Each case is a catalogue + a workload committed under benchmarks/planner_cases/ (or the
planning example under docs/examples/planning/), planned with `costroute plan` in a
subprocess, one after the other. Per case: the paper optimum's $/hour (the integer program
on the calibrated capacities), the verified mix's $/hour (what the simulator, routing with
the cost-slo policy and the plan's routing table, says meets the attainment target), the
cheapest homogeneous fleet on paper and verified, the attainment of each, the saving vs
homogeneous on paper and verified, verified / paper, the ILP's solve time and the plan's
total time. A reference (Mélange's own solver answers, its published savings) goes beside
where one exists.

    python benchmarks/bench_planner.py --out benchmarks/results/planner.json
    python benchmarks/bench_planner.py --cases melange-example-30,dominated
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import provenance, write_results  # benchmarks/_results.py (on sys.path)

ROOT = Path(__file__).resolve().parents[1]
CASES_DIR = ROOT / "benchmarks" / "planner_cases"
EXAMPLE = ROOT / "docs" / "examples" / "planning"

# name -> (catalogue, workload, extra plan arguments, reference)
CASES: dict[str, tuple[Path, Path, list[str], dict[str, Any]]] = {
    **{f"melange-example-{r}": (
        CASES_DIR / "melange-example" / "catalogue.yaml",
        CASES_DIR / "melange-example" / "workload.yaml", ["--rate", str(r)],
        {"source": "Mélange's solver on its public example (as reported in the issue that "
                   "asked for this benchmark)", "answer": answer})
       for r, answer in ((5, "2 A10G ($2.02/h)"), (30, "2-3 A10G + 1 A100; mix $4.68/h"),
                         (120, "5 A100 ($18.35/h)"))},
    "planning-example (mixed SLO)": (EXAMPLE / "catalogue.yaml", EXAMPLE / "workload.yaml", [],
                                     {}),
    **{f"melange-rebuilt-{kind}": (
        CASES_DIR / "melange-rebuilt" / "catalogue.yaml",
        CASES_DIR / "melange-rebuilt" / f"{kind}.yaml", [],
        {"source": "Mélange paper (Griggs et al. 2024): cost saving vs the best single GPU "
                   "type, up to", "published_saving": saving})
       for kind, saving in (("short", 0.77), ("long", 0.33), ("mixed", 0.51))},
    "dominated (no mix can win)": (CASES_DIR / "dominated" / "catalogue.yaml",
                                   EXAMPLE / "workload.yaml", ["--rate", "10"], {}),
    "long-prompts-80rps (two SLO classes)": (EXAMPLE / "catalogue.yaml",
                                             CASES_DIR / "long-prompts" / "workload.yaml", [],
                                             {}),
}


def run_case(name: str, work: Path) -> dict[str, Any]:
    catalogue, workload, extra, reference = CASES[name]
    out = work / name.split(" ")[0]
    cmd = [sys.executable, "-m", "costroute.cli", "plan", "--catalogue", str(catalogue),
           "--workload", str(workload), *extra, "--out", str(out), "--no-progress"]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"case": name, "error": (done.stdout[-1500:] + done.stderr[-1500:]).strip()}
    plan = json.loads((out / "plan.json").read_text())
    s = plan["summary"]
    tries = plan["tries"]

    def attainment(check: dict[str, Any] | None) -> float | None:
        return check["attainment"] if check else None

    return {
        "case": name,
        "command": " ".join(["costroute", *cmd[3:]]).replace(str(out), "OUT"),
        "paper_replicas": plan["paper"]["replicas"],
        "paper_usd_per_hour": s["paper_usd_per_hour"],
        "paper_attainment": tries[0]["attainment"] if tries else None,
        "verified_replicas": plan["verified"]["replicas"] if s["verified_usd_per_hour"] else None,
        "verified_usd_per_hour": s["verified_usd_per_hour"],
        "verified_attainment": attainment(plan["verified_check"]) if s["verified_usd_per_hour"]
        else None,
        "paper_homogeneous_usd_per_hour": s["paper_homogeneous_usd_per_hour"],
        "verified_homogeneous_replicas": (plan["verified_homogeneous"] or {}).get("replicas"),
        "verified_homogeneous_usd_per_hour": s["verified_homogeneous_usd_per_hour"],
        "verified_homogeneous_attainment": attainment(plan["verified_homogeneous_check"]),
        "saving_on_paper": s["saving_on_paper"],
        "saving_verified": s["saving_verified"],
        "verified_over_paper": s["verified_over_paper"],
        "recommended": plan["recommended"],
        "unverified_offers": plan["unverified"],
        "mix_factors": plan["mix_factors"],
        "ilp_solve_s": plan["timing_s"]["ilp_solve"],
        "plan_total_s": plan["timing_s"]["total"],
        "wall_s": wall,
        "reference": reference,
    }


def _fmt(x: Any, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| case | paper $/h (attainment) | verified mix $/h (attainment) | homogeneous "
             "$/h paper / verified | saving paper / verified | verified / paper | plan s | "
             "reference |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['case']} | error: {r['error'][:80]} | | | | | | |")
            continue
        ref = r["reference"]
        ref_text = ref.get("answer") or (f"up to {ref['published_saving'] * 100:.0f}%"
                                         if "published_saving" in ref else "")
        paper = ", ".join(f"{k} x{v}" for k, v in r["paper_replicas"].items())
        verified = ", ".join(f"{k} x{v}" for k, v in (r["verified_replicas"] or {}).items())
        lines.append(
            f"| {r['case']} | {_fmt(r['paper_usd_per_hour'], '.2f')} ({paper}; "
            f"{_fmt(r['paper_attainment'], '.3f')}) | {_fmt(r['verified_usd_per_hour'], '.2f')}"
            f"{f' ({verified}; ' + _fmt(r['verified_attainment'], '.3f') + ')' if verified else ''}"
            f" | {_fmt(r['paper_homogeneous_usd_per_hour'], '.2f')} / "
            f"{_fmt(r['verified_homogeneous_usd_per_hour'], '.2f')} | "
            f"{_pct(r['saving_on_paper'])} / {_pct(r['saving_verified'])} | "
            f"{_fmt(r['verified_over_paper'], '.3f')} | {r['plan_total_s']:.0f} | {ref_text} |")
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.1f}%"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=",".join(CASES),
                   help="comma-separated case names (default: all): " + ", ".join(CASES))
    p.add_argument("--out", default=None, help="JSON result file")
    p.add_argument("--keep", default=None, help="keep each plan's folder under this path")
    args = p.parse_args()
    names = [n for n in args.cases.split(",") if n]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}; known: {list(CASES)}")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-planner-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for name in names:
            print(f"{name} ...", file=sys.stderr, flush=True)
            rows.append(run_case(name, work))
            r = rows[-1]
            print(f"  {'error' if 'error' in r else _fmt(r['verified_over_paper'], '.3f')} "
                  f"({r.get('wall_s', 0):.0f} s)", file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = table(rows)
    print(text)
    if args.out:
        write_results(args.out, {"benchmark": "planner", **provenance(), "cases": rows,
                                 "table": text})
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
