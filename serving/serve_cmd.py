"""`costroute serve`: start (or attach to) a Ray cluster and run the fleet's application."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from backends.errors import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the fleet: OpenAI-compatible API with cost-aware SLO routing (Ray Serve)",
        description=(
            "Start a local Ray cluster (or attach to one with --address), deploy one Ray Serve "
            "deployment per backend of the fleet config plus the routing ingress, and serve "
            "the OpenAI-compatible API until Ctrl-C or SIGTERM."),
    )
    p.add_argument("--config", default="deploy/local.yaml",
                   help="fleet config YAML (default: deploy/local.yaml, the default CPU fleet)")
    p.add_argument("--address", default=None,
                   help="attach to an existing Ray cluster (e.g. auto, ray://head:10001) "
                        "instead of starting a local one")
    p.add_argument("--host", default=None, help="override the config's host")
    p.add_argument("--port", type=int, default=None, help="override the config's port")
    p.add_argument("--backend", action="append", default=None, metavar="ID",
                   help="serve only this backend of the config (repeatable), e.g. to load-test "
                        "one accelerator alone")
    p.add_argument("--num-cpus", type=float, default=None,
                   help="CPUs of the local Ray cluster (default: all)")
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from serving.config import load_fleet_config, select_backends

    config = load_fleet_config(args.config)
    updates = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if updates:
        config = config.model_copy(update=updates)
    if args.backend:
        config = select_backends(config, args.backend)
    _check_models(config)
    check_profiles(config)
    check_port_free(config.host, config.port)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # The cluster started here inherits this environment: set it before Ray is imported.
    direct = config.serving_path == "direct" and not args.address
    if not args.address:
        for name, value in local_cluster_env(config.port, direct).items():
            os.environ.setdefault(name, value)
    import ray
    from ray import serve

    from serving.app import build_app

    started = time.monotonic()
    if args.address:
        ray.init(address=args.address, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        # direct: the ingress replica serves `port` itself; Ray's proxy idles on a free port
        serve.start(http_options={"host": config.host,
                                  "port": _free_port(config.host) if direct else config.port})
        print(f"costroute: starting {len(config.backends)} backends ...", file=sys.stderr)
        serve.run(build_app(config), name="costroute", route_prefix="/")
        print(f"costroute: serving {config.served_model_name} on "
              f"http://{config.host}:{config.port}/v1 (ready in {time.monotonic() - started:.0f}s; "
              f"policy {config.policy.name}, fallback {config.fallback})")
        for b in config.backends:
            print(f"  {b.id:<24} {b.engine:<12} {b.accelerator:<10} ${b.usd_per_hour:.3f}/h  "
                  f"replicas {b.replicas if b.autoscaling is None else 'auto'}")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
        print("costroute: shutting down", file=sys.stderr)
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    return 0


def local_cluster_env(port: int, direct: bool) -> dict[str, str]:
    """The environment of the local Ray cluster `costroute serve` starts (a variable already
    set wins). Ray runs its workers at nice 15 so that its own daemons keep priority; here
    the workers are the service (the engines, the ingress), so they run at the normal
    priority, like `vllm serve` does: at nice 15 any other program on the machine, a load
    generator included, preempts the engine (measured: ~0.77x the throughput at 32 streams)."""
    env = {"RAY_worker_niceness": "0"}
    if direct:
        env.update(direct_path_env(port))
    return env


def direct_path_env(port: int) -> dict[str, str]:
    """Ray Serve's throughput-optimized mode, for the local cluster `costroute serve` starts:
    the ingress replica runs its own HTTP server (direct ingress, on `port`: the lowest free
    port of the range Ray is given), deployments call each other over gRPC, and user code and
    the handle's router run on each replica's main event loop instead of separate threads.
    Measured by benchmarks/bench_serving_path.py. Replica logs still go to the terminal (the
    mode alone turns that off); the deployments themselves log no access lines."""
    return {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_LOG_TO_STDERR": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(min(port + 15, 65535)),
    }


def check_port_free(host: str, port: int) -> None:
    """A ConfigError naming the port when something already listens there."""
    import socket


    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot serve on {host}:{port}: {exc.strerror}; stop what uses "
                              "it or choose another --port", "port") from None


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_profiles(config: Any) -> None:
    """Every backend's profile table exists: refused here, naming the field, rather than by
    an ingress replica that crashes in a loop inside Ray until the deploy times out."""
    for i, b in enumerate(config.backends):
        if not Path(b.profile).is_file():
            raise ConfigError(
                f"backend {b.id!r}: profile table {b.profile} does not exist; measure it on "
                f"that hardware (`costroute profile measure ... --accelerator "
                f"{b.accelerator}`) or estimate one (`costroute profile estimate`)",
                f"backends.{i}.profile")


def _check_models(config: Any) -> None:
    from backends.model import resolve_model

    for b in config.backends:
        resolve_model(str(b.engine_options.get("model", "tiny")))
