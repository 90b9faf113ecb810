"""A routing table: the planner's split of each request bucket over the backends (pure data).

`costroute plan` writes it into the fleet config it emits, as the `cost-slo` policy's
`routing_table` parameter; the policy then sends each request to the backends its bucket was
planned on, in the planned proportions (serving/policies/cost_slo.py). One row per bucket:

    policy:
      name: cost-slo
      params:
        routing_table:
          - {slo_class: interactive, prompt_tokens: [0, 512], output_tokens: [0, 256],
             shares: {npu-x: 0.8, mi300x: 0.2}}
          - {slo_class: relaxed, prompt_tokens: [2048, null], output_tokens: [0, null],
             shares: {mi300x: 1.0}}

A request belongs to the first row whose class is its SLO class (null: requests without one)
and whose half-open ranges [low, high) hold its prompt length and its expected output length
(high null: no bound). Shares are relative weights (the planner writes fractions of 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from backends.errors import ConfigError

_FIELD = "policy.params.routing_table"


@dataclass(frozen=True)
class RoutingRow:
    slo_class: str | None
    prompt: tuple[float, float]  # [low, high)
    output: tuple[float, float]
    backends: tuple[str, ...]
    weights: tuple[float, ...]  # parallel to backends, each > 0

    def holds(self, slo_class: str | None, prompt_tokens: int, output_tokens: int) -> bool:
        return (slo_class == self.slo_class
                and self.prompt[0] <= prompt_tokens < self.prompt[1]
                and self.output[0] <= output_tokens < self.output[1])

    def label(self) -> str:
        return (f"{self.slo_class or 'no-slo'} p{_edge(self.prompt[0])}-{_edge(self.prompt[1])} "
                f"o{_edge(self.output[0])}-{_edge(self.output[1])}")


@dataclass(frozen=True)
class RoutingTable:
    rows: tuple[RoutingRow, ...]

    def match(self, slo_class: str | None, prompt_tokens: int, output_tokens: int) -> int:
        """The index of the request's row; -1 when no row holds it."""
        for i, row in enumerate(self.rows):
            if row.holds(slo_class, prompt_tokens, output_tokens):
                return i
        return -1

    def backends(self) -> set[str]:
        return {b for row in self.rows for b in row.backends}

    @staticmethod
    def parse(raw: Any) -> RoutingTable:
        """From the YAML/JSON form above; errors name the row and field."""
        if not isinstance(raw, list) or not raw:
            raise ConfigError(f"{_FIELD} must be a non-empty list of rows", _FIELD)
        return RoutingTable(tuple(_row(r, f"{_FIELD}[{i}]") for i, r in enumerate(raw)))

    def to_params(self) -> list[dict[str, Any]]:
        """The YAML/JSON form (what `parse` reads)."""
        return [{"slo_class": r.slo_class, "prompt_tokens": [_num(r.prompt[0]), _num(r.prompt[1])],
                 "output_tokens": [_num(r.output[0]), _num(r.output[1])],
                 "shares": {b: round(w, 6) for b, w in zip(r.backends, r.weights)}}
                for r in self.rows]


def _row(raw: Any, where: str) -> RoutingRow:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping", where)
    unknown = set(raw) - {"slo_class", "prompt_tokens", "output_tokens", "shares"}
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}", where)
    slo_class = raw.get("slo_class")
    if slo_class is not None and not isinstance(slo_class, str):
        raise ConfigError(f"{where}.slo_class must be a string or null", f"{where}.slo_class")
    shares = raw.get("shares")
    if not isinstance(shares, dict) or not shares:
        raise ConfigError(f"{where}.shares must map backend ids to weights", f"{where}.shares")
    for backend, w in shares.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0 or math.isinf(w):
            raise ConfigError(f"{where}.shares.{backend} must be a number >= 0 (got {w!r})",
                              f"{where}.shares.{backend}")
    kept = {str(b): float(w) for b, w in shares.items() if w > 0}
    if not kept:
        raise ConfigError(f"{where}.shares: at least one share must be > 0", f"{where}.shares")
    return RoutingRow(slo_class, _range(raw.get("prompt_tokens"), f"{where}.prompt_tokens"),
                      _range(raw.get("output_tokens"), f"{where}.output_tokens"),
                      tuple(kept), tuple(kept.values()))


def _range(raw: Any, where: str) -> tuple[float, float]:
    if raw is None:
        return 0.0, math.inf
    if (not isinstance(raw, (list, tuple)) or len(raw) != 2
            or not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                       for v in raw)):
        raise ConfigError(f"{where} must be [low, high] tokens (high null: no bound), got {raw!r}",
                          where)
    low = float(raw[0] or 0)
    high = math.inf if raw[1] is None else float(raw[1])
    if not 0 <= low < high:
        raise ConfigError(f"{where} must have 0 <= low < high, got {raw!r}", where)
    return low, high


def _num(x: float) -> int | None:
    return None if math.isinf(x) else int(x)


def _edge(x: float) -> str:
    return "inf" if math.isinf(x) else str(int(x))
