"""Synthetic profile tables for unit tests (clearly not measurements)."""

from __future__ import annotations

from profiles.table import ProfileTable, Surface


def synthetic_profile(
    prefill_ms_per_token: float = 0.05,
    step_base_ms: float = 2.0,
    step_per_seq_ms: float = 0.25,
    step_per_kctx_ms: float = 0.5,
    max_num_seqs: int = 8,
    kv_tokens: int = 100_000,
    backend_id: str = "synthetic",
    join_ms_per_running: float | None = None,
) -> ProfileTable:
    """`join_ms_per_running`: with it, a join surface where joining b decoding sequences adds
    b x that to a lone prefill."""
    batch = (1, 2, 4, 8)
    tokens = (16, 64, 256, 1024)
    prefill = tuple(tuple(1.0 + prefill_ms_per_token * b * t for t in tokens) for b in batch)
    decode = tuple(
        tuple(step_base_ms + step_per_seq_ms * b + step_per_kctx_ms * b * t / 1000 for t in tokens)
        for b in batch
    )
    return ProfileTable(
        backend_id=backend_id,
        kind="estimated",
        engine={"name": "synthetic", "version": "0"},
        accelerator="none",
        hardware={"note": "synthetic table for tests"},
        model={"id": "synthetic", "checksum": "0" * 64, "dtype": "float32"},
        created="2026-01-01T00:00:00Z",
        command="tests/profiles/synthetic.py",
        prefill=Surface(batch, tokens, prefill),
        decode=Surface(batch, tokens, decode),
        capacity={"max_num_seqs": max_num_seqs, "kv_tokens": kv_tokens},
        join=None if join_ms_per_running is None else Surface(batch, tokens, tuple(
            tuple(prefill[0][j] + join_ms_per_running * b for j in range(len(tokens)))
            for b in batch)),
    )
