"""Writing benchmark results: JSON with this machine's paths replaced by portable names."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from backends.model.build import costroute_home

ROOT = Path(__file__).resolve().parents[1]


def portable(text: str) -> str:
    """`$COSTROUTE_HOME/...` for the cache, `python` for the interpreter, repo-relative paths."""
    for local, name in ((sys.executable, "python"), (str(costroute_home()), "$COSTROUTE_HOME"),
                        (str(ROOT) + "/", ""), (str(Path.home()), "~")):
        text = text.replace(local, name)
    return text


def write_results(path: str | Path, results: Any) -> None:
    Path(path).write_text(portable(json.dumps(results, indent=2)) + "\n")
