"""Shared fixtures: the project's tiny model, built once per test session (reused from the cache)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    from backends.model import build_model

    return build_model("tiny")


@pytest.fixture(scope="session")
def hf_reference(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    """Greedy generation with transformers on the HF-format weights (CPU torch): the reference."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()

    def greedy(prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        """Argmax at every step, EOS included (like ignore_eos): full recompute, no cache."""
        ids = list(prompt_ids)
        with torch.no_grad():
            for _ in range(max_new_tokens):
                logits = model(torch.tensor([ids])).logits[0, -1]
                ids.append(int(torch.argmax(logits)))
        return ids[len(prompt_ids) :]

    return greedy


def _cuda_device() -> str | None:
    """Why there is no CUDA device to test on (None: there is one)."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA GPU (nvidia-smi not found)"
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nvidia-smi failed: {exc}"
    return None if out.returncode == 0 and "GPU" in out.stdout else "nvidia-smi lists no GPU"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` run where a CUDA device exists and are skipped, with the reason,
    elsewhere."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    why = _cuda_device()
    if why is not None:
        for item in gpu:
            item.add_marker(pytest.mark.skip(reason=f"gpu test: {why}"))
