"""The engines on an NVIDIA GPU (the `gpu` marker): skipped, with the reason, where there is
none (tests/conftest.py). Same checks as on CPU: greedy tokens equal the reference's."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.onnxruntime_engine import OnnxRuntimeEngine, OnnxRuntimeOptions
from tests.backends.engine_helpers import run, tokens

pytestmark = [pytest.mark.gpu, pytest.mark.integration]

PROMPT = [11, 250, 37, 900, 4, 61, 1500]


async def test_onnxruntime_cuda_provider_greedy_matches_transformers(
        tiny_model_dir: Path, hf_reference) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime without CUDAExecutionProvider: install onnxruntime-gpu")
    engine = OnnxRuntimeEngine(OnnxRuntimeOptions(
        model=str(tiny_model_dir), providers=("CUDAExecutionProvider",), max_num_seqs=4))
    await engine.start()
    try:
        chunks = await run(engine, "g", PROMPT, max_tokens=16, ignore_eos=True)
    finally:
        await engine.shutdown()
    assert tokens(chunks) == hf_reference(PROMPT, 16)
