"""The profiler: sweeps a live backend and writes its profile table.

What one measurement is (the latency model reads the table with the same meaning):
* prefill(b, p): b requests of p prompt tokens sent at once with max_tokens=1; the time
  until the last of them has its first token. The median of the repetitions is stored,
  with the p90-p10 spread. With `idle_s`, the backend is left idle that long before each
  one: requests that arrive one by one meet a serving path that has gone quiet (over HTTP
  through Ray Serve on a small machine that costs milliseconds), not one kept warm by a
  request just before.
* decode(b, c): b requests of c prompt tokens sent at once, `decode_steps` + 1 tokens each;
  the mean gap between consecutive tokens once all are decoding (TPOT is a mean gap too: over
  HTTP a few stalled gaps among short ones are part of what a client waits). The context axis
  is the mean context during those steps, c + decode_steps / 2.
* join(b, p): b requests of 64 prompt tokens decoding (128 tokens each, twice that while
  they end too soon); once each has streamed two tokens, one request of p prompt tokens
  joins them with max_tokens=1. Stored: its TTFT less half the decode step the
  running requests showed before it arrived (the latency model adds that wait itself). The
  difference from prefill(1, p) is what a running batch costs a prefill on this backend:
  on an engine alone, little more than the step it waits for; through a serving path that
  shares cores with the running requests' token streams, much more.
* path jitter: every batch-1 prefill sample less the median of its cell. A lone request's
  TTFT varies from one request to the next (through Ray Serve on this machine: p50 30.5 ms,
  p90 37.5 ms, mean 33.3 ms over 80 quiet requests); the simulator draws one of these per
  request for its serving path.
* capacity: the engine's own caps (max_num_seqs, KV tokens) where it reports them, else
  the caller's figures.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import platform
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from profiles.table import ProfileTable, Surface
from profiles.targets import Target, Timing


@dataclass(frozen=True)
class SweepPlan:
    prefill_batch: tuple[int, ...]
    prefill_tokens: tuple[int, ...]
    decode_batch: tuple[int, ...]
    decode_context: tuple[int, ...]
    decode_steps: int
    repetitions: int
    warmup: int
    join_batch: tuple[int, ...] = ()  # running sequences a prefill joins (empty: no join surface)

    def fitted(self, max_num_seqs: int, max_model_len: int) -> SweepPlan:
        """Drop grid points the backend cannot run."""
        limit = max_model_len - self.decode_steps - 2
        return SweepPlan(
            tuple(b for b in self.prefill_batch if b <= max_num_seqs) or (1,),
            tuple(t for t in self.prefill_tokens if t < max_model_len - 1) or (1,),
            tuple(b for b in self.decode_batch if b <= max_num_seqs) or (1,),
            tuple(c for c in self.decode_context if c <= limit) or (1,),
            self.decode_steps,
            self.repetitions,
            self.warmup,
            tuple(b for b in self.join_batch if b < max_num_seqs),  # room for the one joining
        )

    @property
    def measurements(self) -> int:
        cells = len(self.prefill_batch) * len(self.prefill_tokens)
        cells += len(self.decode_batch) * len(self.decode_context)
        cells += len(self.join_batch) * len(self.prefill_tokens)
        return cells * self.repetitions


QUICK = SweepPlan(
    prefill_batch=(1, 2, 4, 8),
    prefill_tokens=(16, 64, 256, 512, 1024),
    decode_batch=(1, 2, 4, 8, 16, 32),
    decode_context=(16, 128, 512, 1024),
    decode_steps=16,
    repetitions=3,
    warmup=2,
    join_batch=(1, 2, 4, 8),
)
FULL = SweepPlan(
    prefill_batch=(1, 2, 4, 8, 16),
    prefill_tokens=(16, 32, 64, 128, 256, 512, 1024),
    decode_batch=(1, 2, 4, 8, 12, 16, 24, 32),
    decode_context=(32, 64, 128, 256, 512, 1024),
    decode_steps=32,
    repetitions=5,
    warmup=3,
    join_batch=(1, 2, 4, 8, 16),
)


def prompt_ids(rng: np.random.Generator, n: int, vocab_size: int) -> list[int]:
    """Random prompt token ids, away from the special tokens at the start of the vocabulary."""
    return [int(t) for t in rng.integers(16, vocab_size, size=n)]


@dataclass(frozen=True)
class Swept:
    prefill: Surface
    decode: Surface
    join: Surface | None  # None when the plan has no join rows
    path_jitter_ms: tuple[float, ...]  # batch-1 prefill samples less their cell's median


async def sweep(
    target: Target,
    plan: SweepPlan,
    vocab_size: int,
    progress: Callable[[int], None] = lambda n: None,
    seed: int = 0,
    idle_s: float = 0.0,
    max_model_len: int | None = None,
) -> Swept:
    """The prefill, decode and join surfaces and the path jitter."""
    rng = np.random.default_rng(seed)
    for _ in range(plan.warmup):
        await _group(target, rng, vocab_size, 2, plan.prefill_tokens[0], plan.decode_steps + 1)

    async def prefill(b: int, p: int) -> float:
        if idle_s > 0:
            await asyncio.sleep(idle_s)
        timings = await _group(target, rng, vocab_size, b, p, 1)
        return max(t.token_times[0] for t in timings) - min(t.sent for t in timings)

    async def decode(b: int, c: int) -> float:
        timings = await _group(target, rng, vocab_size, b, c, plan.decode_steps + 1)
        return _decode_gap(timings)

    background = JOIN_BACKGROUND_TOKENS  # grows (and stays grown) if running requests end early

    async def join(b: int, p: int) -> float:
        nonlocal background
        sample = await _join(target, rng, vocab_size, b, p, background)
        while sample is None:  # the running requests ended before it joined
            longer = 2 * background
            if longer > JOIN_BACKGROUND_MAX or (
                    max_model_len is not None and longer + JOIN_BACKGROUND_PROMPT >= max_model_len):
                raise RuntimeError(
                    f"join({b}, {p}): the running requests end before the joining one has its "
                    f"first token, even at {background} tokens each")
            background = longer
            sample = await _join(target, rng, vocab_size, b, p, background)
        return sample

    jitter: list[float] = []

    async def grid(rows: tuple[int, ...], columns: tuple[int, ...],
                   sample: Callable[[int, int], Awaitable[float]], lone: list[float] | None = None,
                   ) -> tuple[tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...]]:
        """Median (ms) and p90-p10 spread of the repetitions at every cell, row by row;
        `lone` gets the batch-1 samples less their cell's median (ms)."""
        ms, spread = [], []
        for b in rows:
            row, row_spread = [], []
            for c in columns:
                samples = []
                for _ in range(plan.repetitions):
                    samples.append(await sample(b, c))
                    progress(1)
                median = statistics.median(samples)
                row.append(median * 1e3)
                row_spread.append(_spread(samples) * 1e3)
                if lone is not None and b == 1:
                    lone.extend(round((x - median) * 1e3, 3) for x in samples)
            ms.append(tuple(row))
            spread.append(tuple(row_spread))
        return tuple(ms), tuple(spread)

    prefill_ms, prefill_spread = await grid(plan.prefill_batch, plan.prefill_tokens, prefill,
                                            jitter)
    decode_ms, decode_spread = await grid(plan.decode_batch, plan.decode_context, decode)
    join_surface = None
    if plan.join_batch:
        join_ms, join_spread = await grid(plan.join_batch, plan.prefill_tokens, join)
        join_surface = Surface(plan.join_batch, plan.prefill_tokens, join_ms, join_spread)

    contexts = tuple(c + plan.decode_steps // 2 for c in plan.decode_context)
    return Swept(
        Surface(plan.prefill_batch, plan.prefill_tokens, prefill_ms, prefill_spread),
        Surface(plan.decode_batch, contexts, decode_ms, decode_spread),
        join_surface,
        tuple(sorted(jitter)),
    )


JOIN_BACKGROUND_TOKENS = 128  # tokens each running request decodes while one joins
JOIN_BACKGROUND_PROMPT = 64
JOIN_BACKGROUND_MAX = 4096


async def _join(target: Target, rng: np.random.Generator, vocab: int, running: int,
                tokens: int, background_tokens: int) -> float | None:
    """One join sample (seconds), or None if a running request finished before the joining
    one had its first token (the caller retries with longer running requests)."""
    streamed = [0] * running
    decoding = asyncio.Event()

    def counter(i: int) -> Callable[[int], None]:
        def on_tokens(n: int) -> None:
            streamed[i] += n
            if min(streamed) >= 2:
                decoding.set()
        return on_tokens

    tasks = [asyncio.create_task(target.run(prompt_ids(rng, JOIN_BACKGROUND_PROMPT, vocab),
                                            background_tokens, counter(i)))
             for i in range(running)]
    waiter = asyncio.create_task(decoding.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    probe = None
    if decoding.is_set():
        probe = await target.run(prompt_ids(rng, tokens, vocab), 1)
    waiter.cancel()
    timings = list(await asyncio.gather(*tasks))
    errors = [t.error for t in [*timings, *([probe] if probe else [])] if t.error or not t.token_times]
    if errors:
        raise RuntimeError(f"the backend failed during profiling: {errors[0]}")
    if probe is None:
        return None
    first = probe.token_times[0]
    if min(t.token_times[-1] for t in timings) <= first:
        return None
    gaps = [b - a for t in timings for a, b in zip(t.token_times, t.token_times[1:])
            if b <= probe.sent and b > a]
    step = statistics.median(gaps) if gaps else 0.0
    return max(first - probe.sent - step / 2, 1e-6)


async def _group(
    target: Target, rng: np.random.Generator, vocab: int, batch: int, tokens: int, max_tokens: int
) -> list[Timing]:
    prompts = [prompt_ids(rng, tokens, vocab) for _ in range(batch)]
    timings = await asyncio.gather(*(target.run(p, max_tokens) for p in prompts))
    errors = [t.error for t in timings if t.error or not t.token_times]
    if errors:
        raise RuntimeError(f"the backend failed during profiling: {errors[0]}")
    return list(timings)


def _decode_gap(timings: list[Timing]) -> float:
    """Mean gap between tokens once every request of the group has its first token."""
    all_started = max(t.token_times[0] for t in timings)
    gaps = [
        b - a
        for t in timings
        for a, b in zip(t.token_times, t.token_times[1:])
        if a >= all_started
    ]
    return statistics.fmean(gaps) if gaps else 0.0


def _spread(samples: list[float]) -> float:
    if len(samples) < 2:
        return 0.0
    q = statistics.quantiles(samples, n=10, method="inclusive")
    return q[-1] - q[0]


def hardware_description() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                memory_gib = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "gpu": os.environ.get("COSTROUTE_GPU_NAME") or None,
        "platform": platform.platform(),
    }


def make_table(
    *,
    backend_id: str,
    accelerator: str,
    engine: dict[str, Any],
    model: dict[str, Any],
    command: str,
    swept: Swept,
    capacity: dict[str, int],
    plan: SweepPlan,
    elapsed_s: float,
    idle_ms: float = 0.0,
) -> ProfileTable:
    return ProfileTable(
        backend_id=backend_id,
        kind="measured",
        engine=engine,
        accelerator=accelerator,
        hardware=hardware_description(),
        model=model,
        created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        command=command,
        prefill=swept.prefill,
        decode=swept.decode,
        capacity=capacity,
        join=swept.join,
        path_jitter_ms=swept.path_jitter_ms,
        notes={
            "repetitions": plan.repetitions,
            "warmup": plan.warmup,
            "decode_steps": plan.decode_steps,
            "idle_ms_before_prefill": idle_ms,
            "join_running_prompt_tokens": (JOIN_BACKGROUND_PROMPT if swept.join is not None
                                           else None),
            "elapsed_s": round(elapsed_s, 1),
            "load_average": list(os.getloadavg()),
        },
    )
