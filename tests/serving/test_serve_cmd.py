"""`costroute serve`'s pieces without a cluster: the serving-path settings, the port check and
the config fields that shape the path."""

from __future__ import annotations

import socket

import pytest

from backends.errors import ConfigError
from serving.config import load_fleet_config, parse_fleet_config
from serving.serve_cmd import (
    check_port_free,
    check_profiles,
    direct_path_env,
    local_cluster_env,
)

_BACKEND = {"id": "b", "engine": "onnxruntime", "accelerator": "cpu", "usd_per_hour": 0.1,
            "profile": "p.json"}


def test_direct_path_puts_the_ingress_on_the_configured_port() -> None:
    env = direct_path_env(8123)
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] == "8123"  # lowest free port first
    assert int(env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"]) > 8123
    assert env["RAY_SERVE_LOG_TO_STDERR"] == "1"  # replica errors stay visible


def test_the_local_cluster_runs_its_workers_at_normal_priority() -> None:
    assert local_cluster_env(8000, direct=False) == {"RAY_worker_niceness": "0"}
    both = local_cluster_env(8000, direct=True)
    assert both["RAY_worker_niceness"] == "0" and both["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"


def test_a_busy_port_is_refused_up_front_naming_it() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}") as err:
            check_port_free("127.0.0.1", port)
        assert err.value.field == "port"
    check_port_free("127.0.0.1", port)  # free again once closed


def test_serving_path_and_stream_interval_are_validated_naming_the_field() -> None:
    config = parse_fleet_config({"backends": [_BACKEND]})
    assert config.serving_path == "direct" and config.backends[0].stream_interval_ms == 50
    with pytest.raises(ConfigError, match="serving_path"):
        parse_fleet_config({"backends": [_BACKEND], "serving_path": "carrier-pigeon"})
    with pytest.raises(ConfigError, match=r"backends\.0\.stream_interval_ms") as err:
        parse_fleet_config({"backends": [{**_BACKEND, "stream_interval_ms": -1}]})
    assert "-1" in str(err.value)


def test_a_missing_profile_table_is_refused_up_front_naming_the_backend(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "fleet.yaml").write_text(
        "backends:\n"
        "  - {id: here, engine: onnxruntime, accelerator: cpu, usd_per_hour: 0.1, "
        "profile: here.json}\n"
        "  - {id: gone, engine: onnxruntime, accelerator: npu, usd_per_hour: 0.1, "
        "profile: gone.json}\n")
    (tmp_path / "here.json").write_text("{}")
    config = load_fleet_config(tmp_path / "fleet.yaml")
    with pytest.raises(ConfigError, match="'gone'.*gone.json does not exist") as err:
        check_profiles(config)
    assert err.value.field == "backends.1.profile" and "--accelerator npu" in str(err.value)
    check_profiles(config.model_copy(update={"backends": config.backends[:1]}))
