"""Interference tables: the format, the lookup, and the measurement's schedule (pure asyncio;
fake backends that slow each other down as a shared machine would, on a virtual clock)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from profiles.interference import (
    InterferenceTable,
    Slowdown,
    load_interference,
    parse_interference,
)
from profiles.interference_measure import measure, neighbour_sets
from profiles.table import ProfileError
from profiles.targets import Timing
from tests.virtual_time import now, run_virtual


def table(*rows: Slowdown) -> InterferenceTable:
    return InterferenceTable(node="test", rows=rows, created="2026-01-01T00:00:00Z",
                             command="tests", hardware={})


def test_factor_reads_the_measured_row_or_adds_single_neighbours() -> None:
    t = table(Slowdown("a", ("b",), "decode", 1.5, 2.0), Slowdown("a", ("c",), "decode", 1.2, 1.5),
              Slowdown("a", ("b", "c"), "decode", 1.6, 2.2),
              Slowdown("a", ("b",), "prefill", 1.1, 1.3))
    assert t.factor("a", {}, "decode") == 1.0
    assert t.factor("a", {"b": "decode"}, "decode") == 2.0
    assert t.factor("a", {"b": "prefill"}, "decode") == 1.3  # what the neighbour does matters
    assert t.factor("a", {"c": "decode", "b": "decode"}, "prefill") == 1.6  # the measured pair
    assert t.factor("b", {"a": "decode"}, "decode") == 1.0  # b was not measured: no slowdown
    # no row for this mix: the single neighbours' rows add up (c prefilling: no row, adds 0)
    assert t.factor("a", {"b": "prefill", "c": "decode"}, "decode") == pytest.approx(1 + 0.3 + 0.5)
    assert t.factor("a", {"b": "decode", "c": "prefill"}, "decode") == pytest.approx(2.0)
    assert t.backends == ("a", "b", "c")


def test_factor_follows_the_neighbours_requests_in_flight() -> None:
    t = table(Slowdown("a", ("b",), "decode", 1.4, 1.5, {}, 1),
              Slowdown("a", ("b",), "decode", 2.0, 2.5, {}, 3),
              Slowdown("a", ("c",), "decode", 1.2, 1.2, {}, 1),
              Slowdown("a", ("b", "c"), "decode", 2.0, 2.0, {}, 1),
              Slowdown("a", ("b", "c"), "decode", 3.0, 3.0, {}, 2))
    assert t.max_streams == 3
    assert t.factor("a", {"b": "decode"}, "decode") == 1.5  # one request in flight by default
    assert t.factor("a", {"b": "decode"}, "decode", {"b": 2}) == pytest.approx(2.0)  # between
    assert t.factor("a", {"b": "decode"}, "prefill", {"b": 9}) == 2.0  # the most measured
    # a measured set: at the neighbours' mean load
    assert t.factor("a", {"b": "decode", "c": "decode"}, "decode", {"b": 1, "c": 2}) == \
        pytest.approx(2.5)
    # no row for this mix: each single neighbour's row at its own load
    assert t.factor("a", {"b": "decode", "c": "prefill"}, "decode", {"b": 3}) == \
        pytest.approx(2.5)


def test_a_version_1_table_took_its_stream_count_from_the_notes() -> None:
    raw = json.loads(table(Slowdown("a", ("b",), "decode", 1.5, 2.0)).to_json())
    raw["schema_version"] = 1
    del raw["rows"][0]["streams"]
    raw["notes"] = {"background_streams_per_neighbour": 2}
    assert parse_interference(raw).rows[0].streams == 2
    raw["notes"] = {}
    assert parse_interference(raw).rows[0].streams == 2  # version 1's default


def test_round_trip(tmp_path: Path) -> None:
    t = table(Slowdown("a", ("b",), "decode", 1.5, 2.0, {"decode_idle": 4.0, "decode_busy": 8.0}),
              Slowdown("a", ("b",), "prefill", 1.2, 1.1))
    t.save(tmp_path / "i.json")
    assert load_interference(tmp_path / "i.json") == t


@pytest.mark.parametrize(("edit", "field"), [
    (lambda r: r["rows"][0].update(decode=0), "rows[0].decode"),
    (lambda r: r["rows"][0].update(busy=["a"]), "rows[0].busy"),
    (lambda r: r["rows"].append(dict(r["rows"][0])), "rows[1].busy"),
    (lambda r: r["rows"][0].update(neighbour_op="idle"), "rows[0].neighbour_op"),
    (lambda r: r["rows"][0].update(streams=0), "rows[0].streams"),
    (lambda r: r.update(node=""), "node"),
    (lambda r: r.update(schema_version=9), "schema_version"),
])
def test_a_bad_table_names_the_field(edit: Any, field: str) -> None:
    raw = json.loads(table(Slowdown("a", ("b",), "decode", 1.5, 2.0)).to_json())
    edit(raw)
    with pytest.raises(ProfileError) as err:
        parse_interference(raw)
    assert err.value.field == field


def test_neighbour_sets() -> None:
    assert neighbour_sets(["a", "b", "c"], "a", 2) == [("b",), ("c",), ("b", "c")]
    assert neighbour_sets(["a", "b", "c"], "a", 1) == [("b",), ("c",)]


class _Machine:
    """Backends on one fake machine: a token takes 2 ms and a prefill 4 ms, times 1 + 1 for
    each request of another backend decoding (streaming more than one token) + 0.5 for each
    prefilling."""

    def __init__(self) -> None:
        self.in_flight: dict[str, list[int]] = {}  # backend -> max_tokens of its requests

    def pace(self, me: str) -> float:
        return 1 + sum((1.0 if t > 1 else 0.5) for b, n in self.in_flight.items() if b != me
                       for t in n)


class _Backend:
    def __init__(self, machine: _Machine, name: str) -> None:
        self.machine, self.name = machine, name

    def gap(self, i: int) -> float:
        """Seconds before token i: the prefill, then a step, at the machine's pace."""
        return (0.002 if i else 0.004) * self.machine.pace(self.name)

    async def run(self, prompt_ids: list[int], max_tokens: int, on_tokens: Any = None) -> Timing:
        m = self.machine
        timing = Timing(now(), prompt_tokens=len(prompt_ids))
        mine = m.in_flight.setdefault(self.name, [])
        mine.append(max_tokens)
        try:
            for i in range(max_tokens):
                await asyncio.sleep(self.gap(i))
                timing.token_times.append(now())
                if on_tokens is not None:
                    on_tokens(1)
        finally:
            mine.remove(max_tokens)
        timing.completion_tokens = max_tokens
        return timing

    def describe(self) -> dict[str, Any]:
        return {}


def test_measure_compares_each_backend_alone_and_with_busy_neighbours() -> None:
    machine = _Machine()
    targets = {n: _Backend(machine, n) for n in ("a", "b")}
    rows = run_virtual(measure(targets, 512, repetitions=2, streams=(1, 2)))  # type: ignore[arg-type]
    by = {(r.backend, r.busy, r.neighbour_op, r.streams): r for r in rows}
    assert list(by) == [("a", ("b",), op, n) for op in ("decode", "prefill") for n in (1, 2)] + \
        [("b", ("a",), op, n) for op in ("decode", "prefill") for n in (1, 2)]
    for (_, _, op, n), r in by.items():
        expected = 1 + n * (1.0 if op == "decode" else 0.5)
        assert (r.decode, r.prefill) == (pytest.approx(expected), pytest.approx(expected))
    assert not any(machine.in_flight.values())  # every background stream ended


class _Failing(_Backend):
    async def run(self, prompt_ids: list[int], max_tokens: int, on_tokens: Any = None) -> Timing:
        return Timing(now(), prompt_tokens=len(prompt_ids), error="HTTP 503")


def test_a_neighbour_that_fails_stops_the_measurement_with_its_error() -> None:
    machine = _Machine()
    targets = {"a": _Backend(machine, "a"), "b": _Failing(machine, "b")}
    with pytest.raises(RuntimeError, match="HTTP 503"):
        run_virtual(measure(targets, 512, repetitions=1, streams=(1,)))  # type: ignore[arg-type]


@pytest.mark.parametrize("background", ["0,1", "x", ","])
def test_the_cli_names_a_bad_stream_count(background: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from costroute.cli import main

    assert main(["profile", "interference", "--url", "http://127.0.0.1:9", "--model", "m",
                 "--backends", "a,b", "--background", background,
                 "--out", str(tmp_path / "i.json")]) == 2
    assert f"--background must be >= 1, got {background}" in capsys.readouterr().err
    assert not (tmp_path / "i.json").exists()


class _Stalling(_Backend):
    """Streams a token every 2 ms, but stalls 32 ms once (at its tenth token) while another
    backend has a request in flight: a time slice lost to a neighbour."""

    def gap(self, i: int) -> float:
        busy = any(n for b, n in self.machine.in_flight.items() if b != self.name)
        return 0.002 + (0.032 if i == 10 and busy else 0.0)


def test_the_decode_factor_is_the_ratio_of_mean_token_gaps() -> None:
    """32 gaps of 2 ms, one of them stalled to 34 ms: mean 3 ms (x1.5), median still 2 ms."""
    machine = _Machine()
    targets = {"a": _Stalling(machine, "a"), "b": _Backend(machine, "b")}
    rows = run_virtual(measure(targets, 512, repetitions=2, streams=(1,)))  # type: ignore[arg-type]
    row = next(r for r in rows if r.backend == "a" and r.neighbour_op == "decode")
    assert row.decode == pytest.approx(1.5)
    assert row.ms["decode_idle"] == pytest.approx(2.0)
