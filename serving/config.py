"""Fleet configuration: pydantic models loaded straight from YAML.

Every field has a description and limits; errors name the field and quote the value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from backends.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SloSpec(_Strict):
    """Latency targets; any subset. A request meets its SLO when it meets every target given."""

    ttft_ms: float | None = Field(None, gt=0, description="time to first token, ms")
    tpot_ms: float | None = Field(None, gt=0, description="time per output token after the first, ms")
    e2e_ms: float | None = Field(None, gt=0, description="request sent to last token, ms")

    def is_empty(self) -> bool:
        return self.ttft_ms is None and self.tpot_ms is None and self.e2e_ms is None


class AutoscalingSpec(_Strict):
    """A backend whose replica count follows the load: by Ray Serve's default policy
    (ongoing requests per replica over target_ongoing_requests), or by the fleet's
    `autoscaler` (cost-aware) when it has one."""

    min_replicas: int = Field(1, ge=0, description="fewest replicas (0: may scale to zero)")
    max_replicas: int = Field(1, ge=1, description="most replicas")
    target_ongoing_requests: float = Field(16, gt=0, description="Ray Serve's default policy: "
                                           "requests in flight per replica to scale to")
    startup_s: float = Field(60.0, ge=0, description="cost-aware: seconds from ordering a "
                             "replica to its serving (engine start-up), forecast ahead")
    drain_timeout_s: float = Field(300.0, ge=0, description="a replica being removed takes no "
                                   "new requests and gets this long to finish its running ones")

    @model_validator(mode="after")
    def _range(self) -> AutoscalingSpec:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) < min_replicas ({self.min_replicas})"
            )
        return self


class RayActorOptions(_Strict):
    """Ray resources one replica holds: num_gpus for NVIDIA/AMD, resources {NPU: 1} for
    Ascend, {HPU: 1} for Gaudi, ... On a 2-core machine keep num_cpus fractional or 0."""

    num_cpus: float = Field(0, ge=0)
    num_gpus: float = Field(0, ge=0)
    resources: dict[str, float] = Field(default_factory=dict)
    runtime_env: dict[str, Any] = Field(default_factory=dict)


class BackendSpec(_Strict):
    id: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.-]+$",
                    description="backend id (letters, digits, . _ -)")
    engine: str = Field(..., description="engine kind (backends.registry.ENGINE_KINDS)")
    engine_options: dict[str, Any] = Field(default_factory=dict,
                                           description="options of that engine")
    accelerator: str = Field(..., min_length=1, description="accelerator label, e.g. cpu, nvidia-h100")
    usd_per_hour: float = Field(..., ge=0, description="price of one replica per hour, USD")
    price_source: str = Field("", description="where the price comes from")
    profile: str = Field(..., description="path of the backend's profile table (JSON)")
    replicas: int = Field(1, ge=1, description="fixed replica count (ignored with autoscaling)")
    autoscaling: AutoscalingSpec | None = None
    ray_actor_options: RayActorOptions = Field(default_factory=lambda: RayActorOptions.model_validate({}))
    max_ongoing_requests: int = Field(256, ge=1,
                                      description="Ray Serve cap per replica (Ray's default 5 throttles)")
    stream_interval_ms: float = Field(
        50.0, ge=0, le=1000,
        description="the replica sends a request's ready tokens to the ingress as one message "
                    "at most this often (the first token and the end go at once); 0: each "
                    "wake-up sends what is ready")

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, v: str) -> str:
        from backends.registry import ENGINE_KINDS

        if v not in ENGINE_KINDS:
            raise ValueError(f"unknown engine {v!r}; choose one of {sorted(ENGINE_KINDS)}")
        return v


class AutoscalerSpec(_Strict):
    """The fleet's own autoscaler (serving/scaling.py): it scales the backends that have
    `autoscaling` (within their min/max); the others keep their fixed replicas."""

    policy: Literal["cost-aware"] = Field("cost-aware", description="the policy (cost-aware: "
                                          "the cheapest replicas that keep the SLOs)")
    interval_s: float = Field(10.0, gt=0, description="seconds between decisions")
    halflife_s: float = Field(30.0, gt=0, description="half-life of the smoothed request rates")
    trend_halflife_s: float = Field(60.0, gt=0, description="half-life of the rate's slope")
    noise_z: float = Field(2.0, ge=0, description="provision for the smoothed rate plus this "
                           "many standard deviations of its Poisson noise")
    margin: float = Field(0.05, ge=0, description="and x (1 + margin) beyond that")
    downscale_hold_s: float = Field(120.0, ge=0, description="a backend shrinks only after "
                                    "the policy wanted fewer of it this long")
    follow_plan: bool = Field(True, description="route by the split of the replicas' plan")


class PolicySpec(_Strict):
    name: str = Field("cost-slo", description="policy name (serving.policies registry) or import path")
    params: dict[str, Any] = Field(default_factory=dict, description="policy parameters")


class FleetConfig(_Strict):
    served_model_name: str = Field("costroute-llama-tiny", min_length=1,
                                   description="the model name clients send")
    host: str = Field("127.0.0.1")
    port: int = Field(8000, ge=1, le=65535)
    backends: list[BackendSpec] = Field(..., min_length=1)
    slo_classes: dict[str, SloSpec] = Field(default_factory=dict)
    default_slo_class: str | None = Field(None, description="class of requests that carry no SLO")
    policy: PolicySpec = Field(default_factory=lambda: PolicySpec.model_validate({}))
    autoscaler: AutoscalerSpec | None = Field(
        None, description="the fleet's own autoscaler; absent: Ray Serve's default policy "
                          "for each backend with `autoscaling`")
    fallback: Literal["fastest", "reject"] = Field(
        "fastest", description="when no backend can meet the SLO: serve on the fastest and "
                               "flag it, or reject with 429")
    expected_output: Literal["max_tokens", "quantile"] = Field(
        "max_tokens", description="expected output length: max_tokens as a bound, or a "
                                  "running quantile of observed lengths")
    expected_output_quantile: float = Field(0.9, gt=0, lt=1)
    serving_path: Literal["direct", "proxy"] = Field(
        "direct", description="how `costroute serve` runs Ray Serve on the cluster it starts: "
                              "direct: clients reach the ingress replica's own HTTP server on "
                              "`port` and deployments talk over gRPC (Ray Serve's throughput-"
                              "optimized mode); proxy: Ray Serve's defaults, its HTTP proxy on "
                              "`port` in front of the ingress")

    @model_validator(mode="after")
    def _cross_checks(self) -> FleetConfig:
        ids = [b.id for b in self.backends]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"backend ids must be unique; repeated: {dupes}")
        if self.default_slo_class is not None and self.default_slo_class not in self.slo_classes:
            raise ValueError(
                f"default_slo_class {self.default_slo_class!r} is not one of the slo_classes "
                f"{sorted(self.slo_classes)}"
            )
        if self.autoscaler is not None and not any(b.autoscaling for b in self.backends):
            raise ValueError("autoscaler: no backend has `autoscaling` (min/max replicas) to "
                             "scale")
        table = self.policy.params.get("routing_table")
        if table is not None:
            from serving.policies.routing_table import RoutingTable

            unknown = sorted(RoutingTable.parse(table).backends() - set(ids))
            if unknown:
                raise ValueError(f"policy.params.routing_table names backends that are not in "
                                 f"the fleet: {unknown} (backends: {ids})")
        return self

    def resolve_paths(self, base: Path) -> FleetConfig:
        """Profile paths relative to `base` (the config file's folder) made absolute."""
        backends = []
        for b in self.backends:
            p = Path(b.profile)
            backends.append(b.model_copy(update={"profile": str(p if p.is_absolute() else base / p)}))
        return self.model_copy(update={"backends": backends})


def select_backends(config: FleetConfig, ids: list[str]) -> FleetConfig:
    """The fleet cut to `ids` (in config order): `--backend` of serve, loadtest and simulate."""
    known = [b.id for b in config.backends]
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ConfigError(f"--backend {unknown[0]!r} is not in the fleet config; its backends: "
                          f"{known}", "backend")
    return config.model_copy(update={"backends": [b for b in config.backends if b.id in ids]})


def read_yaml(path: str | Path, what: str, field: str) -> Any:
    """A YAML file's content; a missing or malformed file is a ConfigError naming `field`."""
    import yaml

    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist", field) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}", field) from None


def config_error(exc: ValidationError, where: str, show_value: bool = False) -> ConfigError:
    """pydantic's first error as a ConfigError that names the field (and the value)."""
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    message = f"{where}: {field or '(top level)'}: {str(first['msg']).removeprefix('Value error, ')}"
    if show_value:
        value = first.get("input")
        message += f" (got {repr(value) if not isinstance(value, dict) else '{...}'})"
    return ConfigError(message, field or None)


def load_fleet_config(path: str | Path) -> FleetConfig:
    raw = read_yaml(path, "fleet config", "config")
    return parse_fleet_config(raw, str(path)).resolve_paths(_project_root(Path(path)))


def parse_fleet_config(raw: Any, where: str = "fleet config") -> FleetConfig:
    try:
        return FleetConfig.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, where, show_value=True) from None


def _project_root(config_path: Path) -> Path:
    """Profile paths in configs are relative to the project root (the folder with deploy/)."""
    folder = config_path.resolve().parent
    return folder.parent if folder.name == "deploy" else folder
