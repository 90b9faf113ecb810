"""The cost model (pure): replica prices, and what one request costs on a backend.

    expected cost of a request (USD) = usd_per_hour / 3600 x replica seconds it uses
    replica seconds it uses          = prefill time / requests prefilled with it
                                     + sum over its decode steps of step time / sequences in the step

The latency model computes the replica time (`Prediction.replica_ms`), walking the batch the
request joins, so the step times include the slowdown its own presence causes. A replica
shared by 8 sequences charges each an eighth of every step: batching makes tokens cheaper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.errors import ConfigError


@dataclass(frozen=True)
class Price:
    usd_per_hour: float  # per replica (one accelerator, or whatever one replica holds)
    source: str  # where the price comes from
    date: str  # when it was read (YYYY-MM or YYYY-MM-DD)
    illustrative: bool = False  # made up for a demo, not a market price


def request_cost_usd(replica_ms: float, usd_per_hour: float) -> float:
    """The expected cost of a request that uses `replica_ms` of a replica priced per hour."""
    return usd_per_hour * replica_ms / 3_600_000.0


def provisioned_cost_usd(replicas: int, usd_per_hour: float, wall_s: float) -> float:
    """What a fleet's replicas cost for a span of wall time, used or idle."""
    return replicas * usd_per_hour * wall_s / 3600.0


def load_cost_table(path: str | Path) -> dict[str, Price]:
    """Read a YAML cost table: `accelerators: {label: {usd_per_hour, source, date}}`."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"cost table {path} does not exist", "path") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"cost table {path} is not valid YAML: {exc}", "path") from None
    return parse_cost_table(raw, str(path))


def parse_cost_table(raw: Any, where: str = "cost table") -> dict[str, Price]:
    if not isinstance(raw, dict) or not isinstance(raw.get("accelerators"), dict):
        raise ConfigError(f"{where}: expected a mapping `accelerators: {{label: ...}}`",
                          "accelerators")
    prices: dict[str, Price] = {}
    for label, entry in raw["accelerators"].items():
        field = f"accelerators.{label}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: {field} must be a mapping", field)
        usd = entry.get("usd_per_hour")
        if not isinstance(usd, (int, float)) or isinstance(usd, bool) or not math.isfinite(usd) \
                or usd < 0:
            raise ConfigError(
                f"{where}: {field}.usd_per_hour must be a number >= 0, got {usd!r}",
                f"{field}.usd_per_hour",
            )
        for key in ("source", "date"):
            if not isinstance(entry.get(key), (str)) or not str(entry[key]).strip():
                raise ConfigError(
                    f"{where}: {field}.{key} is required (say where the price comes from and when)",
                    f"{field}.{key}",
                )
        prices[str(label)] = Price(float(usd), entry["source"], str(entry["date"]),
                                   bool(entry.get("illustrative", False)))
    return prices
