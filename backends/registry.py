"""The one registry of engine kinds: CLI choices, config validation and docs read it.

Engines are imported lazily: naming a kind costs nothing until an engine is built.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from backends.errors import ConfigError

# kind -> (module, engine class, options class)
ENGINE_KINDS: dict[str, tuple[str, str, str]] = {
    "onnxruntime": ("backends.onnxruntime_engine", "OnnxRuntimeEngine", "OnnxRuntimeOptions"),
    "vllm": ("backends.vllm_engine", "VllmEngine", "VllmOptions"),
}


def make_engine(kind: str, options: dict[str, Any] | None = None) -> Any:
    """Build an engine of `kind` from a plain options mapping (as read from YAML or a CLI)."""
    module_name, engine_name, options_name = _entry(kind)
    module = importlib.import_module(module_name)
    cls = getattr(module, options_name)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options or {}) - known)
    if unknown:
        raise ConfigError(
            f"unknown {kind} engine option(s) {unknown}; known: {sorted(known)}", unknown[0]
        )
    return getattr(module, engine_name)(cls(**(options or {})))


def parse_option_values(pairs: list[str]) -> dict[str, Any]:
    """`key=value` strings from a command line -> typed values (int, float, bool, str)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"engine option {pair!r} must look like key=value", "engine_option")
        key, value = pair.split("=", 1)
        out[key.strip()] = _typed(value.strip())
    return out


def _typed(value: str) -> Any:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _entry(kind: str) -> tuple[str, str, str]:
    try:
        return ENGINE_KINDS[kind]
    except KeyError:
        raise ConfigError(
            f"unknown engine {kind!r}; choose one of {sorted(ENGINE_KINDS)}", "engine"
        ) from None
