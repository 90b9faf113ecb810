"""The latency model (pure): predict TTFT, TPOT and E2E of one request on one backend in its
current state, from the backend's profile table.

The backend is modelled as the continuous-batching engine it is: at each step boundary it
admits queued requests in FIFO order while the caps allow (sequences, KV tokens), prefills
them together, then runs decode steps for the whole batch. The prediction walks that
schedule from one event (a sequence finishing, a request joining) to the next, so its cost
is O(n log n) in the sequences involved, not O(tokens):

* step time = decode(batch size, mean context) from the profile, held constant between
  events at the phase's mid-point context; prefill time = prefill(group size, longest prompt);
* a new request waits for the step in flight (half a step, on average), for the requests
  queued ahead of it, and for a free slot if the batch is full;
* joining the batch makes every step slower for everyone; the walk includes that, and
  reports what the request adds to the others' time (`others_delay_ms`);
* a prefill run that joins a running batch may take longer than on an idle backend (the
  running sequences' work and token streaming compete with it for the same processors):
  where the profile has a `join` surface (one request's prefill while b sequences decode),
  a group admitted into b running sequences takes prefill(group, longest prompt) plus
  join(b, prompt) - prefill(1, prompt), never less than prefill alone;
* requests that arrive later are prefilled between decode steps: with arrivals at rate
  lambda, each taking prefill(1, mean prompt), decoding runs only 1 - rho of the time,
  rho = lambda x prefill (capped at 0.9), so decode phases last 1 / (1 - rho) longer.

`replica_ms` is the replica time the request uses: its prefill run split among the requests
prefilled with it, plus each decode step split among the sequences in it. The cost model
prices that time (profiles/cost.py).
"""

from __future__ import annotations

import math
from bisect import insort
from dataclasses import dataclass
from typing import Final, NamedTuple

from profiles.grid import Grid2D
from profiles.table import ProfileTable, Surface


class RequestShape(NamedTuple):
    prompt_tokens: int
    output_tokens: int  # expected output tokens (max_tokens if nothing better is known)


class RunningSeq(NamedTuple):
    context_tokens: int  # prompt + tokens generated so far
    remaining_tokens: int  # tokens still expected


class BackendLoad(NamedTuple):
    """One backend's state as the router sees it (per replica)."""

    running: tuple[RunningSeq, ...] = ()
    waiting: tuple[RequestShape, ...] = ()  # queued ahead of a new request, FIFO
    arrival_rate_per_s: float = 0.0  # recent arrivals: their prefills will interrupt decoding
    mean_prompt_tokens: float = 0.0  # of those arrivals
    # The tightest TPOT target among the requests there (running or waiting; inf: none): a
    # newcomer must not push them past it (`LatencyModel.others_tpot_ms`).
    tightest_tpot_ms: float = math.inf


class Prediction(NamedTuple):
    ttft_ms: float
    tpot_ms: float
    e2e_ms: float
    queue_ms: float  # part of TTFT spent waiting to be admitted
    replica_ms: float  # replica time this request uses (what it costs)
    others_delay_ms: float  # time this request adds to the requests already there
    extrapolated: bool  # some time came from outside the measured grid


@dataclass(frozen=True)
class Correction:
    """Online correction: observed / predicted, smoothed (EWMA of the log ratio, so one slow
    request does not outweigh one fast one) and bounded."""

    ttft_factor: float = 1.0
    tpot_factor: float = 1.0
    alpha: float = 0.05
    low: float = 0.5
    high: float = 2.0

    def update(
        self, predicted: Prediction, observed_ttft_ms: float | None, observed_tpot_ms: float | None
    ) -> Correction:
        """A new correction after one finished request (observed None: nothing to learn)."""
        ttft, tpot = self.ttft_factor, self.tpot_factor
        if observed_ttft_ms is not None and predicted.ttft_ms > 0:
            ttft = self._blend(ttft, observed_ttft_ms / (predicted.ttft_ms / self.ttft_factor))
        if observed_tpot_ms is not None and predicted.tpot_ms > 0:
            tpot = self._blend(tpot, observed_tpot_ms / (predicted.tpot_ms / self.tpot_factor))
        return Correction(ttft, tpot, self.alpha, self.low, self.high)

    def _blend(self, factor: float, ratio: float) -> float:
        if ratio <= 0:
            return factor
        blended = math.exp((1 - self.alpha) * math.log(factor) + self.alpha * math.log(ratio))
        return min(max(blended, self.low), self.high)


class LatencyModel:
    """Predictions for one backend from its profile table."""

    def __init__(self, profile: ProfileTable) -> None:
        self.profile = profile
        self._prefill = _grid(profile.prefill)
        self._decode = _grid(profile.decode)
        self._join = _grid(profile.join) if profile.join is not None else None
        self.max_num_seqs = profile.capacity["max_num_seqs"]
        self.kv_tokens = profile.capacity["kv_tokens"]
        self.path_ms = _path_ms(profile)
        # How the serving path varies from one request to the next (none without a path).
        self.path_jitter_ms = profile.path_jitter_ms if self.path_ms else ()

    def prefill_ms(self, batch: int, prompt_tokens: float) -> tuple[float, bool]:
        return self._prefill.at(batch, prompt_tokens)

    def decode_step_ms(self, batch: int, context_tokens: float) -> tuple[float, bool]:
        return self._decode.at(batch, context_tokens)

    def join_extra_ms(self, running: int, prompt_tokens: float) -> tuple[float, bool]:
        """What joining `running` decoding sequences adds to a prefill run of this prompt
        length (0 without a join surface or with nothing running)."""
        if self._join is None or running <= 0:
            return 0.0, False
        joined, extrapolated = self._join.at(running, prompt_tokens)
        alone, _ = self._prefill.at(1, prompt_tokens)
        return max(joined - alone, 0.0), extrapolated

    def arrival_delay_ms(self, running: int, prompt_tokens: float) -> float:
        """How long after routing a request reaches the engine: with a table measured through
        a server, its serving path, plus what joining `running` decoding sequences adds to its
        TTFT (the joiner waits in that path while the replica streams the others' tokens);
        0 for a table measured in-process."""
        if not self.path_ms:
            return 0.0
        return self.path_ms + (self.join_extra_ms(running, prompt_tokens)[0] if running else 0.0)

    def engine_prefill_ms(self, batch: int, prompt_tokens: float,
                          running: int) -> tuple[float, float]:
        """How long a prefill of `batch` requests holds the engine while `running` sequences
        decode there: (the prefill, what joining them adds). With a table measured through a
        server the path and the join's extra were spent on the way (`arrival_delay_ms`)."""
        ms = self._prefill.at(batch, prompt_tokens)[0]
        if self.path_ms:
            return max(ms - self.path_ms, 0.0), 0.0
        return ms, self.join_extra_ms(running, prompt_tokens)[0]

    def predict(
        self, request: RequestShape, load: BackendLoad, correction: Correction | None = None
    ) -> Prediction:
        prompt, out = request.prompt_tokens, max(request.output_tokens, 1)
        if load.running or load.waiting or self.max_num_seqs < 1:
            ttft, queue, e2e, replica, delay, extrapolated = _walk(self, load, request)
        else:
            # Nothing runs or waits (most backends, most of the time, under a router that
            # concentrates load): the walk's answer in closed form, with the same arithmetic:
            # its prefill alone, then its own decode steps at batch 1.
            ttft, extrapolated = self._prefill.at(1, prompt)
            stretch, ex = self._stretch(load)
            extrapolated |= ex
            queue = delay = 0.0
            e2e = replica = ttft
            if out > 1:
                n = out - 1
                step, ex = self._decode.at(1, prompt + n / 2)
                extrapolated |= ex
                step *= stretch
                e2e = replica = ttft + n * step
        tpot = (e2e - ttft) / (out - 1) if out > 1 else 0.0
        if correction is not None:
            ttft *= correction.ttft_factor
            queue *= correction.ttft_factor
            tpot *= correction.tpot_factor
            e2e = ttft + tpot * (out - 1)
        return Prediction(ttft, tpot, e2e, queue, replica, delay, extrapolated)

    def others_tpot_ms(self, request: RequestShape, load: BackendLoad,
                       correction: Correction | None = None) -> float:
        """The TPOT the sequences running there would see once `request` joins them (0 with
        nothing running): the decode step of the batch it makes, slowed by the arrivals'
        prefills as in `predict`, plus the newcomer's own prefill (which stalls their
        decoding once) spread over the tokens they still have to produce. Held against
        `load.tightest_tpot_ms` by the policies: a backend where a request would push the
        requests already there past their TPOT target is not one that meets the SLO."""
        running = load.running
        if not running:
            return 0.0
        b = len(running)
        context = sum(r.context_tokens for r in running) / b
        remaining = max(sum(r.remaining_tokens for r in running) / b, 1.0)
        stretch = self._stretch(load)[0]
        step = self._decode.at(min(b + 1, max(self.max_num_seqs, 1)), context)[0] * stretch
        prefill, extra = self.engine_prefill_ms(1, request.prompt_tokens, b)
        tpot = step + (prefill + extra) / remaining
        return tpot * correction.tpot_factor if correction is not None else tpot

    def _stretch(self, load: BackendLoad) -> tuple[float, bool]:
        """Decode slowdown from later arrivals' prefills: with arrivals at rate lambda, each
        taking prefill(1, mean prompt), decoding runs 1 - rho of the time (rho capped at 0.9)."""
        if load.arrival_rate_per_s <= 0 or load.mean_prompt_tokens <= 0:
            return 1.0, False
        prefill, extrapolated = self._prefill.at(1, load.mean_prompt_tokens)
        rho = min(load.arrival_rate_per_s * prefill / 1e3, 0.9)
        return 1.0 / (1.0 - rho), extrapolated


def _path_ms(profile: ProfileTable) -> float:
    """Of a table measured through a server (engine "openai-http"), the serving path's share of
    every prefill: client -> proxy -> ingress -> replica and the first token back. It delays a
    request's first token but leaves the engine free for the others (a simulated replica does
    not charge it to the requests decoding there). Estimated where the batch-1 prefill line
    through the two shortest prompts meets zero prompt tokens; 0 for an engine measured
    in-process, whose tables hold engine time only."""
    s = profile.prefill
    if profile.engine.get("name") != "openai-http" or s.batch[0] != 1 or len(s.tokens) < 2:
        return 0.0
    (x0, x1), (y0, y1) = s.tokens[:2], s.ms[0][:2]
    return min(max(y0 - (y1 - y0) * x0 / (x1 - x0), 0.0), y0)


def _grid(s: Surface) -> Grid2D:
    return Grid2D(tuple(map(float, s.batch)), tuple(map(float, s.tokens)), s.ms)


# Final: compiled, constants (a plain module global is a dict lookup at every use)
_SHIFT: Final = 20  # a batch key is finish step << _SHIFT | the sequence's slot
_SLOT: Final = (1 << 20) - 1


def _walk(m: LatencyModel, load: BackendLoad,
          target: RequestShape) -> tuple[float, float, float, float, float, bool]:
    """The engine's schedule from now until the target request finishes: (TTFT, queue, E2E,
    replica time, delay to others) in ms, and whether any time was extrapolated. One loop
    with local state: routers call this for every busy backend on every request.

    The batch is a sorted list of plain ints, finish step << _SHIFT | slot, read from index
    `top` (a finished sequence moves `top` on; an admitted one is inserted in order), where
    `final[slot]` is that sequence's context when it finishes (start context + the steps it
    runs): a
    sequence's context at step s is its start context + s - start step, so advancing k steps
    touches no sequence, and a finishing one takes exactly `final[slot]` off both the batch's
    context sum and the KV tokens held. Ints, not tuples: the list compares and allocates
    nothing else (compiled, this halved the walk; a sorted list instead of a heap: -10%)."""
    stretch, extrapolated = m._stretch(load)  # decode slowdown from later arrivals
    final: list[int] = []
    batch_keys: list[int] = []
    context_sum = reserved = 0
    for context, left in load.running:  # unpacked: compiled, a field by name is a lookup
        if left < 0:
            left = 0
        batch_keys.append(left << _SHIFT | len(final))
        final.append(context + left)
        context_sum += context
        reserved += context + left  # prompt + output, KV tokens held
    batch_keys.sort()
    top = 0  # batch_keys[top:] run now
    # The queue: the waiting requests, then the target; `head` is the next to admit.
    pending = list(load.waiting)
    pending.append(target)
    last = len(pending) - 1
    if len(final) + len(pending) > _SLOT:
        raise ValueError("too many sequences for one walk")
    head = 0
    target_slot = -1
    decode, prefill = m._decode, m._prefill
    max_seqs, kv = m.max_num_seqs, m.kv_tokens
    step_no = 0  # decode steps done since now
    t = ttft = queue_ms = replica = delay = 0.0
    if batch_keys:  # the step in flight: on average half of it remains
        ms, ex = decode.at(len(batch_keys), context_sum / len(batch_keys))
        extrapolated |= ex
        t += 0.5 * ms
    while True:
        if head <= last:  # admit a group at this step boundary: FIFO, while the caps allow
            held, running = reserved, len(batch_keys) - top
            end = head
            longest = 0
            while end <= last:
                prompt, output = pending[end]
                need = prompt + output
                if running + end - head >= max_seqs:
                    break
                if held + need > kv and (running or end > head):
                    break
                held += need
                if prompt > longest:
                    longest = prompt
                end += 1
            if end > head:
                size = end - head
                ms, ex = prefill.at(size, longest)
                extrapolated |= ex
                extra, ex = m.join_extra_ms(running, longest)
                ms += extra
                extrapolated |= ex
                for k in range(head, end):
                    prompt, output = pending[k]
                    # The prefill yields the first token; the rest are decode steps.
                    remaining = output - 1 if output > 1 else 0
                    if k == last:
                        target_slot = len(final)
                    insort(batch_keys, (step_no + remaining) << _SHIFT | len(final), top)
                    final.append(prompt + remaining)
                    context_sum += prompt
                    reserved += prompt + remaining
                head = end
                if target_slot >= 0:
                    queue_ms = t
                    replica += ms / size
                t += ms
                if target_slot >= 0:
                    ttft = t
                    if target.output_tokens <= 1:
                        return ttft, queue_ms, ttft, replica, delay, extrapolated
        batch = len(batch_keys) - top
        if not batch:  # nothing runs and the queue head cannot be admitted
            raise ValueError("request does not fit this backend's capacity")
        n = (batch_keys[top] >> _SHIFT) - step_no
        mid_context = (context_sum + batch * n / 2) / batch
        if target_slot >= 0 and batch > 1:  # the step with and without the target
            ms, without, ex = decode.pair(batch, mid_context)
            extrapolated |= ex
            step = ms * stretch
            replica += n * step / batch
            delay += n * max(step - without * stretch, 0.0) * (batch - 1)
        else:
            ms, ex = decode.at(batch, mid_context)
            extrapolated |= ex
            step = ms * stretch
            if target_slot >= 0:
                replica += n * step / batch
        t += n * step
        step_no += n
        context_sum += batch * n
        while top < len(batch_keys) and batch_keys[top] >> _SHIFT == step_no:
            slot = batch_keys[top] & _SLOT
            top += 1
            context_sum -= final[slot]
            reserved -= final[slot]
            if slot == target_slot:
                return ttft, queue_ms, t, replica, delay, extrapolated
