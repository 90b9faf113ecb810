"""Sweep decisions (pure) and `costroute loadtest sweep` end to end on the trivial server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backends.errors import ConfigError
from costroute.cli import main
from loadtest.sweep import best_point, sweep_rates
from tests.loadtest.test_client_runner import url  # noqa: F401  (the trivial server fixture)


def test_rates_from_a_list_or_a_geometric_series() -> None:
    assert sweep_rates("4,1,2", 1, 2, 64) == [1.0, 2.0, 4.0]
    assert sweep_rates(None, 1, 2, 10) == [1, 2, 4, 8]
    assert sweep_rates(None, 1, 1.5, 3.5) == [1, 1.5, 2.25, 3.375]
    for bad in ("a,b", "0,1", ""):
        with pytest.raises(ConfigError):
            sweep_rates(bad or ",", 1, 2, 4)
    with pytest.raises(ConfigError):
        sweep_rates(None, 1, 1.0, 4)


def test_best_is_the_highest_goodput_that_meets_the_target() -> None:
    points = [{"rate_rps": 1, "goodput_rps": 1.0, "meets_target": True},
              {"rate_rps": 2, "goodput_rps": 1.9, "meets_target": True},
              {"rate_rps": 4, "goodput_rps": 2.5, "meets_target": False}]
    assert best_point(points)["rate_rps"] == 2
    assert best_point(points[2:]) is None


def test_cli_sweep_stops_below_the_target_and_writes_its_report(
        url: str, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "sweep"
    # the trivial server meets a 1 s TTFT at any rate here, so all rates are run
    code = main(["loadtest", "sweep", "--url", url, "--price", "1.0", "--rates", "20,40",
                 "--requests", "20", "--output-tokens", "4", "--slo-class", "c:ttft_ms=1000",
                 "--slo-mix", "c=1", "--attainment", "0.9", "--out", str(out), "--no-progress"])
    assert code == 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert [p["rate_rps"] for p in sweep["points"]] == [20.0, 40.0]
    assert sweep["best"]["rate_rps"] == 40.0 and sweep["best"]["usd_per_1m_output_tokens"] > 0
    assert (out / "rate-20" / "summary.json").exists() and (out / "sweep.html").exists()
    # an impossible SLO: the first rate misses, and the sweep stops there (patience 1)
    out2 = tmp_path / "sweep2"
    main(["loadtest", "sweep", "--url", url, "--price", "1.0", "--rates", "20,40",
          "--requests", "10", "--output-tokens", "4", "--slo-class", "c:ttft_ms=0.001",
          "--slo-mix", "c=1", "--out", str(out2), "--no-progress", "--no-report"])
    sweep2 = json.loads((out2 / "sweep.json").read_text())
    assert len(sweep2["points"]) == 1 and sweep2["best"] is None
