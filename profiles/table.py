"""Profile tables: versioned JSON describing what a backend measured (or was estimated) to do.

The schema is documented in profiles/README.md. `load_profile` rejects an unknown schema
version, a malformed table (naming the field) and a table for another model checksum
unless `force=True`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from backends.errors import CostrouteError

SCHEMA_VERSION = 1


class ProfileError(CostrouteError, ValueError):
    """A profile table cannot be used. `field` names the offending field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Surface:
    """Milliseconds measured on a grid: `ms[i][j]` at (`batch[i]`, `tokens[j]`)."""

    batch: tuple[int, ...]
    tokens: tuple[int, ...]
    ms: tuple[tuple[float, ...], ...]
    spread_ms: tuple[tuple[float, ...], ...] | None = None  # p90 - p10 of the repetitions


@dataclass(frozen=True)
class ProfileTable:
    backend_id: str
    kind: Literal["measured", "estimated"]
    engine: dict[str, Any]  # name, version, execution_provider, options
    accelerator: str
    hardware: dict[str, Any]  # cpu, cores, memory_gib, gpu
    model: dict[str, Any]  # id, checksum, dtype, num_parameters
    created: str  # ISO 8601, UTC
    command: str
    prefill: Surface  # batch x prompt tokens -> time of one prefill run
    decode: Surface  # running batch x context tokens -> time of one decode step
    capacity: dict[str, int]  # max_num_seqs, kv_tokens
    notes: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    # running batch x prompt tokens -> the prefill time of ONE request that joins that many
    # decoding sequences (its TTFT less half a decode step). Optional: without it, joining
    # costs what prefill(1, tokens) costs on an idle backend.
    join: Surface | None = None
    # A lone request's TTFT less the median of its cell, every batch-1 prefill sample (ms,
    # sorted): how much the serving path varies from one request to the next. Optional.
    path_jitter_ms: tuple[float, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def save(self, path: Path) -> None:
        save_json(path, self.to_json())


def save_json(path: Path, text: str) -> None:
    """Write a table's JSON text, never leaving a half-written table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def read_json(path: Path, what: str) -> Any:
    """A table's JSON, or a ProfileError naming `what` and the path."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{what} {path} does not exist", "path") from None
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{what} {path} is not valid JSON: {exc}", "path") from None


def load_profile(
    path: str | Path, model_checksum: str | None = None, force: bool = False
) -> ProfileTable:
    path = Path(path)
    table = parse_profile(read_json(path, "profile"), where=str(path))
    got = table.model.get("checksum")
    if model_checksum is not None and got != model_checksum and not force:
        raise ProfileError(
            f"profile {path} was measured on model checksum {got!r}, not {model_checksum!r}; "
            "re-profile this model or load with force=True",
            "model.checksum",
        )
    return table


def parse_profile(raw: Any, where: str = "profile") -> ProfileTable:
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: a profile is a JSON object", "")
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ProfileError(
            f"{where}: schema_version {version!r} is not supported (this costroute reads "
            f"version {SCHEMA_VERSION}); re-run `costroute profile` to write a new table",
            "schema_version",
        )
    strings = ("backend_id", "accelerator", "created", "command")
    for name in strings:
        if not isinstance(raw.get(name), str) or not raw[name]:
            raise ProfileError(f"{where}: {name} must be a non-empty string", name)
    if raw.get("kind") not in ("measured", "estimated"):
        raise ProfileError(
            f"{where}: kind must be 'measured' or 'estimated', got {raw.get('kind')!r}", "kind"
        )
    for name in ("engine", "hardware", "model", "capacity"):
        if not isinstance(raw.get(name), dict):
            raise ProfileError(f"{where}: {name} must be an object", name)
    if not isinstance(raw["model"].get("checksum"), str):
        raise ProfileError(f"{where}: model.checksum must be a string", "model.checksum")
    for name in ("max_num_seqs", "kv_tokens"):
        value = raw["capacity"].get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ProfileError(
                f"{where}: capacity.{name} must be a positive integer, got {value!r}",
                f"capacity.{name}",
            )
    return ProfileTable(
        backend_id=raw["backend_id"],
        kind=raw["kind"],
        engine=raw["engine"],
        accelerator=raw["accelerator"],
        hardware=raw["hardware"],
        model=raw["model"],
        created=raw["created"],
        command=raw["command"],
        prefill=_surface(raw.get("prefill"), f"{where}: prefill", "prefill"),
        decode=_surface(raw.get("decode"), f"{where}: decode", "decode"),
        capacity={k: int(v) for k, v in raw["capacity"].items()},
        notes=raw.get("notes") or {},
        schema_version=version,
        join=(_surface(raw["join"], f"{where}: join", "join")
              if raw.get("join") is not None else None),
        path_jitter_ms=finite_numbers(raw.get("path_jitter_ms"), f"{where}: path_jitter_ms",
                                      "path_jitter_ms"),
    )


def finite_numbers(raw: Any, where: str, name: str) -> tuple[float, ...]:
    """A JSON list of finite numbers, sorted (None: empty), or a ProfileError naming `name`."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in raw):
        raise ProfileError(f"{where} must be a list of finite numbers", name)
    return tuple(sorted(float(v) for v in raw))


def _surface(raw: Any, where: str, name: str) -> Surface:
    if not isinstance(raw, dict):
        raise ProfileError(f"{where} must be an object with batch, tokens and ms", name)
    axes = {}
    for axis in ("batch", "tokens"):
        values = raw.get(axis)
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)
            or any(b <= a for a, b in zip(values, values[1:]))
        ):
            raise ProfileError(
                f"{where}.{axis} must be a non-empty increasing list of positive integers",
                f"{name}.{axis}",
            )
        axes[axis] = tuple(values)
    ms = raw.get("ms")
    shape = (len(axes["batch"]), len(axes["tokens"]))
    if (
        not isinstance(ms, list)
        or len(ms) != shape[0]
        or not all(isinstance(row, list) and len(row) == shape[1] for row in ms)
        or not all(_positive(v) for row in ms for v in row)
    ):
        raise ProfileError(
            f"{where}.ms must be a {shape[0]}x{shape[1]} table of positive numbers "
            "(rows: batch, columns: tokens)",
            f"{name}.ms",
        )
    spread = raw.get("spread_ms")
    return Surface(
        batch=axes["batch"],
        tokens=axes["tokens"],
        ms=tuple(tuple(float(v) for v in row) for row in ms),
        spread_ms=tuple(tuple(float(v) for v in row) for row in spread) if spread else None,
    )


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
