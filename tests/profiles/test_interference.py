"""Interference tables: the format, the lookup, and the measurement's schedule (pure asyncio;
fake backends that slow each other down as a shared machine would)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from profiles.interference import (
    InterferenceTable,
    Slowdown,
    load_interference,
    measure,
    neighbour_sets,
    parse_interference,
)
from profiles.table import ProfileError
from profiles.targets import Timing


def table(*rows: Slowdown) -> InterferenceTable:
    return InterferenceTable(node="test", rows=rows, created="2026-01-01T00:00:00Z",
                             command="tests", hardware={})


def test_factor_reads_the_measured_row_or_adds_single_neighbours() -> None:
    t = table(Slowdown("a", ("b",), 1.5, 2.0), Slowdown("a", ("c",), 1.2, 1.5),
              Slowdown("a", ("b", "c"), 1.6, 2.2))
    assert t.factor("a", [], "decode") == 1.0
    assert t.factor("a", ["b"], "decode") == 2.0
    assert t.factor("a", ["c", "b"], "prefill") == 1.6  # the measured pair, in any order
    assert t.factor("b", ["a"], "decode") == 1.0  # b was not measured: no slowdown
    two = table(Slowdown("a", ("b",), 1.5, 2.0), Slowdown("a", ("c",), 1.2, 1.5))
    assert two.factor("a", ["b", "c"], "decode") == pytest.approx(1 + 1.0 + 0.5)
    assert t.backends == ("a", "b", "c")


def test_round_trip(tmp_path: Path) -> None:
    t = table(Slowdown("a", ("b",), 1.5, 2.0, {"decode_idle": 4.0, "decode_busy": 8.0}))
    t.save(tmp_path / "i.json")
    assert load_interference(tmp_path / "i.json") == t


@pytest.mark.parametrize(("edit", "field"), [
    (lambda r: r["rows"][0].update(decode=0), "rows[0].decode"),
    (lambda r: r["rows"][0].update(busy=["a"]), "rows[0].busy"),
    (lambda r: r["rows"].append(dict(r["rows"][0])), "rows[1].busy"),
    (lambda r: r.update(node=""), "node"),
    (lambda r: r.update(schema_version=9), "schema_version"),
])
def test_a_bad_table_names_the_field(edit: Any, field: str) -> None:
    raw = json.loads(table(Slowdown("a", ("b",), 1.5, 2.0)).to_json())
    edit(raw)
    with pytest.raises(ProfileError) as err:
        parse_interference(raw)
    assert err.value.field == field


def test_neighbour_sets() -> None:
    assert neighbour_sets(["a", "b", "c"], "a", 2) == [("b",), ("c",), ("b", "c")]
    assert neighbour_sets(["a", "b", "c"], "a", 1) == [("b",), ("c",)]


class _Machine:
    """Backends on one fake machine: a token takes 1 ms and a prefill 4 ms, times 1 + the
    number of OTHER backends with a request in flight."""

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}

    def pace(self, me: str) -> float:
        return 1 + sum(1 for b, n in self.in_flight.items() if n and b != me)


class _Backend:
    def __init__(self, machine: _Machine, name: str) -> None:
        self.machine, self.name = machine, name

    async def run(self, prompt_ids: list[int], max_tokens: int, on_tokens: Any = None) -> Timing:
        m = self.machine
        timing = Timing(time.perf_counter(), prompt_tokens=len(prompt_ids))
        m.in_flight[self.name] = m.in_flight.get(self.name, 0) + 1
        try:
            for i in range(max_tokens):
                await asyncio.sleep((0.001 if i else 0.004) * m.pace(self.name))
                timing.token_times.append(time.perf_counter())
                if on_tokens is not None:
                    on_tokens(1)
        finally:
            m.in_flight[self.name] -= 1
        timing.completion_tokens = max_tokens
        return timing

    def describe(self) -> dict[str, Any]:
        return {}


def test_measure_compares_each_backend_alone_and_with_busy_neighbours() -> None:
    machine = _Machine()
    targets = {n: _Backend(machine, n) for n in ("a", "b", "c")}
    rows = asyncio.run(measure(targets, 512, repetitions=2, background=1))  # type: ignore[arg-type]
    by = {(r.backend, r.busy): r for r in rows}
    assert list(by) == [(b, s) for b in "abc" for s in neighbour_sets(["a", "b", "c"], b, 2)]
    for (_, busy), r in by.items():  # asyncio sleeps run a little late: loose bounds
        assert 1 + len(busy) - 0.35 < r.decode < 1 + len(busy) + 0.35
        assert 1 + len(busy) - 0.35 < r.prefill < 1 + len(busy) + 0.35
    assert not any(machine.in_flight.values())  # every background stream ended
