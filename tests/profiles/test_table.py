"""Loading profile tables: round trip, and errors that name the problem."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from profiles.table import SCHEMA_VERSION, ProfileError, load_profile
from tests.profiles.synthetic import synthetic_profile


def _write(tmp_path: Path, raw: object) -> Path:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(raw) if not isinstance(raw, str) else raw)
    return path


def _raw() -> dict:
    return json.loads(synthetic_profile().to_json())


def test_round_trip(tmp_path: Path) -> None:
    table = synthetic_profile()
    table.save(tmp_path / "t.json")
    assert load_profile(tmp_path / "t.json") == table
    joined = synthetic_profile(join_ms_per_running=3.0)
    joined.save(tmp_path / "j.json")
    assert load_profile(tmp_path / "j.json") == joined
    jittery = dataclasses.replace(table, path_jitter_ms=(-1.5, 0.0, 4.25))
    jittery.save(tmp_path / "p.json")
    assert load_profile(tmp_path / "p.json") == jittery


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda r: r.update(schema_version=99), "schema_version"),
        (lambda r: r.pop("backend_id"), "backend_id"),
        (lambda r: r.update(kind="guessed"), "kind"),
        (lambda r: r["decode"].update(ms=[[1.0]]), "decode.ms"),
        (lambda r: r["prefill"].update(batch=[4, 2]), "prefill.batch"),
        (lambda r: r["decode"]["ms"][0].__setitem__(0, -1.0), "decode.ms"),
        (lambda r: r["capacity"].update(max_num_seqs=0), "capacity.max_num_seqs"),
        (lambda r: r["model"].pop("checksum"), "model.checksum"),
        (lambda r: r.update(join={"batch": [1], "tokens": [16], "ms": [[0.0]]}), "join.ms"),
        (lambda r: r.update(path_jitter_ms=[0.5, None]), "path_jitter_ms"),
    ],
)
def test_malformed_tables_name_the_field(tmp_path: Path, mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    raw = _raw()
    mutate(raw)
    with pytest.raises(ProfileError) as info:
        load_profile(_write(tmp_path, raw))
    assert info.value.field == field
    assert field.split(".")[0] in str(info.value)


def test_unknown_version_says_what_to_do(tmp_path: Path) -> None:
    raw = _raw()
    raw["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(ProfileError, match="costroute profile"):
        load_profile(_write(tmp_path, raw))


def test_not_json(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="not valid JSON"):
        load_profile(_write(tmp_path, "{oops"))


def test_another_model_is_rejected_unless_forced(tmp_path: Path) -> None:
    path = _write(tmp_path, _raw())
    with pytest.raises(ProfileError, match="re-profile") as info:
        load_profile(path, model_checksum="f" * 64)
    assert info.value.field == "model.checksum"
    assert load_profile(path, model_checksum="f" * 64, force=True).backend_id == "synthetic"
