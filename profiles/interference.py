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

What one measurement is (`measure`): the probe backend's decode step (the median gap between
the tokens of one request of 64 prompt tokens, 33 tokens out) and its prefill (TTFT of one
request of 256 prompt tokens, max_tokens=1), alternately with the neighbours idle and with
each neighbour busy with `background` streams of requests back to back: decoding (64 prompt
tokens, 128 out) or prefilling (512 prompt tokens, max_tokens=1). Factor = median busy / median
idle. Neighbours without a row of their own (a set not measured, or doing different things) are
estimated from the single neighbours' rows: 1 + sum(f - 1).

The table is versioned JSON; `load_interference` names the field at fault.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from profiles.table import ProfileError, read_json, save_json
from profiles.targets import Target

SCHEMA_VERSION = 1
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


@dataclass(frozen=True)
class InterferenceTable:
    node: str  # what the backends share, e.g. a host name
    rows: tuple[Slowdown, ...]
    created: str  # ISO 8601, UTC
    command: str
    hardware: dict[str, Any]
    notes: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(sorted({r.backend for r in self.rows} | {n for r in self.rows for n in r.busy}))

    def factor(self, backend: str, busy: Mapping[str, Kind], kind: Kind) -> float:
        """How much slower `backend`'s `kind` work runs while its neighbours do `busy`
        (neighbour -> what it does)."""
        others = {n: op for n, op in busy.items() if n != backend}
        if not others:
            return 1.0
        rows = {(r.busy, r.neighbour_op): r for r in self.rows if r.backend == backend}
        ops = set(others.values())
        if len(ops) == 1:
            row = rows.get((tuple(sorted(others)), ops.pop()))
            if row is not None:
                return float(getattr(row, kind))
        return 1.0 + sum(max(getattr(rows[(n,), op], kind) - 1.0, 0.0)
                         for n, op in others.items() if ((n,), op) in rows)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def save(self, path: Path) -> None:
        save_json(path, self.to_json())


def load_interference(path: str | Path) -> InterferenceTable:
    path = Path(path)
    return parse_interference(read_json(path, "interference table"), str(path))


def parse_interference(raw: Any, where: str = "interference table") -> InterferenceTable:
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: an interference table is a JSON object", "")
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise ProfileError(f"{where}: schema_version {raw.get('schema_version')!r} is not "
                           f"supported (this costroute reads {SCHEMA_VERSION})", "schema_version")
    for name in ("node", "created", "command"):
        if not isinstance(raw.get(name), str) or not raw[name]:
            raise ProfileError(f"{where}: {name} must be a non-empty string", name)
    rows_raw = raw.get("rows")
    if not isinstance(rows_raw, list) or not rows_raw:
        raise ProfileError(f"{where}: rows must be a non-empty list", "rows")
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
        key = (r["backend"], tuple(sorted(busy)), r["neighbour_op"])
        if key in seen:
            raise ProfileError(f"{where}: {name} repeats backend {key[0]!r} with busy "
                               f"{list(key[1])} {key[2]}", f"{name}.busy")
        seen.add(key)
        rows.append(Slowdown(r["backend"], key[1], r["neighbour_op"], float(r["prefill"]),
                             float(r["decode"]), dict(r.get("ms") or {})))
    return InterferenceTable(node=raw["node"], rows=tuple(rows), created=raw["created"],
                             command=raw["command"], hardware=dict(raw.get("hardware") or {}),
                             notes=dict(raw.get("notes") or {}))


# ---------------------------------------------------------------------------- measurement

PROBE_DECODE_PROMPT, PROBE_DECODE_TOKENS = 64, 33
PROBE_PREFILL_PROMPT = 256
BACKGROUND = {"decode": (64, 128), "prefill": (512, 1)}  # a busy neighbour's requests:
# (prompt tokens, max_tokens)


def neighbour_sets(backends: list[str], backend: str, max_size: int) -> list[tuple[str, ...]]:
    """The busy-neighbour sets measured for `backend`: every set of up to `max_size`."""
    others = [b for b in backends if b != backend]
    return [s for k in range(1, min(max_size, len(others)) + 1)
            for s in itertools.combinations(sorted(others), k)]


async def measure(targets: dict[str, Target], vocab_size: int, *, repetitions: int = 5,
                  background: int = 2, max_set: int = 2, seed: int = 0,
                  progress: Callable[[int], None] = lambda n: None) -> list[Slowdown]:
    """One row per backend, set of busy neighbours (up to `max_set` of them) and what they do,
    each from `repetitions` idle/busy pairs of probes."""
    from profiles.profiler import _decode_gap, prompt_ids

    rng = np.random.default_rng(seed)
    names = sorted(targets)

    async def probe(t: Target) -> tuple[float, float]:  # (decode step, prefill), seconds
        d = await t.run(prompt_ids(rng, PROBE_DECODE_PROMPT, vocab_size), PROBE_DECODE_TOKENS)
        p = await t.run(prompt_ids(rng, PROBE_PREFILL_PROMPT, vocab_size), 1)
        for timing in (d, p):
            if timing.error or not timing.token_times:
                raise RuntimeError(f"the backend failed during profiling: {timing.error}")
        return _decode_gap([d]), p.token_times[0] - p.sent

    async def keep_busy(t: Target, op: Kind, stop: asyncio.Event, started: asyncio.Event) -> None:
        prompt, tokens = BACKGROUND[op]
        while not stop.is_set():
            timing = await t.run(prompt_ids(rng, prompt, vocab_size), tokens,
                                 lambda n: started.set())
            if timing.error:
                raise RuntimeError(f"a busy neighbour failed during profiling: {timing.error}")

    rows = []
    for backend in names:
        await probe(targets[backend])  # warm the path
        for busy, op in [(b, op) for b in neighbour_sets(names, backend, max_set) for op in KINDS]:
            idle: list[tuple[float, float]] = []
            loaded: list[tuple[float, float]] = []
            for _ in range(repetitions):
                idle.append(await probe(targets[backend]))
                stop = asyncio.Event()
                flags = [asyncio.Event() for _ in busy for _ in range(background)]
                workers = [asyncio.create_task(keep_busy(targets[n], op, stop,
                                                         flags[i * background + j]))
                           for i, n in enumerate(busy) for j in range(background)]
                ready = asyncio.ensure_future(asyncio.gather(*(f.wait() for f in flags)))
                watched: list[asyncio.Future[Any]] = [ready, *workers]
                await asyncio.wait(watched, timeout=60, return_when=asyncio.FIRST_COMPLETED)
                if not ready.done():  # a neighbour failed (or never answered): stop them all
                    stop.set()
                    ready.cancel()
                    for w in workers:
                        w.cancel()
                    failed = [w.exception() for w in workers if w.done() and not w.cancelled()]
                    raise RuntimeError(f"busy neighbours {list(busy)} did not start: "
                                       f"{failed[0] if failed else 'no token in 60 s'}")
                loaded.append(await probe(targets[backend]))
                stop.set()
                await asyncio.gather(*workers)
                progress(1)
            ms = {"decode_idle": statistics.median(d for d, _ in idle) * 1e3,
                  "decode_busy": statistics.median(d for d, _ in loaded) * 1e3,
                  "prefill_idle": statistics.median(p for _, p in idle) * 1e3,
                  "prefill_busy": statistics.median(p for _, p in loaded) * 1e3}
            rows.append(Slowdown(backend, busy, op, round(ms["prefill_busy"] / ms["prefill_idle"], 4),
                                 round(ms["decode_busy"] / ms["decode_idle"], 4),
                                 {k: round(v, 3) for k, v in ms.items()}))
    return rows


def make_table(node: str, rows: list[Slowdown], command: str, *, repetitions: int,
               background: int, elapsed_s: float) -> InterferenceTable:
    from profiles.profiler import hardware_description

    return InterferenceTable(
        node=node, rows=tuple(rows),
        created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        command=command, hardware=hardware_description(),
        notes={"repetitions": repetitions, "background_streams_per_neighbour": background,
               "probe": {"decode_prompt_tokens": PROBE_DECODE_PROMPT,
                         "decode_tokens": PROBE_DECODE_TOKENS,
                         "prefill_prompt_tokens": PROBE_PREFILL_PROMPT},
               "background": {op: {"prompt_tokens": p, "max_tokens": t}
                              for op, (p, t) in BACKGROUND.items()},
               "elapsed_s": round(elapsed_s, 1)})
