"""A run on disk: one folder with the per-request JSONL, the summary and the report.

    RUN/records.jsonl   one Record per line (loadtest/records.py)
    RUN/summary.json    the summary (loadtest/metrics.py), schema costroute-loadtest-summary v1
    RUN/report.md, RUN/report.html, RUN/plots/*.png   (loadtest/report.py)
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from backends.errors import ConfigError
from loadtest.metrics import SCHEMA, SCHEMA_VERSION
from loadtest.records import Record, read_records, write_records

RECORDS = "records.jsonl"
SUMMARY = "summary.json"


def write_run(folder: str | Path, records: list[Record], summary: dict[str, Any]) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_records(folder / RECORDS, records)
    write_json(folder / SUMMARY, {**summary, "records_file": RECORDS})
    return folder


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, default=_plain)
        f.write("\n")
    os.replace(tmp, path)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def read_summary(path: str | Path) -> dict[str, Any]:
    """A run's summary, from its folder or its summary.json; checks the schema version."""
    path = Path(path)
    if path.is_dir():
        path = path / SUMMARY
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: give a run folder (with {SUMMARY}) or a "
                          f"summary file", "run") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not JSON: {exc.msg}", "run") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ConfigError(f"{path} is not a costroute load-test summary (schema "
                          f"{data.get('schema') if isinstance(data, dict) else None!r})", "schema")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError(f"{path}: summary schema_version {data.get('schema_version')!r} is "
                          f"not supported (this costroute reads {SCHEMA_VERSION})",
                          "schema_version")
    data["_path"] = str(path)
    return data


def run_records(summary: dict[str, Any]) -> list[Record] | None:
    """The records next to a summary, when they are there (simulated runs may have none)."""
    folder = Path(summary["_path"]).parent
    path = folder / summary.get("records_file", RECORDS)
    return read_records(path) if path.exists() else None
