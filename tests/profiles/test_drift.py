"""Speed probes and rescaled tables (pure, and a probe on a virtual clock)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import replace
from typing import Any

import pytest

from costroute.cli import main
from profiles.drift import ProbeCell, SpeedProbe, make_probe, measure_probe, parse_probe, rescale
from profiles.table import ProfileError, Surface, parse_profile
from profiles.targets import Timing
from tests.profiles.synthetic import synthetic_profile
from tests.virtual_time import now, run_virtual

TABLE = synthetic_profile(join_ms_per_running=2.0)


def _probe(prefill: float, decode: float, table: Any = TABLE) -> SpeedProbe:
    cells = (ProbeCell("prefill", 1, 16, 2.0, 2.0 * prefill),
             ProbeCell("prefill", 1, 64, 4.0, 4.0 * prefill),
             ProbeCell("decode", 1, 64, 3.0, 3.0 * decode))
    return SpeedProbe(table.backend_id, "2026-11-28T00:00:00Z", "test",
                      {"created": table.created, "command": table.command}, cells, {})


class _Slower:
    """The synthetic table's backend, `k` times slower: a prefill of p tokens takes k x the
    table's prefill(1, p); then a token every k x the table's decode(1, c) ms, c the table's
    context column for this prompt (the probe sends c - 8 tokens for 16 decode steps)."""

    def __init__(self, k: float) -> None:
        self.k = k
        self.prompts: list[int] = []

    async def run(self, prompt_ids: list[int], max_tokens: int, on_tokens: Any = None) -> Timing:
        timing = Timing(now(), prompt_tokens=len(prompt_ids), completion_tokens=max_tokens)
        self.prompts.append(len(prompt_ids))
        prefill = TABLE.prefill.ms[0][TABLE.prefill.tokens.index(len(prompt_ids))] \
            if max_tokens == 1 else 1.0
        await asyncio.sleep(self.k * prefill / 1e3)
        timing.token_times.append(now())
        column = min(range(len(TABLE.decode.tokens)),
                     key=lambda j: abs(TABLE.decode.tokens[j] - 8 - len(prompt_ids)))
        for _ in range(max_tokens - 1):
            await asyncio.sleep(self.k * TABLE.decode.ms[0][column] / 1e3)
            timing.token_times.append(now())
        return timing

    def describe(self) -> dict[str, Any]:
        return {}


def test_probe_measures_the_tables_own_cells_and_their_ratio() -> None:
    target = _Slower(1.5)
    probe = run_virtual(measure_probe(target, TABLE, vocab_size=512, command="test",
                                      repetitions=3))
    prefill = [c for c in probe.cells if c.surface == "prefill"]
    assert [c.tokens for c in prefill] == [16, 64, 256]  # the table's, up to 256 tokens
    assert [c.tokens for c in probe.cells if c.surface == "decode"] == [16, 64, 256, 1024]
    assert probe.factor("prefill") == pytest.approx(1.5)
    assert probe.factor("decode") == pytest.approx(1.5)
    assert probe.table == {"created": TABLE.created, "command": TABLE.command}
    assert probe.path_jitter_ms == (0.0,) * 9  # the same time every time: no jitter


def test_rescale_multiplies_each_surface_by_its_factor() -> None:
    probes = [_probe(1.21, 1.0), _probe(1.0, 1.44)]  # geometric means: 1.1 and 1.2
    out = rescale(TABLE, probes, "costroute profile rescale ...")
    assert out.prefill.ms[2][3] == pytest.approx(1.1 * TABLE.prefill.ms[2][3])
    assert out.decode.ms[3][0] == pytest.approx(1.2 * TABLE.decode.ms[3][0])
    assert out.join is not None and TABLE.join is not None
    assert out.join.ms[1][1] == pytest.approx(1.1 * TABLE.join.ms[1][1])
    assert out.notes["rescaled"]["from"]["created"] == TABLE.created
    assert (out.notes["rescaled"]["prefill"], out.notes["rescaled"]["decode"]) == (1.1, 1.2)
    assert out.command == "costroute profile rescale ..." and out.created != TABLE.created
    assert parse_profile(json.loads(out.to_json())) == out  # still a valid table


def test_rescale_pools_the_probes_path_jitter() -> None:
    first = dataclasses.replace(_probe(1.0, 1.0), path_jitter_ms=(-1.0, 3.0))
    second = dataclasses.replace(_probe(1.0, 1.0), path_jitter_ms=(0.0,))
    assert rescale(TABLE, [first, second], "t").path_jitter_ms == (-1.0, 0.0, 3.0)
    kept = replace(TABLE, path_jitter_ms=(-2.0, 4.0))  # probes without any: the table's, rescaled
    assert rescale(kept, [_probe(1.5, 1.0, kept)], "t").path_jitter_ms == (-3.0, 6.0)


def test_rescale_refuses_a_probe_of_another_table() -> None:
    other = replace(TABLE, created="2026-02-02T00:00:00Z")
    with pytest.raises(ProfileError) as err:
        rescale(TABLE, [_probe(1.0, 1.0, other)], "test")
    assert err.value.field == "table.created"
    with pytest.raises(ProfileError) as err:
        rescale(TABLE, [_probe(1.0, 1.0, replace(TABLE, backend_id="b"))], "test")
    assert err.value.field == "backend_id"


def test_a_probe_round_trips_and_a_bad_one_names_its_field() -> None:
    probe = _probe(1.1, 0.9)
    probe = dataclasses.replace(probe, path_jitter_ms=(-1.5, 0.0, 2.25))
    raw = json.loads(probe.to_json())
    assert raw["factors"] == {"prefill": 1.1, "decode": 0.9}
    assert parse_probe(raw) == probe
    raw["path_jitter_ms"] = [1, "x"]
    with pytest.raises(ProfileError) as err:
        parse_probe(raw)
    assert err.value.field == "path_jitter_ms"
    raw["path_jitter_ms"] = []
    raw["cells"][2]["measured_ms"] = 0
    with pytest.raises(ProfileError) as err:
        parse_probe(raw)
    assert err.value.field == "cells[2]"
    raw["cells"] = raw["cells"][:2]
    with pytest.raises(ProfileError, match="must measure decode"):
        parse_probe(raw)


def test_make_probe_reads_the_table_at_the_measured_cells() -> None:
    measured = Surface((1,), (64,), ((2 * TABLE.prefill.ms[0][1],),))
    decode = Surface((1,), (256,), ((0.5 * TABLE.decode.ms[0][2],),))
    probe = make_probe(TABLE, measured, decode, "test", {})
    assert (probe.factor("prefill"), probe.factor("decode")) == (pytest.approx(2.0),
                                                                  pytest.approx(0.5))


def test_cli_rescale_names_the_bad_field(tmp_path: Any, capsys: Any) -> None:
    table, probe = tmp_path / "t.json", tmp_path / "p.json"
    table.write_text(TABLE.to_json())
    probe.write_text(_probe(1.0, 1.0, replace(TABLE, backend_id="b")).to_json())
    assert main(["profile", "rescale", "--table", str(table), "--probe", str(probe),
                 "--out", str(tmp_path / "out.json")]) == 2
    assert "[backend_id]" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()
