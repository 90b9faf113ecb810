"""Interference between backends that share a machine: how much slower a backend's steps run
while other backends on the same node are busy.

Backends of a small fleet often share cores (on our 2-core machines, all three default
backends and the Ray Serve proxy that streams their tokens do). A profile table is measured
with the neighbours idle, so it cannot say what a neighbour's work costs. An interference table
can: for each backend, each set of busy neighbours and what they are doing (prefilling, or
decoding and streaming tokens), the factor by which its prefill and its decode steps grow. The
simulator stretches a replica's work by that factor while those neighbours work
(loadtest/simulator.py); the live router learns the same slowdown through its online
correction.

What one measurement is (`measure`, profiles/interference_measure.py: it drives live servers;
this module is the pure table the simulator reads): the probe backend's decode step (the median gap between
the tokens of one request of 64 prompt tokens, 33 tokens out) and its prefill (TTFT of one
request of 256 prompt tokens, max_tokens=1), alternately with the neighbours idle and with
each neighbour busy with `streams` requests at a time, back to back: decoding (64 prompt
tokens, 128 out) or prefilling (512 prompt tokens, max_tokens=1). Factor = median busy / median
idle. The factor grows with how busy the neighbours are (on our 2-core machine one stream costs
~20-30% less than two), so each set is measured at several stream counts (`--background 1,2`)
and looked up at the neighbours' requests in flight (interpolated between the measured counts,
clamped at the ends). Neighbours without a row of their own (a set not measured, or doing
different things) are estimated from the single neighbours' rows: 1 + sum(f - 1).

The table is versioned JSON; `load_interference` names the field at fault.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from profiles.table import ProfileError, read_json, save_json

SCHEMA_VERSION = 2  # 2 added `streams` per row; version 1 tables still load
Kind = Literal["prefill", "decode"]  # what a backend does: its own op, or its neighbours'
KINDS: tuple[Kind, ...] = ("decode", "prefill")


@dataclass(frozen=True)
class Slowdown:
    backend: str
    busy: tuple[str, ...]  # the neighbours that were busy, sorted
    neighbour_op: Kind  # what they were doing
    prefill: float  # prefill time with them busy / with them idle
    decode: float  # decode step likewise
    ms: dict[str, float] = field(default_factory=dict)  # the medians the factors came from
    streams: int = 1  # requests each busy neighbour had in flight


@dataclass(frozen=True)
class InterferenceTable:
    node: str  # what the backends share, e.g. a host name
    rows: tuple[Slowdown, ...]
    created: str  # ISO 8601, UTC
    command: str
    hardware: dict[str, Any]
    notes: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    @functools.cached_property
    def _index(self) -> dict[tuple[str, tuple[str, ...], str], list[tuple[int, float, float]]]:
        """(backend, busy, neighbour op) -> [(streams, prefill, decode)], by streams."""
        index: dict[tuple[str, tuple[str, ...], str], list[tuple[int, float, float]]] = {}
        for r in self.rows:
            index.setdefault((r.backend, r.busy, r.neighbour_op), []).append(
                (r.streams, r.prefill, r.decode))
        for levels in index.values():
            levels.sort()
        return index

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(sorted({r.backend for r in self.rows} | {n for r in self.rows for n in r.busy}))

    @property
    def max_streams(self) -> int:
        """The most requests in flight a neighbour was measured with."""
        return max(r.streams for r in self.rows)

    def factor(self, backend: str, busy: Mapping[str, Kind], kind: Kind,
               streams: Mapping[str, int] | None = None) -> float:
        """How much slower `backend`'s `kind` work runs while its neighbours do `busy`
        (neighbour -> what it does), each with `streams[neighbour]` requests in flight
        (default 1)."""
        others = {n: op for n, op in busy.items() if n != backend}
        if not others:
            return 1.0
        load = {n: (streams or {}).get(n, 1) for n in others}
        ops = set(others.values())
        if len(ops) == 1:
            levels = self._index.get((backend, tuple(sorted(others)), next(iter(ops))))
            if levels is not None:
                return _at(levels, sum(load.values()) / len(load), kind)
        return 1.0 + sum(max(_at(self._index[(backend, (n,), op)], load[n], kind) - 1.0, 0.0)
                         for n, op in others.items() if (backend, (n,), op) in self._index)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def save(self, path: Path) -> None:
        save_json(path, self.to_json())


def _at(levels: list[tuple[int, float, float]], streams: float, kind: Kind) -> float:
    """The factor at `streams` neighbour requests in flight: linear between the measured
    stream counts, the nearest one outside them."""
    col = 1 if kind == "prefill" else 2
    if streams <= levels[0][0]:
        return levels[0][col]
    for lo, hi in zip(levels, levels[1:]):
        if streams <= hi[0]:
            return lo[col] + (hi[col] - lo[col]) * (streams - lo[0]) / (hi[0] - lo[0])
    return levels[-1][col]


def load_interference(path: str | Path) -> InterferenceTable:
    path = Path(path)
    return parse_interference(read_json(path, "interference table"), str(path))


def parse_interference(raw: Any, where: str = "interference table") -> InterferenceTable:
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: an interference table is a JSON object", "")
    version = raw.get("schema_version")
    if version not in (1, SCHEMA_VERSION):
        raise ProfileError(f"{where}: schema_version {version!r} is not supported (this "
                           f"costroute reads 1 and {SCHEMA_VERSION})", "schema_version")
    for name in ("node", "created", "command"):
        if not isinstance(raw.get(name), str) or not raw[name]:
            raise ProfileError(f"{where}: {name} must be a non-empty string", name)
    rows_raw = raw.get("rows")
    if not isinstance(rows_raw, list) or not rows_raw:
        raise ProfileError(f"{where}: rows must be a non-empty list", "rows")
    notes = dict(raw.get("notes") or {})
    # Version 1 measured one stream count for every row, named in the notes (2 by default).
    v1_streams = notes.get("background_streams_per_neighbour", 2) if version == 1 else 1
    rows, seen = [], set()
    for i, r in enumerate(rows_raw):
        name = f"rows[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("backend"), str) or not r["backend"]:
            raise ProfileError(f"{where}: {name}.backend must be a non-empty string",
                               f"{name}.backend")
        busy = r.get("busy")
        if (not isinstance(busy, list) or not busy or not all(isinstance(n, str) for n in busy)
                or r["backend"] in busy or len(set(busy)) != len(busy)):
            raise ProfileError(f"{where}: {name}.busy must list other backends, each once "
                               f"(got {busy!r})", f"{name}.busy")
        if r.get("neighbour_op") not in KINDS:
            raise ProfileError(f"{where}: {name}.neighbour_op must be 'decode' or 'prefill', got "
                               f"{r.get('neighbour_op')!r}", f"{name}.neighbour_op")
        for kind in ("prefill", "decode"):
            v = r.get(kind)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) \
                    or v <= 0:
                raise ProfileError(f"{where}: {name}.{kind} must be a positive number, got {v!r}",
                                   f"{name}.{kind}")
        streams = r.get("streams", v1_streams) if isinstance(r, dict) else None
        if not isinstance(streams, int) or isinstance(streams, bool) or streams < 1:
            raise ProfileError(f"{where}: {name}.streams must be an integer >= 1, got "
                               f"{streams!r}", f"{name}.streams")
        key = (r["backend"], tuple(sorted(busy)), r["neighbour_op"], streams)
        if key in seen:
            raise ProfileError(f"{where}: {name} repeats backend {key[0]!r} with busy "
                               f"{list(key[1])} {key[2]} at {streams} streams", f"{name}.busy")
        seen.add(key)
        rows.append(Slowdown(r["backend"], key[1], r["neighbour_op"], float(r["prefill"]),
                             float(r["decode"]), dict(r.get("ms") or {}), streams))
    return InterferenceTable(node=raw["node"], rows=tuple(rows), created=raw["created"],
                             command=raw["command"], hardware=dict(raw.get("hardware") or {}),
                             notes=notes)


# ---------------------------------------------------------------------------- measurement
