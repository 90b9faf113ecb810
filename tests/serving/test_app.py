"""The real app on a local Ray cluster: OpenAI SDK, routing by SLO, 429, bad input, a
plan's routing table.

Fleet: `fast` (ONNX Runtime, its measured profile, $1/h) and `cheap` (ONNX Runtime slowed by
its fault knob step_delay_ms=20, $0.02/h, a profile derived from the measured one plus that
delay). One cluster per module; a second application with fallback `reject` under /reject.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.serving.live import MEASURED, free_port, serve_fleets, slowed_profile

pytestmark = pytest.mark.integration

DELAY_MS = 20.0


def _fleet(tmp: Path, port: int, fallback: str) -> dict:
    return {
        "served_model_name": "costroute-llama-tiny",
        "host": "127.0.0.1",
        "port": port,
        "fallback": fallback,
        # 12 ms: fast predicts ~1.4 ms (x at most 2 by the online correction); cheap's steps
        # take 20 ms more, so even halved by the correction it cannot promise 12 ms
        "slo_classes": {"interactive": {"ttft_ms": 12}, "batch": {"e2e_ms": 120000}},
        "default_slo_class": "batch",
        "backends": [
            {"id": "fast", "engine": "onnxruntime",
             "engine_options": {"model": "tiny", "max_num_seqs": 16},
             "accelerator": "cpu", "usd_per_hour": 1.0, "profile": str(MEASURED)},
            {"id": "cheap", "engine": "onnxruntime",
             "engine_options": {"model": "tiny", "max_num_seqs": 16, "intra_op_num_threads": 1,
                                "step_delay_ms": DELAY_MS},
             "accelerator": "cpu", "usd_per_hour": 0.02, "profile": str(tmp / "cheap.json")},
        ],
    }


def _planned_fleet(tmp: Path, port: int) -> dict:
    """The same fleet with a plan's routing table: the planner's own emission
    (loadtest/planner.py routing_table) of a plan that gives `batch` requests 1/4 to fast and
    3/4 to cheap."""
    from serving.sizing import Bucket, Plan, routing_table

    bucket = Bucket("batch p0-inf o0-inf", "batch", {"e2e_ms": 120000}, 16, 8, 1.0, 1.0)
    plan = Plan({"fast": 1, "cheap": 1}, 1.02, {bucket.label: {"fast": 0.25, "cheap": 0.75}},
                "optimal")
    fleet = _fleet(tmp, port, "fastest")
    fleet["policy"] = {"name": "cost-slo", "params": {"routing_table": routing_table([bucket], plan)}}
    return fleet


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("fleet")
    slowed_profile(tmp / "cheap.json", "cheap", DELAY_MS, "tests/serving/test_app.py")
    port = free_port()
    yield from serve_fleets(tmp_path_factory, port, [
        (_fleet(tmp, port, "fastest"), "costroute", "/"),
        (_fleet(tmp, port, "reject"), "reject", "/reject"),
        (_planned_fleet(tmp, port), "planned", "/planned")])


def _client(base: str):  # type: ignore[no-untyped-def]
    from openai import OpenAI

    return OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)


def test_models_and_health(server: str) -> None:
    models = _client(server).models.list()
    assert [m.id for m in models.data] == ["costroute-llama-tiny"]
    assert httpx.get(f"{server}/health").json()["backends"] == {"fast": True, "cheap": True}


def test_sdk_completion_and_chat_non_streaming(server: str) -> None:
    c = _client(server)
    out = c.completions.create(model="costroute-llama-tiny", prompt="Hello world",
                               max_tokens=8, temperature=0, extra_body={"ignore_eos": True})
    assert out.usage.completion_tokens == 8 and out.choices[0].finish_reason == "length"
    chat = c.chat.completions.create(model="costroute-llama-tiny", max_tokens=6,
                                     messages=[{"role": "user", "content": "hi"}],
                                     temperature=0, extra_body={"ignore_eos": True})
    assert chat.choices[0].message.role == "assistant"
    assert chat.usage.completion_tokens == 6


def test_sdk_streaming_with_usage(server: str) -> None:
    c = _client(server)
    stream = c.completions.create(model="costroute-llama-tiny", prompt="Hello", max_tokens=10,
                                  temperature=0, stream=True, stream_options={"include_usage": True},
                                  extra_body={"ignore_eos": True})
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 10
    text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    full = c.completions.create(model="costroute-llama-tiny", prompt="Hello", max_tokens=10,
                                temperature=0, extra_body={"ignore_eos": True})
    assert text == full.choices[0].text  # greedy: the stream and the whole agree
    chat = c.chat.completions.create(model="costroute-llama-tiny", max_tokens=5, stream=True,
                                     messages=[{"role": "user", "content": "hi"}], temperature=0,
                                     extra_body={"ignore_eos": True})
    pieces = list(chat)
    assert pieces[0].choices[0].delta.role == "assistant"
    assert pieces[-1].choices[0].finish_reason == "length"


def _sse_texts(server: str, body: dict) -> tuple[list[str], dict, httpx.Headers]:
    """The streamed text pieces (one SSE event each), the usage event, the headers."""
    pieces: list[str] = []
    usage: dict = {}
    with httpx.stream("POST", f"{server}/v1/completions", timeout=60,
                      json={**body, "stream": True, "stream_options": {"include_usage": True}},
                      headers={"x-costroute-pin-backend": "fast"}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                if event["choices"]:
                    pieces.append(event["choices"][0]["text"])
                if event.get("usage"):
                    usage = event["usage"]
        return pieces, usage, r.headers


def test_batched_streaming_gives_the_engines_tokens_in_order_with_stop_strings(
        server: str, tiny_model_dir: Path) -> None:
    """The replica sends its tokens to the ingress in batches (stream_interval_ms): the client
    still gets one event per engine chunk, in order, the same text and usage as the engine
    in-process, with and without a stop string."""
    import asyncio

    from backends.interface import GenerateRequest, SamplingParams
    from backends.registry import make_engine

    prompt = [17, 230, 41, 9, 77]

    async def in_process(stop: tuple[str, ...]) -> tuple[list[str], int]:
        engine = make_engine("onnxruntime", {"model": str(tiny_model_dir), "max_num_seqs": 4})
        await engine.start()
        try:
            request = GenerateRequest("ref", prompt_token_ids=tuple(prompt), sampling=SamplingParams(
                max_tokens=60, ignore_eos=True, stop=stop))
            chunks = [c async for c in engine.generate(request)]
        finally:
            await engine.shutdown()
        assert chunks[-1].usage is not None
        return [c.text for c in chunks if c.text], chunks[-1].usage.completion_tokens

    body = {"prompt": prompt, "max_tokens": 60, "temperature": 0, "ignore_eos": True}
    expected, expected_tokens = asyncio.run(in_process(()))
    pieces, usage, headers = _sse_texts(server, body)
    assert pieces[:-1] == expected or pieces == expected  # the last event may carry no text
    assert usage["completion_tokens"] == expected_tokens == 60
    assert float(headers["x-costroute-overhead-ms"]) >= 0
    whole = "".join(expected)
    stop = whole[len(whole) // 2: len(whole) // 2 + 3]
    expected, expected_tokens = asyncio.run(in_process((stop,)))
    pieces, usage, _ = _sse_texts(server, {**body, "stop": [stop]})
    assert "".join(pieces) == "".join(expected) == whole[: whole.index(stop)]
    assert usage["completion_tokens"] == expected_tokens < 60
    full = _post(server, {**body, "stop": [stop]}, {"x-costroute-pin-backend": "fast"})
    assert full.json()["choices"][0]["text"] == "".join(expected)
    assert full.json()["usage"]["completion_tokens"] == expected_tokens
    assert float(full.headers["x-costroute-overhead-ms"]) > 0


def _post(server: str, body: dict, headers: dict | None = None, path: str = "/v1/completions"):  # type: ignore[no-untyped-def]
    return httpx.post(f"{server}{path}", json=body, headers=headers or {}, timeout=60)


def test_tight_ttft_goes_fast_and_loose_e2e_goes_cheap(server: str) -> None:
    body = {"prompt": "The cost of", "max_tokens": 8, "temperature": 0, "ignore_eos": True}
    tight = _post(server, {**body, "slo_class": "interactive"})
    assert tight.status_code == 200
    assert tight.headers["x-costroute-backend"] == "fast"
    assert float(tight.headers["x-costroute-predicted-ttft-ms"]) <= 12
    loose = _post(server, body, {"x-slo-e2e-ms": "120000"})
    assert loose.headers["x-costroute-backend"] == "cheap"
    assert float(loose.headers["x-costroute-cost-usd"]) < float(tight.headers["x-costroute-cost-usd"])
    assert "x-costroute-slo-risk" not in loose.headers
    risky = _post(server, {**body, "slo": {"ttft_ms": 0.001}})
    assert risky.status_code == 200 and risky.headers["x-costroute-slo-risk"] == "true"
    assert risky.headers["x-costroute-backend"] == "fast"


def test_a_request_can_pin_its_backend(server: str) -> None:
    body = {"model": "costroute-llama-tiny", "prompt": "Hi", "max_tokens": 2}
    for backend in ("fast", "cheap"):  # whatever the policy would choose
        r = httpx.post(f"{server}/v1/completions", json=body, timeout=60,
                       headers={"x-costroute-pin-backend": backend, "x-slo-ttft-ms": "25"})
        assert r.status_code == 200 and r.headers["x-costroute-backend"] == backend
    r = httpx.post(f"{server}/v1/completions", json=body, timeout=60,
                   headers={"x-costroute-pin-backend": "nope"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "x-costroute-pin-backend"


def test_a_plans_routing_table_splits_the_traffic_as_planned(server: str) -> None:
    """Under the planned app (fleet config with the routing table), a short closed-loop load
    (4 workers, 20 requests of the planned bucket) goes 1/4 fast, 3/4 cheap: the smooth
    weighted round robin is exact over the sequence of decisions, whatever the timing."""
    from concurrent.futures import ThreadPoolExecutor

    body = {"prompt": "Plan the fleet", "max_tokens": 4, "ignore_eos": True}
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: _post(server, body, path="/planned/v1/completions"),
                                range(20)))
    assert all(r.status_code == 200 for r in replies)
    backends = [r.headers["x-costroute-backend"] for r in replies]
    assert (backends.count("fast"), backends.count("cheap")) == (5, 15)
    # without the table the same fleet sends all of them to the cheapest
    alone = [_post(server, body).headers["x-costroute-backend"] for _ in range(4)]
    assert set(alone) == {"cheap"}


def test_reject_fallback_gives_429(server: str) -> None:
    r = _post(server, {"prompt": "x", "max_tokens": 4, "slo": {"ttft_ms": 0.001}},
              path="/reject/v1/completions")
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert "SLO" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "body, headers, status, param",
    [
        (b"{not json", None, 400, None),
        ({"prompt": "x", "max_tokens": "ten"}, None, 400, "max_tokens"),
        ({"prompt": "x", "model": "gpt-9"}, None, 404, "model"),
        ({"prompt": "x", "slo_class": "platinum"}, None, 400, "slo_class"),
        ({"prompt": "x", "slo": {"ttft_ms": -5}}, None, 400, "slo.ttft_ms"),
        ({"prompt": "x"}, {"x-slo-e2e-ms": "soon"}, 400, "x-slo-e2e-ms"),
        ({"prompt": "x", "max_tokens": 0}, None, 400, "max_tokens"),
        ({"prompt": "x", "max_tokens": 5000}, None, 400, "max_tokens"),
        ({"prompt": "word " * 3000, "max_tokens": 4}, None, 400, "prompt"),
        ({"prompt": [5, 999999], "max_tokens": 4}, None, 400, "prompt"),
        ({"prompt": ""}, None, 400, "prompt"),
    ],
)
def test_bad_input_gets_its_4xx_and_the_server_keeps_serving(server, body, headers, status, param):  # type: ignore[no-untyped-def]
    if isinstance(body, bytes):
        r = httpx.post(f"{server}/v1/completions", content=body,
                       headers={"content-type": "application/json"}, timeout=30)
    else:
        r = _post(server, body, headers)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    ok = _post(server, {"prompt": "still", "max_tokens": 2})
    assert ok.status_code == 200


def test_client_disconnect_aborts_in_the_engine(server: str) -> None:
    body = {"prompt": "x", "max_tokens": 1500, "stream": True, "ignore_eos": True,
            "slo_class": "interactive"}
    with httpx.stream("POST", f"{server}/v1/completions", json=body, timeout=30) as r:
        events = 0
        for line in r.iter_lines():
            if line.startswith("data: "):
                events += 1
                if events == 5:
                    break  # leave mid-stream: past the first batch, more tokens on the way
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{server}/metrics").text
        if 'costroute_inflight{backend="fast"} 0.0' in metrics:
            break
        time.sleep(0.2)
    assert 'costroute_inflight{backend="fast"} 0.0' in metrics
    assert 'costroute_requests_total{backend="fast",outcome="aborted"}' in metrics


def test_metrics_expose_the_series(server: str) -> None:
    text = httpx.get(f"{server}/metrics").text
    for name in ("costroute_requests_total", "costroute_ttft_ms_bucket", "costroute_tpot_ms_bucket",
                 "costroute_overhead_ms_bucket",
                 "costroute_e2e_ms_bucket", "costroute_slo_total", "costroute_expected_cost_usd_total",
                 "costroute_prediction_error_ratio_bucket", "costroute_inflight"):
        assert name in text, name
    assert json.loads(httpx.get(f"{server}/health").text)["status"] == "ok"


def test_the_profiler_drives_any_openai_server_over_http(server: str) -> None:
    import asyncio

    from profiles.targets import HttpTarget

    async def run() -> object:
        target = HttpTarget(server, "costroute-llama-tiny", {"name": "openai-http"})
        try:
            return await target.run([17] * 20, 6)
        finally:
            await target.aclose()

    timing = asyncio.run(run())
    assert timing.error is None  # type: ignore[attr-defined]
    assert timing.completion_tokens == 6 and timing.prompt_tokens == 20  # type: ignore[attr-defined]
    assert 0 < timing.ttft_ms <= timing.e2e_ms  # type: ignore[attr-defined]
