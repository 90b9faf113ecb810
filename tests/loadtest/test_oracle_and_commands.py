"""The cost oracle is a lower bound; `costroute simulate` and `costroute plan` end to end
(pure: profiles, the simulator, HiGHS; no engines)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from costroute.cli import main
from loadtest.oracle import least_replica_ms, oracle_cost
from loadtest.simulator import SimBackend, simulate
from loadtest.workload import parse_workload
from profiles.latency import BackendLoad, LatencyModel, RequestShape
from serving.config import parse_fleet_config
from serving.policies import make_policy
from tests.profiles.synthetic import synthetic_profile

ROOT = Path(__file__).parents[2]


def fleet() -> list[SimBackend]:
    return [SimBackend("fast", LatencyModel(synthetic_profile(max_num_seqs=8)), 1.0),
            SimBackend("slow", LatencyModel(synthetic_profile(step_base_ms=8.0,
                                                              max_num_seqs=8)), 0.2)]


def test_least_replica_time_is_below_any_real_share() -> None:
    model = LatencyModel(synthetic_profile(max_num_seqs=8))
    alone = model.predict(RequestShape(64, 16), BackendLoad())
    assert 0 < least_replica_ms(model, 64, 16) < alone.replica_ms


@pytest.mark.parametrize("policy", ["cost-slo", "round-robin", "fastest", "cheapest"])
def test_no_policy_beats_the_oracle(policy: str) -> None:
    spec = parse_workload({
        "arrival": {"rate_rps": 30.0}, "num_requests": 600, "seed": 3,
        "slo_classes": {"i": {"ttft_ms": 60, "tpot_ms": 9}}, "slo_mix": {"i": 1},
        "mix": [{"prompt_tokens": {"dist": "uniform", "mean": 100, "range_ratio": 0.5},
                 "output_tokens": {"dist": "uniform", "mean": 20, "range_ratio": 0.5}}]})
    records = simulate(fleet(), make_policy(policy), spec)
    bound = oracle_cost(records, fleet())
    spent = sum(r.cost_usd or 0 for r in records if r.ok)
    assert bound.status == "optimal" and 0 < bound.usd <= spent


def test_simulate_cli_writes_a_summary_with_the_oracle(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim"
    assert main(["simulate", "--fleet", "deploy/local.yaml", "--rate", "3", "--mix", "chat-doc",
                 "--slo-mix", "interactive=0.3,standard=0.7", "--duration", "60",
                 "--out", str(out), "--no-report"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["simulated"] is True and s["requests"]["measured"] > 100
    assert set(s["backends"]) <= {"cpu-vllm", "cpu-onnxruntime", "cpu-onnxruntime-1t"}
    oracle = s["simulation"]["oracle"]
    assert oracle["policy_over_oracle"] >= 1.0
    assert "policy / oracle" in capsys.readouterr().out


def test_simulate_runs_the_fleets_autoscaler(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim"
    assert main(["simulate", "--fleet", "deploy/autoscaling.yaml", "--rate", "20", "--mix",
                 "chat-doc", "--duration", "120", "--out", str(out), "--no-report",
                 "--no-oracle"]) == 0
    s = json.loads((out / "summary.json").read_text())
    scaling = s["simulation"]["scaling"]
    assert scaling["decisions"] >= 10 and scaling["timeline"]
    assert scaling["timeline"][0]["replicas"]["cpu-onnxruntime-1t"] >= 1  # its minimum
    provisioned = s["cost"]["provisioned"]
    assert "autoscaled" in provisioned["source"] and provisioned["usd_per_hour"] > 0
    assert "autoscaled" in capsys.readouterr().out


def test_simulate_sweeps_an_autoscaler_setting(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep"
    assert main(["simulate", "--fleet", "deploy/autoscaling.yaml", "--rate", "20", "--mix",
                 "chat-doc", "--duration", "120", "--out", str(out), "--no-report",
                 "--no-oracle", "--attainment", "0.5",
                 "--sweep", "autoscaler.margin=0,0.5"]) == 0
    low, high = (json.loads((out / f"autoscaler.margin-{m}" / "summary.json").read_text())
                 for m in ("0", "0.5"))
    usd = [s["cost"]["provisioned"]["usd_per_1m_output_tokens"] for s in (low, high)]
    assert usd[1] >= usd[0]  # a larger margin never buys fewer replicas
    assert "provisioned $" in capsys.readouterr().out
    assert main(["simulate", "--fleet", "deploy/autoscaling.yaml", "--rate", "5", "--duration",
                 "10", "--out", str(tmp_path / "bad"), "--sweep", "autoscaler.margin=-1"]) == 2
    assert "autoscaler.margin" in capsys.readouterr().err


def test_simulate_with_an_interference_table(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from profiles.interference import InterferenceTable, Slowdown

    ids = ("cpu-vllm", "cpu-onnxruntime", "cpu-onnxruntime-1t")
    table = tmp_path / "interference.json"
    InterferenceTable("test", tuple(Slowdown(b, (n,), op, 2.0, 3.0) for b in ids for n in ids
                                    if n != b for op in ("decode", "prefill")),
                      "now", "tests", {}).save(table)
    args = ["simulate", "--rate", "2", "--mix", "chat-doc", "--duration", "60", "--no-report",
            "--no-oracle", "--slo-mix", "standard=1"]
    ttft = {}
    for name, extra in (("alone", []), ("shared", ["--interference", str(table)])):
        assert main([*args, *extra, "--out", str(tmp_path / name)]) == 0
        s = json.loads((tmp_path / name / "summary.json").read_text())
        ttft[name] = s["latency_ms"]["ttft"]["median"]
        assert (s["simulation"]["interference"] is None) == (name == "alone")
    assert ttft["shared"] > ttft["alone"]
    InterferenceTable("test", (Slowdown("x", ("y",), "decode", 2.0, 2.0),), "now", "tests", {}).save(table)
    assert main([*args, "--interference", str(table), "--out", str(tmp_path / "bad")]) == 2
    assert "--interference" in capsys.readouterr().err


def test_simulate_sweep_names_the_cheapest_setting(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep"
    assert main(["simulate", "--rate", "3", "--duration", "40", "--slo-mix", "standard=1",
                 "--sweep", "policy=cost-slo,round-robin", "--attainment", "0.9",
                 "--out", str(out), "--no-report", "--no-oracle"]) == 0
    text = capsys.readouterr().out
    assert "cheapest setting with attainment >= 0.9: policy=cost-slo" in text
    assert (out / "compare.md").exists() and (out / "plots" / "compare.png").exists()


def test_plan_cli_on_the_example_catalogue(tmp_path: Path) -> None:
    out = tmp_path / "plan"
    assert main(["plan", "--catalogue", "docs/examples/planning/catalogue.yaml",
                 "--workload", "docs/examples/planning/workload.yaml",
                 "--check-duration", "30", "--out", str(out)]) == 0
    plan = json.loads((out / "plan.json").read_text())
    paper, homo = plan["paper"], plan["verified_homogeneous"]
    assert paper["status"] == "optimal" and plan["capacity_method"] == "simulated"
    # the paper mix is what the first check simulated, with the routing table it deploys
    assert plan["tries"][0]["replicas"] == paper["replicas"]
    assert plan["verified_homogeneous_check"]["attainment"] >= 0.99
    summary = plan["summary"]
    assert summary["paper_usd_per_hour"] == paper["usd_per_hour"]
    rec = plan["recommended"]
    chosen = plan["verified"]["replicas"] if rec == "mix" else homo["replicas"]
    if rec == "mix":
        assert plan["verified_check"]["attainment"] >= 0.99
        assert summary["verified_usd_per_hour"] <= homo["usd_per_hour"]
    fleet_cfg = parse_fleet_config(yaml.safe_load((out / "fleet.yaml").read_text()))
    assert {b.id: b.replicas for b in fleet_cfg.backends} == chosen
    assert ("routing_table" in fleet_cfg.policy.params) == (rec == "mix")
    assert "Recommended" in (out / "plan.md").read_text()


MELANGE = ROOT / "benchmarks" / "planner_cases" / "melange-example"


def test_plan_on_throughput_tables_is_on_paper_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "plan"
    assert main(["plan", "--catalogue", str(MELANGE / "catalogue.yaml"), "--workload",
                 str(MELANGE / "workload.yaml"), "--rate", "30", "--out", str(out),
                 "--no-progress"]) == 0
    plan = json.loads((out / "plan.json").read_text())
    assert plan["paper"]["replicas"] == {"a10g": 1, "a100-80gb": 1}  # Mélange's $4.68/h mix
    assert sorted(plan["unverified"]) == ["a100-80gb", "a10g"]
    assert plan["recommended"] == "mix (unverified)" and plan["verified_check"] is None
    assert "Unverified" in (out / "plan.md").read_text() and not (out / "fleet.yaml").exists()


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda c: c["accelerators"][0].update(throughput=[[1, 2]]), "must be 2 x 2"),
    (lambda c: c["accelerators"][0].update(profile="nope.json"), "exactly one of"),
    (lambda c: c["buckets"].update(prompt_edges=[0, 512, 128]), "increase"),
])
def test_a_bad_catalogue_names_what_is_wrong(tmp_path: Path, edit, needle: str,  # type: ignore[no-untyped-def]
                                             capsys: pytest.CaptureFixture[str]) -> None:
    raw = yaml.safe_load((MELANGE / "catalogue.yaml").read_text())
    edit(raw)
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["plan", "--catalogue", str(path), "--rate", "5", "--out",
                 str(tmp_path / "out")]) == 2
    assert needle in capsys.readouterr().err


def test_a_relative_profile_is_read_from_the_catalogues_folder(tmp_path: Path) -> None:
    import shutil

    shutil.copy(ROOT / "profiles" / "tables" / "cpu-onnxruntime.json", tmp_path / "ort.json")
    (tmp_path / "catalogue.yaml").write_text(yaml.safe_dump({
        "model": "tiny", "accelerators": [
            {"id": "ort", "usd_per_hour": 0.2, "profile": "ort.json", "engine": "onnxruntime"}]}))
    out = tmp_path / "out"
    assert main(["plan", "--catalogue", str(tmp_path / "catalogue.yaml"), "--rate", "2",
                 "--capacity", "closed-form", "--check-duration", "20", "--out", str(out),
                 "--no-progress"]) == 0
    assert json.loads((out / "plan.json").read_text())["recommended"] in ("mix", "homogeneous")
