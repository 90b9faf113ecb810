"""The cost-aware autoscaler on a real local Ray cluster: under a load step the cheapest
backend gains a replica (Ray Serve starts it through the custom policy) and the router's view
follows; after the load falls it returns to its minimum; no request is lost meanwhile.

Fleet: `cheap` (ONNX Runtime, one thread, slowed by its fault knob step_delay_ms=50: few
requests per replica within the SLO, little CPU; autoscaled 1..2, $0.02/h) and `dear`
(ONNX Runtime at full speed, $1/h, scaled to zero: unhealthy to the router meanwhile).
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from tests.serving.live import MEASURED, free_port, health, serve_fleets, slowed_profile, wait_for

pytestmark = pytest.mark.integration

DELAY_MS = 50.0
MAX_TOKENS = 24


def _fleet(tmp: Path, port: int) -> dict:
    return {
        "served_model_name": "costroute-llama-tiny", "host": "127.0.0.1", "port": port,
        "slo_classes": {"batch": {"e2e_ms": 60000}}, "default_slo_class": "batch",
        "autoscaler": {"interval_s": 1.0, "halflife_s": 2.0, "trend_halflife_s": 4.0,
                       "noise_z": 0.0, "margin": 0.0, "downscale_hold_s": 6.0},
        "backends": [
            {"id": "cheap", "engine": "onnxruntime",
             "engine_options": {"model": "tiny", "max_num_seqs": 4, "intra_op_num_threads": 1,
                                "step_delay_ms": DELAY_MS},
             "accelerator": "cpu", "usd_per_hour": 0.02, "profile": str(tmp / "cheap.json"),
             "autoscaling": {"min_replicas": 1, "max_replicas": 2, "startup_s": 5,
                             "drain_timeout_s": 60}},
            {"id": "dear", "engine": "onnxruntime",
             "engine_options": {"model": "tiny", "max_num_seqs": 16},
             "accelerator": "cpu", "usd_per_hour": 1.0, "profile": str(MEASURED),
             "autoscaling": {"min_replicas": 0, "max_replicas": 1, "startup_s": 5}},
        ],
    }


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("fleet")
    slowed_profile(tmp / "cheap.json", "cheap", DELAY_MS, "tests/serving/test_autoscaling_live.py",
                   max_num_seqs=4)
    port = free_port()
    yield from serve_fleets(tmp_path_factory, port, [(_fleet(tmp, port), "costroute", "/")])


def _cheap_replicas() -> tuple[int, int, int]:
    from serving.ray_scaling import replica_counts

    return replica_counts("costroute").get("backend-cheap", (0, 0, 0))


def test_a_load_step_grows_the_cheapest_backend_and_the_fall_shrinks_it(server: str) -> None:
    assert health(server)["replicas"] == {"cheap": 1, "dear": 0}
    results: list[tuple[int, int]] = []
    stop = threading.Event()

    def client() -> None:  # closed loop: one request after another
        with httpx.Client(timeout=120) as c:
            while not stop.is_set():
                r = c.post(f"{server}/v1/completions", json={
                    "model": "costroute-llama-tiny", "prompt": "Hello world",
                    "max_tokens": MAX_TOKENS, "ignore_eos": True})
                used = r.json().get("usage", {}).get("completion_tokens", -1)
                results.append((r.status_code, used))

    # ~1.2 s per request on cheap: 4 clients keep one replica's 4 sequences busy, ~3.3
    # req/s, more than one replica holds within the SLO on the profile's figures (Little:
    # 0.85 x 4 / 1.2 s = 2.4 req/s); two hold them (dear, $1/h, stays at zero)
    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        grew = wait_for(lambda: _cheap_replicas()[1] == 2, 90)
        seen = wait_for(lambda: health(server).get("replicas", {}).get("cheap") == 2, 10)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=180)
    assert grew, (f"cheap did not gain a replica: {_cheap_replicas()}; {len(results)} "
                  f"requests {sorted(set(results))}; " + _debug(server))
    assert seen, "the router's view did not follow"
    # the load fell: after the hold, back to the minimum; the drained replica lost nothing
    assert wait_for(lambda: _cheap_replicas() == (0, 1, 0), 90), _cheap_replicas()
    from serving.ray_scaling import replica_counts

    assert replica_counts("costroute")["backend-dear"] == (0, 0, 0)
    assert wait_for(lambda: health(server).get("replicas", {}).get("cheap") == 1, 10)
    assert results and all(r == (200, MAX_TOKENS) for r in results), \
        sorted(set(results))
    metrics = httpx.get(f"{server}/metrics").text
    assert 'costroute_target_replicas{backend="cheap"} 1.0' in metrics


def _debug(server: str) -> str:
    from ray.experimental.internal_kv import _internal_kv_get

    from serving.ray_scaling import NAMESPACE, target_key

    lines = [x for x in httpx.get(f"{server}/metrics").text.splitlines()
             if "replicas" in x and not x.startswith("#")]
    kv = _internal_kv_get(target_key("costroute", "backend-cheap"), namespace=NAMESPACE)
    return f"published {kv!r}; metrics {lines}"
