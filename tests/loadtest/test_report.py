"""Reports (unit): a synthetic summary from hand-made records, written to tmp_path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from loadtest.metrics import Pricing, summarize
from loadtest.records import BACKEND_HEADER, COST_HEADER, Record
from loadtest.report import write_comparison, write_frontier, write_report, write_sweep_report

SLO = {"ttft_ms": 200.0, "tpot_ms": 50.0}


def _ok(index: int, sent_s: float, backend: str, *, ttft_s: float = 0.1,
        warmup: bool = False, cost: str | None = "0.0000123") -> Record:
    tokens = [ttft_s + 0.02 * i for i in range(5)]
    headers = {BACKEND_HEADER: backend} | ({COST_HEADER: cost} if cost is not None else {})
    return Record(index=index, sent_s=sent_s, scheduled_s=sent_s - 0.001, slo_class="chat",
                  slo=dict(SLO), warmup=warmup, prompt_tokens=20, completion_tokens=5,
                  usage_from_server=True, status=200, token_s=tokens, end_s=tokens[-1],
                  done_s=tokens[-1], headers=headers)


def _failed(index: int, sent_s: float, status: int, error: str) -> Record:
    return Record(index=index, sent_s=sent_s, scheduled_s=sent_s, slo_class="chat",
                  slo=dict(SLO), status=status, error=error, done_s=0.05)


def _records(cost: str | None = "0.0000123") -> list[Record]:
    warm = [_ok(i, 0.1 * i, "gpu-a", warmup=True, cost=cost) for i in range(2)]
    measured = [_ok(i, 0.5 + 0.25 * i, "gpu-a" if i % 3 else "cpu-b",
                    ttft_s=0.35 if i == 4 else 0.1, cost=cost) for i in range(2, 14)]
    return warm + measured + [_failed(14, 2.0, 503, "overloaded"),
                              _failed(15, 2.5, 0, "ReadTimeout")]


def _summary(records: list[Record], *, pricing: Pricing | None, **extra: Any) -> dict[str, Any]:
    facts = {"label": "two-backends", "target": {"url": "http://127.0.0.1:8000/v1",
                                                 "model": "tiny"},
             "workload_description": "poisson arrivals at 4 req/s; mix: chat 1; seed 0",
             "command": "costroute loadtest run --rate 4", "created_utc": "2025-01-01T00:00:00Z"}
    return summarize(records, pricing=pricing, target_rate_rps=4.0, extra=facts | extra)


PRICING = Pricing(usd_per_hour=3.5, source="fleet.yaml",
                  backends={"gpu-a": 3.0, "cpu-b": 0.5})


@pytest.fixture(scope="module")
def records() -> list[Record]:
    return _records()


@pytest.fixture(scope="module")
def summary(records: list[Record]) -> dict[str, Any]:
    return _summary(records, pricing=PRICING)


def _is_png(path: Path) -> bool:
    return path.read_bytes().startswith(b"\x89PNG")


def _self_contained(page: str) -> bool:
    sources = re.findall(r'src="([^"]*)"', page)
    return ('src="plots/' not in page and "<script" not in page and "<link" not in page
            and all(s.startswith("data:image/png;base64,") for s in sources))


def _sweep(label: str, costs: list[float | None], best_at: int | None) -> dict[str, Any]:
    points = [{"rate_rps": rate, "run": f"rate-{rate:g}", "achieved_rate_rps": rate * 0.98,
               "attainment": 1.0 - 0.1 * i, "goodput_rps": rate * (1.0 - 0.1 * i),
               "output_tokens_per_s": rate * 50, "usd_per_1m_output_tokens": cost,
               "usd_per_1m_output_tokens_attributed": None if cost is None else cost / 2,
               "ttft_p50_ms": 100.0 + 20 * i, "tpot_p50_ms": 20.0 + i,
               "meets_target": 1.0 - 0.1 * i >= 0.85}
              for i, (rate, cost) in enumerate(zip((0.5, 1.0, 2.0), costs))]
    return {"schema": "costroute-loadtest-sweep", "schema_version": 1, "label": label,
            "target": {"url": "http://127.0.0.1:8000/v1", "model": "tiny"},
            "attainment_target": 0.85, "points": points,
            "best": None if best_at is None else dict(points[best_at]),
            "command": "costroute loadtest sweep --rates 0.5,1,2",
            "created_utc": "2025-01-01T00:00:00Z"}


# ---------------------------------------------------------------------- one run


def test_report_writes_markdown_html_and_plots(tmp_path: Path, summary: dict[str, Any],
                                               records: list[Record]) -> None:
    paths = write_report(tmp_path, summary, records)
    plots = {"latency_cdf", "latency_over_time", "backend_share", "cost_vs_slo"}
    assert set(paths) == {"report.md", "report.html"} | {f"plots/{p}.png" for p in plots}
    assert all(p.exists() and p.parent in (tmp_path, tmp_path / "plots") for p in paths.values())
    assert all(_is_png(paths[f"plots/{p}.png"]) for p in plots)
    md = paths["report.md"].read_text()
    assert md.startswith("# Load test: two-backends")
    for p in plots:
        assert f"](plots/{p}.png)" in md
    assert "costroute loadtest run --rate 4" in md and "cpu-b" in md and "HTTP 503" in md


def test_report_html_is_self_contained(tmp_path: Path, summary: dict[str, Any],
                                       records: list[Record]) -> None:
    page = write_report(tmp_path, summary, records)["report.html"].read_text()
    assert _self_contained(page)
    assert page.count("data:image/png;base64,") == 4


def test_report_names_every_cost(tmp_path: Path, summary: dict[str, Any],
                                 records: list[Record]) -> None:
    md = write_report(tmp_path, summary, records)["report.md"].read_text()
    cost = md.split("## Cost", 1)[1].split("## Errors", 1)[0]
    assert "| provisioned |" in cost and "| attributed |" in cost
    assert summary["cost"]["provisioned"]["what"] in cost
    assert summary["cost"]["attributed"]["what"] in cost
    assert "fleet.yaml" in cost


def test_report_without_records_keeps_the_summary_content(tmp_path: Path,
                                                          summary: dict[str, Any]) -> None:
    paths = write_report(tmp_path, summary | {"simulated": True}, None)
    assert set(paths) == {"report.md", "report.html", "plots/cost_vs_slo.png"}
    md = paths["report.md"].read_text()
    assert "latency_cdf" not in md and "## Latency (ms)" in md and "Simulated: yes" in md
    assert _self_contained(paths["report.html"].read_text())


def test_report_without_any_cost_says_so(tmp_path: Path) -> None:
    summary = _summary(_records(cost=None), pricing=None)
    paths = write_report(tmp_path, summary, None)
    assert "plots/cost_vs_slo.png" not in paths  # nothing to plot
    md = paths["report.md"].read_text()
    assert "provisioned: not computed" in md and "attributed: not computed" in md
    assert "| provisioned | – | – |" in md


def test_report_escapes_text_in_html(tmp_path: Path, records: list[Record]) -> None:
    summary = _summary(records, pricing=PRICING, label="<b>a|b</b>")
    paths = write_report(tmp_path, summary, records)
    page = paths["report.html"].read_text()
    assert "<b>a|b</b>" not in page and "&lt;b&gt;a|b&lt;/b&gt;" in page


# ---------------------------------------------------------------------- several runs


def test_comparison_labels_runs_by_label_or_folder(tmp_path: Path, summary: dict[str, Any],
                                                   records: list[Record]) -> None:
    unlabelled = _summary(records[:8], pricing=None, label="")
    unlabelled["_path"] = str(tmp_path / "runs" / "rate-2" / "summary.json")
    paths = write_comparison(tmp_path / "cmp", [summary, unlabelled])
    assert set(paths) == {"compare.md", "compare.html", "plots/compare.png"}
    assert _is_png(paths["plots/compare.png"])
    md = paths["compare.md"].read_text()
    assert "| two-backends |" in md and "| rate-2 |" in md
    assert "provisioned $/1M output tok" in md and "attributed $/1M output tok" in md
    assert "gpu-a 66.7%" in md
    assert _self_contained(paths["compare.html"].read_text())


def test_sweep_report_states_the_best_point(tmp_path: Path) -> None:
    paths = write_sweep_report(tmp_path, _sweep("fleet", [0.2, 0.15, 0.1], best_at=1))
    assert set(paths) == {"sweep.md", "sweep.html", "plots/sweep.png"}
    assert _is_png(paths["plots/sweep.png"])
    md = paths["sweep.md"].read_text()
    assert ("Highest goodput at SLO attainment >= 85.0%: 0.9 req/s (offered 1 req/s, run "
            "rate-1, attainment 90.0%) at $0.15 per 1M output tokens (provisioned)") in md
    assert md.count("yes (best)") == 1
    assert _self_contained(paths["sweep.html"].read_text())


def test_sweep_report_without_a_best_point(tmp_path: Path) -> None:
    md = write_sweep_report(tmp_path, _sweep("cpu", [None] * 3, best_at=None))["sweep.md"]
    assert "No rate reached SLO attainment >= 85.0%" in md.read_text()


def test_frontier_plots_each_sweep_and_tables_its_best(tmp_path: Path) -> None:
    sweeps = [_sweep("gpu-a", [0.3, 0.2, 0.12], best_at=1),
              _sweep("cpu-b", [0.1, None, 0.05], best_at=0),
              _sweep("none", [None] * 3, best_at=None)]
    paths = write_frontier(tmp_path, sweeps)
    assert set(paths) == {"frontier.md", "frontier.html", "plots/frontier.png"}
    assert _is_png(paths["plots/frontier.png"])
    md = paths["frontier.md"].read_text()
    assert "| gpu-a | 85.0% | 1 |" in md and "| none | 85.0% | none met the target |" in md
    assert "Cheapest at its target: cpu-b, $0.1 per 1M output tokens (provisioned)" in md
    assert _self_contained(paths["frontier.html"].read_text())
