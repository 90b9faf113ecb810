"""Helpers of the tests that run the real app on a local Ray cluster: a free port, a profile
slowed by the ONNX Runtime engine's fault knob, and the cluster with its applications."""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from profiles.table import Surface, load_profile
from serving.config import parse_fleet_config

MEASURED = Path(__file__).parents[2] / "profiles" / "tables" / "cpu-onnxruntime.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def slowed_profile(path: Path, backend_id: str, delay_ms: float, by: str,
                   max_num_seqs: int | None = None) -> None:
    """The measured ONNX Runtime table with every step `delay_ms` longer (what its
    step_delay_ms knob adds), as `backend_id`'s profile at `path`; `by`: the test module."""
    t = load_profile(MEASURED)

    def bump(s: Surface) -> Surface:
        return Surface(s.batch, s.tokens, tuple(tuple(v + delay_ms for v in r) for r in s.ms))

    capacity = t.capacity if max_num_seqs is None else {**t.capacity, "max_num_seqs": max_num_seqs}
    dataclasses.replace(t, backend_id=backend_id, prefill=bump(t.prefill), decode=bump(t.decode),
                        capacity=capacity,
                        command=t.command + f" (+{delay_ms} ms per step: {by})").save(path)


def wait_for(ok: Any, timeout_s: float) -> bool:
    """Poll `ok()` every 0.5 s until it is true or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ok():
            return True
        time.sleep(0.5)
    return False


def health(base: str) -> dict[str, Any]:
    try:
        return httpx.get(f"{base}/health", timeout=10).json()  # type: ignore[no-any-return]
    except (httpx.HTTPError, ValueError):
        return {}


def serve_fleets(tmp_path_factory: pytest.TempPathFactory, port: int,
                 apps: list[tuple[dict[str, Any], str, str]]) -> Iterator[str]:
    """A local Ray cluster (2 CPUs) serving each (fleet config, app name, route prefix) on
    `port`; yields the base URL once /health says ok, and shuts everything down after."""
    import ray
    from ray import serve

    from serving.app import build_app

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
             _temp_dir=str(tmp_path_factory.mktemp("ray")))
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        for fleet, name, prefix in apps:
            serve.run(build_app(parse_fleet_config(fleet)), name=name, route_prefix=prefix)
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: health(base).get("status") == "ok", 120)
        yield base
    finally:
        serve.shutdown()
        ray.shutdown()
