"""The compiled decision core (`make compile`, profiles/compiled.py): built in a copy of the
sources, it gives the very same simulated records as the sources, and a compiled module
whose source changed refuses to import."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]

# A simulated run of the default fleet's three CPU tables under the cost-slo policy, busy
# enough to queue and batch; prints a digest of every record and the compiled modules.
RUN = """
import hashlib, json
from loadtest.simulator import SimBackend, simulate
from loadtest.workload import chat_doc_preset, parse_workload
from profiles.compiled import compiled_modules
from profiles.latency import LatencyModel
from profiles.table import load_profile
from serving.policies import make_policy
backends = [SimBackend(b, LatencyModel(load_profile(f"profiles/tables/{b}.json")), p, 2)
            for b, p in (("cpu-vllm", 0.4), ("cpu-onnxruntime", 0.2), ("cpu-onnxruntime-1t", 0.08))]
spec = parse_workload({"arrival": {"process": "poisson", "rate_rps": 8.0},
                       "mix": [c.model_dump() for c in chat_doc_preset()],
                       "slo_classes": {"interactive": {"ttft_ms": 250, "tpot_ms": 40}},
                       "slo_mix": {"interactive": 0.5}, "num_requests": 3000, "seed": 3})
h = hashlib.sha256()
for policy in ("cost-slo", "least-loaded", "round-robin"):
    for r in simulate(backends, make_policy(policy), spec):
        h.update(repr((r.headers, r.token_s, r.done_s, r.status)).encode())
print(json.dumps({"digest": h.hexdigest(), "compiled": compiled_modules()}))
"""


def _python(cwd: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_compiled_core_gives_the_same_records_and_refuses_stale_code(tmp_path: Path) -> None:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler")
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.so", ".compiled.json")
    for package in ("backends", "serving", "profiles", "loadtest"):
        shutil.copytree(ROOT / package, src / package, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", src)  # mypy's settings (pydantic plugin)

    sources = _python(src, RUN)
    assert sources.returncode == 0, sources.stderr
    build = subprocess.run([sys.executable, "profiles/compiled.py", "build"], cwd=src,
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout + build.stderr
    compiled = _python(src, RUN)
    assert compiled.returncode == 0, compiled.stderr

    before, after = json.loads(sources.stdout), json.loads(compiled.stdout)
    assert before["compiled"] == []
    assert "profiles.latency" in after["compiled"] and "loadtest.simulator" in after["compiled"]
    assert after["digest"] == before["digest"]

    latency = src / "profiles" / "latency.py"
    latency.write_text(latency.read_text() + "\n# edited after the build\n")
    stale = _python(src, "import profiles.latency")
    assert stale.returncode != 0
    assert "profiles/latency.py changed since it was compiled" in stale.stderr
    assert "make compile" in stale.stderr
    subprocess.run([sys.executable, "profiles/compiled.py", "clean"], cwd=src, check=True)
    assert _python(src, "import profiles.latency, loadtest.simulator").returncode == 0
    assert not [p for package in ("serving", "profiles", "loadtest")
                for p in (src / package).rglob("*.so")]
