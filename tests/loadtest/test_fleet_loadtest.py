"""End to end: `costroute serve` on the default fleet (deploy/local.yaml: vLLM and two ONNX
Runtime backends on a local Ray cluster), then a 30-second mixed load test against it that
must yield the per-request JSONL, the summary and the HTML report with its plots."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from costroute.cli import main

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def fleet_url(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "costroute.cli", "serve", "--config", "deploy/local.yaml",
             "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True,
            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
        try:
            deadline = time.monotonic() + 240
            assert proc.stdout is not None
            for line in proc.stdout:
                if "costroute: serving" in line or time.monotonic() > deadline:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"costroute serve did not come up; see {log}:\n"
                            + log.read_text()[-3000:])
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_a_30_second_mixed_run_on_the_default_fleet(fleet_url: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = main(["loadtest", "run", "--url", fleet_url, "--fleet", "deploy/local.yaml",
                 "--rate", "2", "--mix", "chat-doc",
                 "--slo-mix", "interactive=0.3,standard=0.5,batch=0.2",
                 "--duration", "30", "--warmup", "2", "--out", str(out), "--no-progress"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == summary["requests"]["total"] and summary["requests"]["measured"] >= 30
    assert summary["requests"]["failed"] == 0, summary["errors"]
    assert summary["requests"]["usage_from_server"] == summary["requests"]["completed"]
    # every request was routed by the fleet, and priced by it
    assert set(summary["backends"]) <= {"cpu-vllm", "cpu-onnxruntime", "cpu-onnxruntime-1t"}
    assert summary["cost"]["attributed"]["requests_priced"] == summary["requests"]["completed"]
    prov = summary["cost"]["provisioned"]
    assert prov["usd_per_hour"] == pytest.approx(0.68)
    assert prov["usd_per_1m_output_tokens"] > 0
    assert set(summary["slo"]["classes"]) == {"interactive", "standard", "batch"}
    assert summary["slo"]["classes"]["batch"]["targets"] == {"e2e_ms": 60000}
    assert summary["pacing"]["achieved_rate_rps"] == pytest.approx(2, rel=0.35)
    assert {r["component"] for r in records} == {"chat", "document"}
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 and 'src="plots/' not in html
    for plot in ("latency_cdf", "latency_over_time", "backend_share", "cost_vs_slo"):
        assert (out / "plots" / f"{plot}.png").read_bytes().startswith(b"\x89PNG")
