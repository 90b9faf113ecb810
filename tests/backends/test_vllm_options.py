"""VllmOptions: validation and the engine arguments they become (pure; vLLM not imported)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backends.errors import ConfigError, EngineNotStartedError
from backends.vllm_engine import VllmEngine, VllmOptions

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"model": ""}, "model"),
        ({"dtype": "int3"}, "dtype"),
        ({"max_model_len": 1}, "max_model_len"),
        ({"max_model_len": 64.0}, "max_model_len"),
        ({"max_num_seqs": 0}, "max_num_seqs"),
        ({"kv_cache_memory_bytes": 1024}, "kv_cache_memory_bytes"),
        ({"kv_cache_space_gib": 0}, "kv_cache_space_gib"),
        ({"kv_cache_space_gib": 1, "kv_cache_memory_bytes": 1 << 30}, "kv_cache_space_gib"),
        ({"tensor_parallel_size": 0}, "tensor_parallel_size"),
        ({"enforce_eager": "yes"}, "enforce_eager"),
        ({"engine_args": {"max_num_seqs": 4}}, "engine_args.max_num_seqs"),
    ],
)
def test_bad_options_name_the_field(kwargs, field) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        VllmEngine(VllmOptions(**kwargs))
    assert info.value.field == field


def test_defaults_are_valid() -> None:
    engine = VllmEngine()
    assert engine.options.dtype == "float32" and engine.options.enforce_eager
    with pytest.raises(EngineNotStartedError):
        engine.health()
    assert engine.load().running == 0


def test_importing_the_module_does_not_import_vllm() -> None:
    code = "import sys, backends.vllm_engine; sys.exit('vllm' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_engine_kwargs_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    options = VllmOptions(max_model_len=512, max_num_seqs=4, engine_args={"block_size": 32})
    kwargs = VllmEngine(options)._engine_kwargs(Path("/m"), on_cpu=True)
    assert kwargs["model"] == "/m" and kwargs["dtype"] == "float32"
    assert kwargs["max_model_len"] == 512 and kwargs["max_num_seqs"] == 4
    assert kwargs["kv_cache_memory_bytes"] == 1 << 30  # the CPU default
    assert kwargs["enforce_eager"] is True and kwargs["block_size"] == 32


def test_kv_cache_space_gib_sets_the_cpu_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    kwargs = VllmEngine(VllmOptions(kv_cache_space_gib=2))._engine_kwargs(Path("/m"), on_cpu=True)
    assert "kv_cache_memory_bytes" not in kwargs
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "2"
    gpu = VllmEngine(VllmOptions(kv_cache_space_gib=2))._engine_kwargs(Path("/m"), on_cpu=False)
    assert gpu["kv_cache_memory_bytes"] == 2 << 30


def test_explicit_bytes_win_over_the_cpu_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "4")
    kwargs = VllmEngine(VllmOptions(kv_cache_memory_bytes=256 << 20))._engine_kwargs(
        Path("/m"), on_cpu=True
    )
    assert kwargs["kv_cache_memory_bytes"] == 256 << 20
    assert "VLLM_CPU_KVCACHE_SPACE" not in os.environ


def test_the_cpu_variable_is_respected_when_no_option_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "3")
    kwargs = VllmEngine(VllmOptions())._engine_kwargs(Path("/m"), on_cpu=True)
    assert "kv_cache_memory_bytes" not in kwargs


def test_no_kv_default_on_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    kwargs = VllmEngine(VllmOptions())._engine_kwargs(Path("/m"), on_cpu=False)
    assert "kv_cache_memory_bytes" not in kwargs  # vLLM sizes it from free GPU memory
