"""Measuring an interference table (profiles/interference.py says what one measurement is):
the probe against live servers, its neighbours kept busy. `costroute profile interference`
runs it; the table itself is pure and lives apart, so the simulator loads no HTTP client."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from profiles.interference import KINDS, InterferenceTable, Kind, Slowdown
from profiles.targets import Target

PROBE_DECODE_PROMPT, PROBE_DECODE_TOKENS = 64, 33
PROBE_PREFILL_PROMPT = 256
BACKGROUND = {"decode": (64, 128), "prefill": (512, 1)}  # a busy neighbour's requests:
# (prompt tokens, max_tokens)


def neighbour_sets(backends: list[str], backend: str, max_size: int) -> list[tuple[str, ...]]:
    """The busy-neighbour sets measured for `backend`: every set of up to `max_size`."""
    others = [b for b in backends if b != backend]
    return [s for k in range(1, min(max_size, len(others)) + 1)
            for s in itertools.combinations(sorted(others), k)]


async def measure(targets: dict[str, Target], vocab_size: int, *, repetitions: int = 5,
                  streams: Sequence[int] = (1, 2), max_set: int = 2, seed: int = 0,
                  progress: Callable[[int], None] = lambda n: None) -> list[Slowdown]:
    """One row per backend, set of busy neighbours (up to `max_set` of them), what they do and
    how many requests each keeps in flight (`streams`), each from `repetitions` idle/busy
    pairs of probes."""
    from profiles.profiler import prompt_ids

    rng = np.random.default_rng(seed)
    names = sorted(targets)

    async def probe(t: Target) -> tuple[float, float]:  # (decode step, prefill), seconds
        d = await t.run(prompt_ids(rng, PROBE_DECODE_PROMPT, vocab_size), PROBE_DECODE_TOKENS)
        p = await t.run(prompt_ids(rng, PROBE_PREFILL_PROMPT, vocab_size), 1)
        for timing in (d, p):
            if timing.error or not timing.token_times:
                raise RuntimeError(f"the backend failed during profiling: {timing.error}")
        # the mean gap (the probe's TPOT), not the median: a neighbour's slices of the cores
        # stall some gaps and leave others short, and the simulator slows a step's mean rate
        return (d.tpot_ms or 0.0) / 1e3, p.token_times[0] - p.sent

    async def keep_busy(t: Target, op: Kind, stop: asyncio.Event,
                        started: Callable[[], None]) -> None:
        prompt, tokens = BACKGROUND[op]
        first = True

        def on_tokens(n: int) -> None:  # tells `started` once, at this stream's first token
            nonlocal first
            if first:
                first = False
                started()

        while not stop.is_set():
            timing = await t.run(prompt_ids(rng, prompt, vocab_size), tokens, on_tokens)
            if timing.error:
                raise RuntimeError(f"a busy neighbour failed during profiling: {timing.error}")

    async def probe_busy(backend: str, busy: tuple[str, ...], op: Kind,
                         n: int) -> tuple[float, float]:
        """The probe while each of `busy` runs `n` requests at a time."""
        stop, all_started = asyncio.Event(), asyncio.Event()
        waiting_for = len(busy) * n  # streams yet to see their first token

        def started() -> None:
            nonlocal waiting_for
            waiting_for -= 1
            if not waiting_for:
                all_started.set()

        workers = [asyncio.create_task(keep_busy(targets[nb], op, stop, started))
                   for nb in busy for _ in range(n)]
        ready = asyncio.ensure_future(all_started.wait())
        watched: list[asyncio.Future[Any]] = [ready, *workers]
        await asyncio.wait(watched, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():  # a neighbour failed (or never answered): stop them all
            stop.set()
            ready.cancel()
            for w in workers:
                w.cancel()
            failed = [w.exception() for w in workers if w.done() and not w.cancelled()]
            raise RuntimeError(f"busy neighbours {list(busy)} did not start: "
                               f"{failed[0] if failed else 'no token in 60 s'}")
        result = await probe(targets[backend])
        stop.set()
        await asyncio.gather(*workers)
        return result

    rows = []
    for backend in names:
        await probe(targets[backend])  # warm the path
        for busy, op, n in [(b, op, n) for b in neighbour_sets(names, backend, max_set)
                            for op in KINDS for n in streams]:
            idle: list[tuple[float, float]] = []
            loaded: list[tuple[float, float]] = []
            for _ in range(repetitions):
                idle.append(await probe(targets[backend]))
                loaded.append(await probe_busy(backend, busy, op, n))
                progress(1)
            ms = {"decode_idle": statistics.median(d for d, _ in idle) * 1e3,
                  "decode_busy": statistics.median(d for d, _ in loaded) * 1e3,
                  "prefill_idle": statistics.median(p for _, p in idle) * 1e3,
                  "prefill_busy": statistics.median(p for _, p in loaded) * 1e3}
            rows.append(Slowdown(backend, busy, op, round(ms["prefill_busy"] / ms["prefill_idle"], 4),
                                 round(ms["decode_busy"] / ms["decode_idle"], 4),
                                 {k: round(v, 3) for k, v in ms.items()}, n))
    return rows


def make_table(node: str, rows: list[Slowdown], command: str, *, repetitions: int,
               elapsed_s: float) -> InterferenceTable:
    from profiles.profiler import hardware_description

    return InterferenceTable(
        node=node, rows=tuple(rows),
        created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        command=command, hardware=hardware_description(),
        notes={"repetitions": repetitions,
               "decode_statistic": "the probe's mean token gap (its TPOT)",
               "probe": {"decode_prompt_tokens": PROBE_DECODE_PROMPT,
                         "decode_tokens": PROBE_DECODE_TOKENS,
                         "prefill_prompt_tokens": PROBE_PREFILL_PROMPT},
               "background": {op: {"prompt_tokens": p, "max_tokens": t}
                              for op, (p, t) in BACKGROUND.items()},
               "elapsed_s": round(elapsed_s, 1)})
