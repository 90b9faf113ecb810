"""Writing benchmark results: JSON with this machine's paths replaced by portable names."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
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


def provenance() -> dict[str, Any]:
    """What produced a result: date (UTC), commit (+uncommitted when the tracked tree differs),
    the command line and the machine."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "HEAD") + ("+uncommitted" if dirty else ""),
        "command": shlex.join(["python", *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "machine": platform.machine(),
                    "processor": _cpu_model(), "python": platform.python_version(),
                    "loadavg": os.getloadavg()},
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
