"""Ray Serve's side of the cost-aware autoscaler (serving/scaling.py): how a decision taken in
the ingress becomes replicas.

The ingress sees every request, so it runs the policy (`Router.scale`); Ray Serve's
controller adds and removes the replicas. Between them, two things Ray 2.60 offers:

- a custom autoscaling policy per deployment (`autoscaling_config.policy.policy_function`,
  called by the controller on its loop): `follow_target` below returns the replica count the
  ingress last published for that deployment, within the deployment's min/max. Ray's
  upscale/downscale delays are set to 0 for these deployments: the policy holds its own.
- Ray's cluster key-value store (`ray.experimental.internal_kv`), where the ingress
  publishes the targets (`publish`): it reaches the controller even for a deployment at zero
  replicas, which has no replica to report a metric through.

The ingress reads the replicas back from `serve.status()` (`replica_counts`): running,
starting and stopping per deployment, so the router spreads load over the replicas that
really serve and treats a deployment without one as unhealthy. A replica Ray stops is
drained first: it gets no new requests and its running ones may finish for the deployment's
graceful_shutdown_timeout_s (`drain_timeout_s` in the fleet config).

This module is pickled by value into the controller (Ray does that with a policy's module):
it imports nothing of the project, and Ray only inside its functions.
"""

from __future__ import annotations

import json
from typing import Any

NAMESPACE = "costroute"
POLICY_FUNCTION = "serving.ray_scaling:follow_target"


def target_key(app_name: str, deployment_name: str) -> str:
    return f"target/{app_name}/{deployment_name}"


def publish(app_name: str, targets: dict[str, int]) -> None:
    """Deployment name -> replicas, for `follow_target` (blocking: a call to the GCS)."""
    from ray.experimental.internal_kv import _internal_kv_put

    for deployment, replicas in targets.items():
        _internal_kv_put(target_key(app_name, deployment),
                         json.dumps({"replicas": int(replicas)}).encode(), overwrite=True,
                         namespace=NAMESPACE)


def follow_target(ctx: Any) -> tuple[int, dict[str, Any]]:
    """Ray Serve custom autoscaling policy: the published target (Ray applies the
    deployment's min/max); the current target while none is published."""
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(target_key(ctx.app_name, ctx.deployment_name), namespace=NAMESPACE)
    if raw is None:
        return ctx.target_num_replicas, {}
    return int(json.loads(raw)["replicas"]), {}


def autoscaling_config(min_replicas: int, max_replicas: int) -> dict[str, Any]:
    """A deployment's autoscaling_config that follows the published targets."""
    return {"min_replicas": min_replicas, "max_replicas": max_replicas,
            "initial_replicas": min_replicas, "upscale_delay_s": 0.0,
            "downscale_delay_s": 0.0, "downscale_to_zero_delay_s": 0.0,
            "policy": {"policy_function": POLICY_FUNCTION}}


def replica_counts(app_name: str) -> dict[str, tuple[int, int, int]]:
    """Deployment name -> (starting, running, stopping) replicas (blocking: a controller
    call; from an async replica, run it in a thread)."""
    from ray import serve

    app = serve.status().applications.get(app_name)
    if app is None:
        return {}
    out = {}
    for name, d in app.deployments.items():
        states = {str(getattr(k, "value", k)): n for k, n in d.replica_states.items()}
        starting = sum(states.get(s, 0) for s in ("STARTING", "UPDATING", "RECOVERING"))
        out[name] = (starting, states.get("RUNNING", 0), states.get("STOPPING", 0))
    return out
