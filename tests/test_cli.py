"""The costroute CLI: fast help, generate end to end, errors that name the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from costroute.cli import build_parser, main


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys; from costroute.cli import build_parser; build_parser().format_help(); "
        "heavy = [m for m in ('torch', 'onnxruntime', 'vllm', 'ray', 'transformers') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_subcommands() -> None:
    text = build_parser().format_help()
    assert "model" in text and "generate" in text


def test_cli_error_names_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--prompt", "x", "--max-tokens", "0"]) == 2
    assert "[max_tokens]" in capsys.readouterr().err


@pytest.mark.integration
def test_generate_prints_a_completion(tiny_model_dir: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "costroute.cli", "generate", "--model", str(tiny_model_dir),
         "--prompt", "Hello world", "--max-tokens", "12", "--ignore-eos", "--stats"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    assert "completion_tokens=12" in out.stderr


@pytest.mark.integration
def test_generate_rejects_a_missing_provider(tiny_model_dir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--model", str(tiny_model_dir), "--prompt", "x",
                 "--provider", "CANNExecutionProvider"]) == 2
    assert "onnxruntime-cann" in capsys.readouterr().err
