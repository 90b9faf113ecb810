"""The model builds deterministically and both formats agree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backends.errors import ConfigError, ModelNotFoundError
from backends.model import build_model, read_manifest, resolve_model

pytestmark = pytest.mark.integration


def test_manifest_describes_the_model(tiny_model_dir: Path) -> None:
    m = read_manifest(tiny_model_dir)
    assert m["dtype"] == "float32"
    assert 3_000_000 <= m["num_parameters"] <= 5_000_000
    assert set(m["files"]) >= {"model.safetensors", "onnx/model.onnx", "tokenizer.json", "config.json"}
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["vocab_size"] == m["vocab_size"]
    assert "chat_template" in json.loads((tiny_model_dir / "tokenizer_config.json").read_text())


def test_two_builds_are_byte_identical(tiny_model_dir: Path, tmp_path: Path) -> None:
    again = build_model("tiny", out=tmp_path / "again")
    assert read_manifest(again)["files"] == read_manifest(tiny_model_dir)["files"]
    assert read_manifest(again)["checksum"] == read_manifest(tiny_model_dir)["checksum"]


def test_a_matching_build_is_reused(tiny_model_dir: Path) -> None:
    before = (tiny_model_dir / "manifest.json").stat().st_mtime_ns
    assert build_model("tiny") == tiny_model_dir
    assert (tiny_model_dir / "manifest.json").stat().st_mtime_ns == before


def test_unknown_size_and_missing_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="huge"):
        build_model("huge")
    with pytest.raises(ModelNotFoundError, match="costroute model build"):
        resolve_model(str(tmp_path / "nothing"))


def test_chat_template_renders(tiny_model_dir: Path) -> None:
    from backends.tokenizer import Tokenizer

    tok = Tokenizer(tiny_model_dir)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}])
    assert text == "<|user|>\nhi<|end|>\n<|assistant|>\n"
    assert tok.decode(tok.encode("hello world")) == "hello world"
