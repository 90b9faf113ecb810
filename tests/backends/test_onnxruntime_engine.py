"""The ONNX Runtime engine on the real tiny model, checked against transformers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from backends.errors import (
    EmptyPromptError,
    InvalidSamplingError,
    PromptTooLongError,
    UnknownTokenError,
)
from backends.interface import Engine, GenerateRequest, SamplingParams
from backends.onnxruntime_engine import OnnxRuntimeEngine, OnnxRuntimeOptions
from tests.backends.engine_helpers import run as _run
from tests.backends.engine_helpers import tokens as _tokens
from tests.backends.engine_helpers import wait_idle as _wait_idle

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

# Prompts of different lengths (token ids drawn from a seeded RNG).
_RNG = np.random.default_rng(11)
PROMPTS = [[int(t) for t in _RNG.integers(10, 2000, size=n)] for n in (3, 17, 40, 9, 64, 1, 25, 33)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    e = OnnxRuntimeEngine(OnnxRuntimeOptions(model=str(tiny_model_dir), max_num_seqs=8))
    await e.start()
    yield e
    await e.shutdown()


async def test_it_is_an_engine(engine: OnnxRuntimeEngine) -> None:
    assert isinstance(engine, Engine)
    engine.health()


async def test_greedy_matches_transformers_alone(engine: OnnxRuntimeEngine, hf_reference) -> None:  # type: ignore[no-untyped-def]
    chunks = await _run(engine, "one", PROMPTS[1], max_tokens=24, ignore_eos=True)
    assert _tokens(chunks) == hf_reference(PROMPTS[1], 24)
    last = chunks[-1]
    assert last.finish_reason == "length"
    assert last.usage is not None and last.usage.prompt_tokens == len(PROMPTS[1])
    assert last.usage.completion_tokens == 24


async def test_concurrent_mixed_lengths_match_transformers(engine: OnnxRuntimeEngine, hf_reference) -> None:  # type: ignore[no-untyped-def]
    """8 requests of different lengths, arriving at different times, share the batch."""

    async def delayed(i: int, ids: list[int]) -> list[int]:
        await asyncio.sleep(0.004 * i)  # joins a batch that is already decoding
        return _tokens(await _run(engine, f"c{i}", ids, max_tokens=20 + i, ignore_eos=True))

    steps_before = engine.steps
    results = await asyncio.gather(*(delayed(i, ids) for i, ids in enumerate(PROMPTS)))
    for i, (ids, got) in enumerate(zip(PROMPTS, results)):
        assert got == hf_reference(ids, 20 + i), f"request {i} (prompt {len(ids)} tokens)"
    # Batched: far fewer engine steps than tokens generated.
    assert engine.steps - steps_before < sum(len(r) for r in results) / 2


async def test_streaming_deltas_rebuild_the_text(engine: OnnxRuntimeEngine) -> None:
    chunks = await _run(engine, "s", prompt="The cost of a token is", max_tokens=30, ignore_eos=True)
    assert len(chunks) == 30  # one chunk per token
    ids = _tokens(chunks)
    assert "".join(c.text for c in chunks) == engine.tokenizer.decode(ids)
    assert sum(bool(c.text) for c in chunks) > 5  # text arrives incrementally


async def test_stop_string_stops_and_is_excluded(engine: OnnxRuntimeEngine) -> None:
    full = await _run(engine, "full", PROMPTS[2], max_tokens=40, ignore_eos=True)
    text = "".join(c.text for c in full)
    stop = text[10:13]
    chunks = await _run(engine, "stop", PROMPTS[2], max_tokens=40, stop=[stop], ignore_eos=True)
    got = "".join(c.text for c in chunks)
    assert chunks[-1].finish_reason == "stop"
    assert got == text[: text.index(stop)]
    assert len(_tokens(chunks)) < 40


async def test_stop_token_ids(engine: OnnxRuntimeEngine) -> None:
    full = _tokens(await _run(engine, "f2", PROMPTS[3], max_tokens=12, ignore_eos=True))
    chunks = await _run(engine, "st", PROMPTS[3], max_tokens=12, stop_token_ids=[full[5]],
                        ignore_eos=True)
    assert _tokens(chunks) == full[: full.index(full[5]) + 1]
    assert chunks[-1].finish_reason == "stop"


async def test_max_tokens_one(engine: OnnxRuntimeEngine) -> None:
    chunks = await _run(engine, "m1", PROMPTS[0], max_tokens=1, ignore_eos=True)
    assert len(_tokens(chunks)) == 1 and chunks[-1].finish_reason == "length"


async def test_seeded_sampling(engine: OnnxRuntimeEngine) -> None:
    kw = dict(max_tokens=20, temperature=1.0, top_p=0.9, ignore_eos=True)
    a = _tokens(await _run(engine, "a", PROMPTS[4], seed=5, **kw))
    b, c = await asyncio.gather(
        _run(engine, "b", PROMPTS[4], seed=5, **kw), _run(engine, "c", PROMPTS[4], seed=6, **kw)
    )
    assert a == _tokens(b)  # same seed, same tokens, even when batched with another request
    assert a != _tokens(c)


async def test_abort_frees_the_slot(engine: OnnxRuntimeEngine) -> None:
    request = GenerateRequest("ab", prompt_token_ids=PROMPTS[5],
                              sampling=SamplingParams(max_tokens=1500, ignore_eos=True))
    chunks = []
    async for chunk in engine.generate(request):
        chunks.append(chunk)
        if len(chunks) == 3:
            assert engine.load().running == 1
            await engine.abort("ab")
    assert chunks[-1].finish_reason == "abort"
    assert len(chunks) < 50
    assert engine.load().running == 0 and engine.load().kv_tokens_used == 0


async def test_breaking_out_of_the_stream_aborts(engine: OnnxRuntimeEngine) -> None:
    gen = engine.generate(GenerateRequest("brk", prompt_token_ids=PROMPTS[6],
                                          sampling=SamplingParams(max_tokens=1500, ignore_eos=True)))
    async for _ in gen:
        break
    await gen.aclose()
    await _wait_idle(engine)
    assert engine.load().running == 0 and engine.load().kv_tokens_used == 0


async def test_waiting_requests_queue_fifo_past_the_cap(engine: OnnxRuntimeEngine) -> None:
    # max_num_seqs=8: 12 requests, the last 4 wait and still complete.
    results = await asyncio.gather(
        *(_run(engine, f"q{i}", PROMPTS[i % 8], max_tokens=8, ignore_eos=True) for i in range(12))
    )
    assert all(len(_tokens(r)) == 8 for r in results)
    assert engine.load().running == 0 and engine.load().waiting == 0


@pytest.mark.parametrize(
    "kwargs, error, field",
    [
        ({"prompt": ""}, EmptyPromptError, "prompt"),
        ({"ids": []}, EmptyPromptError, "prompt"),
        ({"ids": [1] * 2048}, PromptTooLongError, "prompt"),
        ({"ids": [1] * 100, "max_tokens": 2000}, PromptTooLongError, "max_tokens"),
        ({"ids": [1], "max_tokens": 0}, InvalidSamplingError, "max_tokens"),
        ({"ids": [1, 999_999]}, UnknownTokenError, "prompt"),
        ({"ids": [1, -3]}, UnknownTokenError, "prompt"),
        ({"ids": [1], "temperature": -0.5}, InvalidSamplingError, "temperature"),
    ],
)
async def test_bad_input_errors_and_the_engine_keeps_serving(
    engine: OnnxRuntimeEngine, hf_reference, kwargs, error, field  # type: ignore[no-untyped-def]
) -> None:
    # A healthy request runs alongside the bad one.
    good = asyncio.ensure_future(_run(engine, f"good-{field}", PROMPTS[7], max_tokens=16,
                                      ignore_eos=True))
    sampling = {k: v for k, v in kwargs.items() if k not in ("ids", "prompt")}
    with pytest.raises(error) as info:
        await _run(engine, f"bad-{field}", kwargs.get("ids"), kwargs.get("prompt"), **sampling)
    assert info.value.field == field
    assert _tokens(await good) == hf_reference(PROMPTS[7], 16)
    engine.health()


async def test_duplicate_request_id_is_rejected(engine: OnnxRuntimeEngine) -> None:
    first = engine.generate(GenerateRequest("dup", prompt_token_ids=PROMPTS[0],
                                            sampling=SamplingParams(max_tokens=500, ignore_eos=True)))
    await first.__anext__()
    with pytest.raises(Exception, match="already in use"):
        await _run(engine, "dup", PROMPTS[0])
    await first.aclose()


async def test_load_figures(engine: OnnxRuntimeEngine) -> None:
    await _wait_idle(engine)
    load = engine.load()
    assert load.max_num_seqs == 8 and load.kv_tokens_capacity == 65536
    assert load.kv_usage == 0.0


async def test_first_token_goes_out_before_the_next_decode_step(tiny_model_dir: Path) -> None:
    # every engine run (prefill or decode step) takes >= 150 ms here (the fault knob), so a
    # first token held back until after the following decode step would arrive at ~300 ms
    slow = OnnxRuntimeEngine(OnnxRuntimeOptions(model=str(tiny_model_dir), step_delay_ms=150))
    await slow.start()
    try:
        request = GenerateRequest("slow-1", prompt_token_ids=tuple(PROMPTS[1]),
                                  sampling=SamplingParams(max_tokens=3, ignore_eos=True))
        started = asyncio.get_running_loop().time()
        first = None
        async for chunk in slow.generate(request):
            if first is None and chunk.token_ids:
                first = asyncio.get_running_loop().time() - started
        assert first is not None and 0.15 <= first < 0.25
    finally:
        await slow.shutdown()


async def test_request_trace(tiny_model_dir: Path, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """COSTROUTE_ENGINE_TRACE: one line per finished request, its times in order and on the
    caller's perf_counter clock."""
    import json
    import time

    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv("COSTROUTE_ENGINE_TRACE", str(trace))
    traced = OnnxRuntimeEngine(OnnxRuntimeOptions(model=str(tiny_model_dir), step_delay_ms=20))
    await traced.start()
    try:
        before = time.perf_counter()
        await asyncio.gather(*(_run(traced, f"t-{i}", PROMPTS[i], max_tokens=4, ignore_eos=True)
                               for i in range(2)))
        after = time.perf_counter()
    finally:
        await traced.shutdown()
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    assert sorted(line["request_id"] for line in lines) == ["t-0", "t-1"]
    for line in lines:
        assert line["output_tokens"] == 4 and line["reason"] == "length"
        assert before <= line["arrived"] <= line["admitted"] < line["first_token"]
        assert line["first_token"] - line["admitted"] >= 0.02  # the prefill, with its delay
        assert line["finished"] - line["first_token"] >= 3 * 0.02  # three decode steps
        assert line["finished"] <= after
