"""Speed probes: how fast a backend is now, against its profile table.

A shared or virtual machine does not keep one speed. On this project's 2-core VM a backend's
lone requests moved by 10-25% within minutes (simulator validation, runs 10 and 11): more than
the simulator's validation goal leaves for the model. A full profile takes minutes per
backend; a probe re-measures a few of the table's own batch-1 cells, with the table's own
method (the same idle time before each prefill, the same decode steps), in seconds.

* cells: prefill at batch 1 for each of the table's prompt lengths up to 256 tokens (longer
  ones cost seconds each), and the decode step at batch 1 at each of the table's contexts.
* factor per surface: the geometric mean of measured / table over its cells.
* path jitter: every prefill sample less the median of its cell (profiles/profiler.py).
* `rescale`: the table as of the probes: prefill and join surfaces times the prefill factor,
  decode times the decode factor; several probes (say one before and one after a load test)
  count by the geometric mean of their factors, and their path jitter, pooled, replaces the
  table's.

A probe is quiet: it says how far the machine drifted, not always what the lone requests of a
live run minutes away met (profiles/README.md, simulator validation run 13).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from profiles.profiler import SweepPlan, sweep
from profiles.table import (
    ProfileError,
    ProfileTable,
    Surface,
    finite_numbers,
    read_json,
    save_json,
)
from profiles.targets import Target

SurfaceName = Literal["prefill", "decode"]
MAX_PREFILL_TOKENS = 256


@dataclass(frozen=True)
class ProbeCell:
    surface: SurfaceName
    batch: int
    tokens: int  # prompt tokens (prefill) or mean context (decode), as in the table
    table_ms: float
    measured_ms: float

    @property
    def ratio(self) -> float:
        return self.measured_ms / self.table_ms


@dataclass(frozen=True)
class SpeedProbe:
    backend_id: str
    created: str  # ISO 8601, UTC
    command: str
    table: dict[str, str]  # the probed table's created and command: which table it measured
    cells: tuple[ProbeCell, ...]
    notes: dict[str, Any]
    path_jitter_ms: tuple[float, ...] = ()

    def factor(self, surface: SurfaceName) -> float:
        return statistics.geometric_mean([c.ratio for c in self.cells if c.surface == surface])

    def to_json(self) -> str:
        raw = asdict(self)
        raw["factors"] = {s: round(self.factor(s), 4) for s in ("prefill", "decode")}
        return json.dumps(raw, indent=2) + "\n"

    def save(self, path: Path) -> None:
        save_json(path, self.to_json())


def probe_plan(table: ProfileTable, repetitions: int) -> SweepPlan:
    """The table's batch-1 cells a probe measures, with the table's decode steps."""
    if table.prefill.batch[0] != 1 or table.decode.batch[0] != 1:
        raise ProfileError(f"profile {table.backend_id}: a probe needs batch-1 rows", "batch")
    prompts = tuple(t for t in table.prefill.tokens if t <= MAX_PREFILL_TOKENS)
    steps = int(table.notes.get("decode_steps", 16))
    return SweepPlan(prefill_batch=(1,), prefill_tokens=prompts or table.prefill.tokens[:1],
                     decode_batch=(1,),
                     decode_context=tuple(max(1, c - steps // 2) for c in table.decode.tokens),
                     decode_steps=steps, repetitions=repetitions, warmup=1)


def make_probe(table: ProfileTable, prefill: Surface, decode: Surface, command: str,
               notes: dict[str, Any], path_jitter_ms: tuple[float, ...] = ()) -> SpeedProbe:
    """A probe from measured batch-1 surfaces at cells of `table` (`probe_plan`)."""
    cells = [ProbeCell("prefill", 1, t, table.prefill.ms[0][table.prefill.tokens.index(t)],
                       prefill.ms[0][j]) for j, t in enumerate(prefill.tokens)]
    cells += [ProbeCell("decode", 1, c, table.decode.ms[0][table.decode.tokens.index(c)],
                        decode.ms[0][j]) for j, c in enumerate(decode.tokens)]
    return SpeedProbe(table.backend_id, _now(), command,
                      {"created": table.created, "command": table.command}, tuple(cells), notes,
                      path_jitter_ms)


async def measure_probe(target: Target, table: ProfileTable, vocab_size: int, command: str,
                        repetitions: int = 5, progress: Callable[[int], None] = lambda n: None,
                        seed: int = 0) -> SpeedProbe:
    """Measure the probe cells with the table's method (idle before prefill, decode steps)."""
    plan = probe_plan(table, repetitions)
    idle_ms = float(table.notes.get("idle_ms_before_prefill") or 0.0)
    swept = await sweep(target, plan, vocab_size, progress, seed=seed, idle_s=idle_ms / 1e3)
    # the table's own columns, even where c < steps / 2 made the sweep's differ
    decode = replace(swept.decode, tokens=table.decode.tokens)
    return make_probe(table, swept.prefill, decode, command,
                      {"repetitions": repetitions, "decode_steps": plan.decode_steps,
                       "idle_ms_before_prefill": idle_ms}, swept.path_jitter_ms)


def rescale(table: ProfileTable, probes: Sequence[SpeedProbe], command: str) -> ProfileTable:
    """`table` as of `probes` (of this very table): each surface times its factor."""
    if not probes:
        raise ProfileError("rescale needs at least one probe", "probe")
    for p in probes:
        if p.backend_id != table.backend_id:
            raise ProfileError(f"a probe of {p.backend_id!r} cannot rescale the table of "
                               f"{table.backend_id!r}", "backend_id")
        if p.table.get("created") != table.created:
            raise ProfileError(f"the probe of {p.created} measured the table created "
                               f"{p.table.get('created')}, not this one ({table.created})",
                               "table.created")
    prefill = statistics.geometric_mean([p.factor("prefill") for p in probes])
    decode = statistics.geometric_mean([p.factor("decode") for p in probes])
    jitter = tuple(sorted(v for p in probes for v in p.path_jitter_ms)) or tuple(
        v * prefill for v in table.path_jitter_ms)
    return replace(
        table, created=_now(), command=command,
        prefill=_scaled(table.prefill, prefill), decode=_scaled(table.decode, decode),
        join=None if table.join is None else _scaled(table.join, prefill),
        path_jitter_ms=jitter,
        notes={**table.notes, "rescaled": {
            "from": {"created": table.created, "command": table.command},
            "probes": [{"created": p.created, "prefill": round(p.factor("prefill"), 4),
                        "decode": round(p.factor("decode"), 4)} for p in probes],
            "prefill": round(prefill, 4), "decode": round(decode, 4)}})


def _scaled(s: Surface, k: float) -> Surface:
    def times(rows: tuple[tuple[float, ...], ...]) -> tuple[tuple[float, ...], ...]:
        return tuple(tuple(v * k for v in row) for row in rows)

    return replace(s, ms=times(s.ms), spread_ms=None if s.spread_ms is None else times(s.spread_ms))


def load_probe(path: str | Path) -> SpeedProbe:
    path = Path(path)
    return parse_probe(read_json(path, "speed probe"), str(path))


def parse_probe(raw: Any, where: str = "speed probe") -> SpeedProbe:
    def bad(field: str, what: str) -> ProfileError:
        return ProfileError(f"{where}: {field} {what}", field)

    if not isinstance(raw, dict):
        raise bad("(top level)", "must be an object")
    for key in ("backend_id", "created", "command"):
        if not isinstance(raw.get(key), str):
            raise bad(key, "must be a string")
    table = raw.get("table")
    if not isinstance(table, dict) or not isinstance(table.get("created"), str):
        raise bad("table.created", "must be a string")
    cells = []
    for i, c in enumerate(raw.get("cells") or []):
        try:
            cell = ProbeCell(c["surface"], int(c["batch"]), int(c["tokens"]),
                             float(c["table_ms"]), float(c["measured_ms"]))
        except (TypeError, KeyError, ValueError):
            raise bad(f"cells[{i}]", "must have surface, batch, tokens, table_ms, "
                                     "measured_ms") from None
        if cell.surface not in ("prefill", "decode"):
            raise bad(f"cells[{i}].surface", "must be prefill or decode")
        if not (cell.table_ms > 0 and cell.measured_ms > 0 and math.isfinite(cell.ratio)):
            raise bad(f"cells[{i}]", "must have positive table_ms and measured_ms")
        cells.append(cell)
    for s in ("prefill", "decode"):
        if not any(c.surface == s for c in cells):
            raise bad("cells", f"must measure {s} at least once")
    return SpeedProbe(raw["backend_id"], raw["created"], raw["command"], dict(table),
                      tuple(cells), dict(raw.get("notes") or {}),
                      finite_numbers(raw.get("path_jitter_ms"), f"{where}: path_jitter_ms",
                                     "path_jitter_ms"))


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
