"""The decision core compiled with mypyc (optional: ~2x faster routing and simulation).

`make compile` (`python profiles/compiled.py build`) compiles the modules below in place, as
one mypyc group: each gets a small C extension next to its source, which Python then imports
instead of the source, and the group's code lives in one shared library inside this package
(`profiles/decision_core__mypyc.*.so`, so an editable install finds it like any module).
One group lets compiled modules call each other natively; built one by one, every call
between them (a policy asking the latency model, the model reading its grid) went through
the Python API, and the simulator ran ~13% slower. The same code, type-checked by mypy, runs
either way, and a simulated run gives the same records compiled or not
(tests/loadtest/test_compiled.py). `make uncompile` removes the extensions. The tool is run
by path, not with -m: it must work while a stale extension makes its package refuse to
import.

An extension does not change when its source does. So the build records each source's
SHA-256 in its package (`.compiled.json`), and the package refuses to import (ImportError
naming the module and the fix) once a compiled module's source differs from what was built:
a stale extension never runs in place of edited code.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The hot path of every routing decision and of the simulator. Not compiled: pydantic
# models (the workload), records (serialised by field introspection), anything off the hot
# path. Policies written elsewhere still subclass the compiled `Policy` (it allows it).
MODULES = (
    "profiles/grid.py",
    "profiles/latency.py",
    "profiles/tracking.py",
    "profiles/cost.py",
    "serving/policies/base.py",
    "serving/policies/cost_slo.py",
    "serving/policies/baselines.py",
    "loadtest/simulator.py",
)
MANIFEST = ".compiled.json"
GROUP = "profiles.decision_core"  # the shared library: profiles/decision_core__mypyc.*.so
_GROUP_LIBRARY = ROOT / (GROUP.replace(".", "/") + "__mypyc.py")  # no such source: its stem
_SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify
setup(name="costroute-decision-core", py_modules=[],
      ext_modules=mypycify(sys.argv[2:], group_name=sys.argv[1]),
      script_args=["build_ext", "--inplace"])
"""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _extensions(source: Path) -> list[Path]:
    """The C extensions built for `source` (a module path, or the group library's)."""
    return sorted(p for suffix in ("so", "pyd") for p in source.parent.glob(f"{source.stem}.*.{suffix}"))


def check(package_dir: str | Path) -> None:
    """Called by each package that holds compiled modules, when it is imported."""
    package_dir = Path(package_dir)
    compiled = [ROOT / m for m in MODULES if (ROOT / m).parent == package_dir]
    built = [m for m in compiled if _extensions(m)]
    if not built:
        return
    try:
        manifest = json.loads((package_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {}
    for source in built:
        if manifest.get(source.name) != _sha256(source):
            raise ImportError(
                f"{source.relative_to(ROOT)} changed since it was compiled: run `make compile` "
                "to rebuild, or `make uncompile` to run the sources")


def compiled_modules() -> list[str]:
    """The modules that are running compiled in this process (for benchmark reports)."""
    names = [m.removesuffix(".py").replace("/", ".") for m in MODULES]
    return [n for n in names
            if n in sys.modules and str(getattr(sys.modules[n], "__file__", "")).endswith(
                (".so", ".pyd"))]


def clean() -> None:
    for source in (*(ROOT / m for m in MODULES), _GROUP_LIBRARY):
        for ext in _extensions(source):
            ext.unlink()
    for package in {(ROOT / m).parent for m in MODULES}:
        (package / MANIFEST).unlink(missing_ok=True)


def build() -> int:
    clean()
    print(f"compiling {len(MODULES)} modules as one group ({GROUP})", flush=True)
    result = subprocess.run([sys.executable, "-c", _SETUP, GROUP, *MODULES], cwd=ROOT,
                            capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stdout[-4000:], result.stderr[-4000:], sep="\n", file=sys.stderr)
        clean()
        return result.returncode
    manifests: dict[Path, dict[str, str]] = {}
    for m in MODULES:
        source = ROOT / m
        manifests.setdefault(source.parent, {})[source.name] = _sha256(source)
    for package, entries in manifests.items():
        (package / MANIFEST).write_text(json.dumps(entries, indent=2) + "\n")
    print(f"compiled {len(MODULES)} modules: {', '.join(MODULES)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["build"]:
        return build()
    if args == ["clean"]:
        clean()
        return 0
    print("usage: python profiles/compiled.py build|clean", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
