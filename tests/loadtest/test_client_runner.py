"""The client and the runner against a real HTTP server: loadtest/trivial_server.py (an
OpenAI-shaped SSE endpoint with no model, and fault knobs), then the CLI end to end."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from costroute.cli import main
from loadtest.client import OpenAIClient, TokenPool
from loadtest.records import Record
from loadtest.runner import run_load
from loadtest.workload import parse_workload


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "loadtest.trivial_server", "--port", str(port)])
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(base + "/v1/models", timeout=1.0)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    yield base
    proc.terminate()
    proc.wait(10)


def workload(**over):  # type: ignore[no-untyped-def]
    raw = {"arrival": {"process": "constant", "rate_rps": 100.0},
           "mix": [{"prompt_tokens": {"mean": 16}, "output_tokens": {"mean": 4}}],
           "num_requests": 50, "slo_classes": {"fast": {"ttft_ms": 1000, "tpot_ms": 1000}},
           "slo_mix": {"fast": 1}}
    raw.update(over)
    return parse_workload(raw)


def run(url: str, spec, **client) -> list[Record]:  # type: ignore[no-untyped-def]
    async def go() -> list[Record]:
        c = OpenAIClient(url, "trivial", pool=TokenPool(spec.seed, 16, 1024), **client)
        try:
            return (await run_load(spec, c, progress=False))[0]
        finally:
            await c.aclose()
    return asyncio.run(go())


def overlap(records: list[Record]) -> int:
    events = sorted([(r.sent_s, 1) for r in records] +
                    [(r.sent_s + (r.done_s or 0), -1) for r in records])
    peak = now = 0
    for _, d in events:
        now += d
        peak = max(peak, now)
    return peak


def test_open_loop_sends_every_request_on_schedule(url: str) -> None:
    records = run(url, workload())
    assert [r.index for r in records] == list(range(50))
    assert all(r.ok and r.status == 200 and r.usage_from_server for r in records)
    assert all(r.completion_tokens == 4 and len(r.token_s) == 4 for r in records)
    assert all(r.met_slo() and r.backend == "trivial" and r.cost_usd == 1e-6 for r in records)
    sends = [r.sent_s for r in records]
    assert (len(sends) - 1) / (sends[-1] - sends[0]) == pytest.approx(100, rel=0.1)
    assert all(r.lag_ms is not None and r.lag_ms >= 0 for r in records)


def test_the_cap_holds_requests_back_not_drops_them(url: str) -> None:
    records = run(url, workload(arrival={"process": "constant", "rate_rps": 2000.0},
                                num_requests=100, max_in_flight=2))
    assert len(records) == 100 and all(r.ok for r in records)
    assert overlap(records) <= 2


def test_closed_loop_keeps_concurrency_and_counts(url: str) -> None:
    records = run(url, workload(arrival={"process": "closed", "concurrency": 3}, num_requests=30))
    assert len(records) == 30 and all(r.ok and r.scheduled_s is None for r in records)
    assert overlap(records) <= 3


def test_http_errors_are_data(url: str) -> None:
    records = run(url, workload(num_requests=5), extra_headers={"x-fail-status": "503"})
    assert len(records) == 5
    for r in records:
        assert (r.status, r.ok, r.met_slo()) == (503, False, False)
        assert r.error == "failure requested by x-fail-status"


def test_in_band_errors_keep_the_tokens_before_them(url: str) -> None:
    records = run(url, workload(num_requests=3), extra_headers={"x-fail-after": "2"})
    for r in records:
        assert r.status == 200 and not r.ok and len(r.token_s) == 2
        assert r.error == "failure requested by x-fail-after"


def test_connection_refused_is_recorded(url: str) -> None:
    records = run(f"http://127.0.0.1:{_free_port()}", workload(num_requests=3))
    assert [r.status for r in records] == [0, 0, 0]
    assert all(r.error and r.error.startswith("connection") for r in records)


def test_slo_travels_as_headers() -> None:
    c = OpenAIClient("http://x/v1", "m", pool=TokenPool(0, 16, 1024), slo_headers="class")
    plan = next(iter(__import__("loadtest.workload", fromlist=["x"]).bounded_plans(workload())))
    assert c.headers(plan) == {"x-slo-ttft-ms": "1000", "x-slo-tpot-ms": "1000",
                               "x-slo-class": "fast"}
    body = c.body(plan)
    assert len(body["prompt"]) == 16 and body["max_tokens"] == 4 and body["ignore_eos"]
    asyncio.run(c.aclose())


def test_cli_run_writes_records_summary_and_report(url: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(["loadtest", "run", "--url", url, "--price", "0.5", "--rate", "50",
                 "--requests", "40", "--warmup", "0.2", "--prompt-tokens", "uniform:32:0.5",
                 "--output-tokens", "8", "--slo-class", "chat:ttft_ms=500",
                 "--slo-mix", "chat=1", "--out", str(out), "--no-progress", "--seed", "3"])
    assert code == 0
    line = capsys.readouterr().out
    assert "40/40 ok" in line and "provisioned" in line
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests"]["measured"] == 40 and summary["requests"]["warmup"] >= 1
    assert summary["target"]["model"] == "trivial"  # read from /v1/models
    assert summary["cost"]["provisioned"]["usd_per_hour"] == 0.5
    assert summary["workload"]["seed"] == 3
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == summary["requests"]["total"]
    assert (out / "report.html").exists() and list((out / "plots").glob("*.png"))
    assert main(["loadtest", "compare", str(out), str(out), "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "compare.html").exists()


@pytest.mark.parametrize(("argv", "field"), [
    (["--rate", "5"], "duration"),
    (["--rate", "5", "--concurrency", "2", "--requests", "3"], "rate"),
    (["--rate", "5", "--requests", "3", "--output-tokens", "lognormal:5"], "output_tokens"),
    (["--rate", "5", "--requests", "3", "--slo-mix", "gold=1"], "slo_mix"),
    (["--rate", "5", "--requests", "3", "--slo-class", "gold"], "slo_class"),
    (["--rate", "5", "--requests", "3", "--price", "-1"], "price"),
    (["--rate", "5", "--requests", "3", "--fleet", "deploy/local.yaml", "--backend", "nope"],
     "backend"),
])
def test_cli_bad_flags_name_the_field(argv: list[str], field: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["loadtest", "run", "--url", "http://127.0.0.1:9", *argv, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and f"[{field}]" in err, err


def test_chat_endpoint_streams_deltas(url: str) -> None:
    records = run(url, workload(num_requests=5), endpoint="chat")
    assert all(r.ok and len(r.token_s) == 4 and r.completion_tokens == 4 for r in records)


def test_with_a_fleet_and_no_slo_mix_requests_are_of_its_default_class(
        url: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["loadtest", "run", "--url", url, "--fleet", "deploy/local.yaml", "--rate", "50",
                 "--requests", "5", "--output-tokens", "2", "--out", str(out), "--no-progress",
                 "--no-report"]) == 0
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert {r["slo_class"] for r in rows} == {"standard"}  # deploy/local.yaml's default
    assert rows[0]["slo"] == {"ttft_ms": 1000.0, "tpot_ms": 100.0}
