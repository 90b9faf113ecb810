"""The async driver: sends a workload's requests on time and collects their records.

Open loop: the schedule is computed before the run starts and paced against the monotonic
clock with absolute deadlines (no drift accumulates); each record keeps its scheduled and
real send times, so the lag is reported, not hidden. The max-in-flight cap holds a request
back (its lag shows it) rather than dropping it. Closed loop: `concurrency` workers each send
the next request when their previous one ends. Every run is bounded (duration and/or
request count); at the end the requests in flight are awaited, each bounded by the client's
timeout, so none is lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from loadtest.records import Record
from loadtest.workload import Planned, WorkloadSpec, bounded_plans, plan_requests

_START_LEAD_S = 0.05  # the first request is due this long after the run starts
_SPIN_S = 0.0012  # the last stretch before a send is waited by yielding, not by a timer


class Sender(Protocol):
    async def send(self, plan: Planned, t0: float, scheduled: float | None) -> Record:
        ...


@dataclass
class RunInfo:
    started_utc: str
    wall_s: float
    stopped: str  # why dispatching stopped: "schedule", "duration", "requests", "interrupted"
    planned: int  # requests the schedule held (open loop) or that were sent (closed loop)


class _Live:
    def __init__(self) -> None:
        self.sent = self.done = self.errors = self.in_flight = 0


async def run_load(spec: WorkloadSpec, sender: Sender, *, progress: bool = True) -> tuple[
        list[Record], RunInfo]:
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    live = _Live()
    records: list[Record] = []
    stop = asyncio.Event()
    _on_interrupt(stop)
    closed = spec.arrival.process == "closed"
    plans = None if closed else list(bounded_plans(spec))  # the whole schedule, up front
    total = len(plans) if plans is not None else spec.num_requests
    bar = _bar(total, progress)
    ticker = asyncio.create_task(_tick(bar, live))
    t0 = time.perf_counter() + _START_LEAD_S

    async def one(plan: Planned, scheduled: float | None) -> None:
        live.sent += 1
        live.in_flight += 1
        try:
            record = await sender.send(plan, t0, scheduled)
        except asyncio.CancelledError:
            record = Record(index=plan.index, sent_s=time.perf_counter() - t0,
                            scheduled_s=None if scheduled is None else scheduled - t0,
                            component=plan.component, slo_class=plan.slo_class,
                            slo=dict(plan.slo), warmup=plan.warmup,
                            error="cancelled: the run was interrupted")
        live.in_flight -= 1
        live.done += 1
        live.errors += not record.ok
        records.append(record)
        if bar is not None:
            bar.update(1)

    try:
        if plans is not None:
            stopped = await _open_loop(plans, one, t0, spec.max_in_flight, stop)
        else:
            stopped = await _closed_loop(spec, one, t0, stop)
    finally:
        ticker.cancel()
        _off_interrupt()
        if bar is not None:
            _postfix(bar, live)
            bar.close()
    records.sort(key=lambda r: r.index)
    return records, RunInfo(started, time.perf_counter() - t0, stopped,
                            len(plans) if plans is not None else live.sent)


async def _open_loop(plans: list[Planned], one, t0: float, cap: int,  # type: ignore[no-untyped-def]
                     stop: asyncio.Event) -> str:
    slots = asyncio.Semaphore(cap)
    tasks: set[asyncio.Task[None]] = set()

    async def guarded(plan: Planned, scheduled: float) -> None:
        try:
            await one(plan, scheduled)
        finally:
            slots.release()

    stopped = "schedule"
    overdue = 0
    for plan in plans:
        assert plan.at_s is not None
        due = t0 + plan.at_s
        delay = due - time.perf_counter()
        if delay > 0:
            overdue = 0
            await _sleep_until(due, delay)
        else:
            overdue += 1
            if overdue % 16 == 0:  # let started requests run while catching up
                await asyncio.sleep(0)
        if stop.is_set():
            stopped = "interrupted"
            break
        await slots.acquire()
        task = asyncio.create_task(guarded(plan, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await _drain(tasks, stop)
    return stopped


async def _sleep_until(due: float, delay: float) -> None:
    """Timers fire on a millisecond grid (epoll, libuv): sleep to just short of `due`, then
    yield to the loop (which keeps serving I/O) until the clock reaches it."""
    if delay > _SPIN_S:
        await asyncio.sleep(delay - _SPIN_S)
    while time.perf_counter() < due:
        await asyncio.sleep(0)


async def _closed_loop(spec: WorkloadSpec, one, t0: float,  # type: ignore[no-untyped-def]
                       stop: asyncio.Event) -> str:
    assert spec.arrival.concurrency is not None
    plans: Iterator[Planned] = plan_requests(spec)
    end = None if spec.duration_s is None else t0 + spec.warmup_s + spec.duration_s
    measured = 0
    stopped = "requests"

    async def worker() -> None:
        nonlocal measured, stopped
        while not stop.is_set():
            now = time.perf_counter()
            if end is not None and now >= end:
                stopped = "duration"
                return
            warm = now - t0 < spec.warmup_s
            if not warm:
                if spec.num_requests is not None and measured >= spec.num_requests:
                    return
                measured += 1
            plan = next(plans, None)
            if plan is None:
                stopped = "schedule"
                return
            await one(dataclasses.replace(plan, warmup=warm), None)
        stopped = "interrupted"

    await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
    workers = [asyncio.create_task(worker()) for _ in range(min(spec.arrival.concurrency,
                                                                spec.max_in_flight))]
    await _drain(set(workers), stop)
    return stopped


async def _drain(tasks: set[asyncio.Task[None]], stop: asyncio.Event) -> None:
    """Wait for the requests in flight; a second interrupt cancels them (each is recorded)."""
    while tasks:
        done, _ = await asyncio.wait(set(tasks), timeout=0.2)
        tasks.difference_update(done)
        if stop.is_set() and getattr(stop, "twice", False):
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return


def _on_interrupt(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def handler() -> None:
        if stop.is_set():
            stop.twice = True  # type: ignore[attr-defined]
            print("\ncostroute loadtest: cancelling the requests in flight", file=sys.stderr)
        else:
            stop.set()
            print("\ncostroute loadtest: interrupted; waiting for the requests in flight "
                  "(Ctrl-C again cancels them)", file=sys.stderr)

    try:
        loop.add_signal_handler(signal.SIGINT, handler)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
        pass


def _off_interrupt() -> None:
    try:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
    except (NotImplementedError, RuntimeError, ValueError):
        pass


def _bar(total: int | None, enabled: bool):  # type: ignore[no-untyped-def]
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="req", desc="loadtest", dynamic_ncols=True, file=sys.stderr)


def _postfix(bar, live: _Live) -> None:  # type: ignore[no-untyped-def]
    elapsed = max(time.perf_counter() - bar.start_t, 1e-9)
    bar.set_postfix_str(f"sent {live.sent / elapsed:.1f} req/s, in flight {live.in_flight}, "
                        f"errors {live.errors}", refresh=True)


async def _tick(bar, live: _Live) -> None:  # type: ignore[no-untyped-def]
    if bar is None:
        return
    while True:
        await asyncio.sleep(0.5)
        _postfix(bar, live)
