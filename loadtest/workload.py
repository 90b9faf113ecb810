"""Workloads (pure): what to send and when.

A `WorkloadSpec` (pydantic, loadable from YAML, or built from CLI flags) describes arrivals,
length distributions, an SLO mix and the bounds of a run. `plan_requests` turns it into a
seeded, reproducible sequence of `Planned` requests; traces (JSONL) replay recorded ones.

Arrivals follow `vllm bench serve`: gaps are gamma-distributed with shape `burstiness` and
mean 1/rate, so burstiness 1 is Poisson, < 1 burstier, > 1 smoother; `constant` is evenly
spaced; `closed` keeps `concurrency` requests in flight (no schedule).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from backends.errors import ConfigError
from serving.config import SloSpec, config_error, read_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LengthSpec(_Strict):
    """A token-length distribution, rounded to integers and clipped to [min, max]."""

    dist: Literal["fixed", "uniform", "lognormal"] = Field(
        "fixed", description="fixed: always `mean`; uniform: mean x (1 +- range_ratio), as "
                             "vllm bench serve's random-range-ratio; lognormal: mean `mean`, "
                             "shape `sigma`")
    mean: int = Field(..., ge=1, description="tokens")
    range_ratio: float = Field(0.0, ge=0, lt=1, description="uniform half-width / mean")
    sigma: float = Field(0.5, gt=0, le=3, description="lognormal shape (std of log length)")
    min: int = Field(1, ge=1, description="lower clip, tokens")
    max: int | None = Field(None, ge=1, description="upper clip, tokens")

    @model_validator(mode="after")
    def _clip_range(self) -> LengthSpec:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) < min ({self.min})")
        return self

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.dist == "fixed":
            x = np.full(n, float(self.mean))
        elif self.dist == "uniform":
            lo = math.floor(self.mean * (1 - self.range_ratio))
            hi = math.ceil(self.mean * (1 + self.range_ratio))
            x = rng.integers(lo, hi + 1, size=n).astype(float)
        else:
            mu = math.log(self.mean) - self.sigma**2 / 2  # so the mean is `mean`
            x = rng.lognormal(mu, self.sigma, size=n)
        top = self.max if self.max is not None else np.inf
        return np.clip(np.rint(x), max(self.min, 1), top).astype(np.int64)

    @classmethod
    def parse(cls, text: str, field: str) -> LengthSpec:
        """CLI shorthand: `128` | `fixed:128` | `uniform:128:0.25` | `lognormal:128:0.6`."""
        parts = text.split(":")
        try:
            if len(parts) == 1:
                return cls(dist="fixed", mean=int(parts[0]))
            dist, rest = parts[0], parts[1:]
            if dist == "fixed" and len(rest) == 1:
                return cls(dist="fixed", mean=int(rest[0]))
            if dist == "uniform" and len(rest) == 2:
                return cls(dist="uniform", mean=int(rest[0]), range_ratio=float(rest[1]))
            if dist == "lognormal" and len(rest) == 2:
                return cls(dist="lognormal", mean=int(rest[0]), sigma=float(rest[1]))
        except (ValueError, ValidationError) as exc:
            raise ConfigError(f"{field}: cannot read {text!r}: {_first_error(exc)}", field) from None
        raise ConfigError(f"{field}: cannot read {text!r}; use N, fixed:N, uniform:N:RATIO or "
                          f"lognormal:N:SIGMA", field)


class Component(_Strict):
    """One kind of request in a mix (e.g. chat turns, document summaries)."""

    name: str = Field("default", min_length=1)
    share: float = Field(1.0, gt=0, description="relative share of requests")
    prompt_tokens: LengthSpec
    output_tokens: LengthSpec
    slo_class: str | None = Field(None, description="SLO class of all its requests (instead "
                                                    "of drawing one from slo_mix)")


def chat_doc_preset() -> tuple[Component, ...]:
    """Mixed chat/document traffic sized for a 2k-context model: 70% short chat turns with
    chat-length answers, 30% long documents with short answers (summaries, extraction)."""
    return (
        Component(name="chat", share=0.7,
                  prompt_tokens=LengthSpec(dist="lognormal", mean=96, sigma=0.6, max=512),
                  output_tokens=LengthSpec(dist="lognormal", mean=64, sigma=0.5, max=256)),
        Component(name="document", share=0.3,
                  prompt_tokens=LengthSpec(dist="uniform", mean=768, range_ratio=0.25),
                  output_tokens=LengthSpec(dist="lognormal", mean=32, sigma=0.4, max=128)),
    )


PRESETS = {"chat-doc": chat_doc_preset}


class Burst(_Strict):
    """A stretch of time when the rate is `factor` times what it would be."""

    at_s: float = Field(..., ge=0, description="start, seconds from the start of the run")
    duration_s: float = Field(..., gt=0, description="length, seconds")
    factor: float = Field(..., gt=0, description="rate multiplier during the burst")


class ArrivalSpec(_Strict):
    process: Literal["poisson", "gamma", "constant", "closed"] = Field(
        "poisson", description="open loop (poisson, gamma, constant) at rate_rps, or closed "
                               "loop at `concurrency`")
    rate_rps: float | None = Field(None, gt=0, description="open-loop arrival rate, requests/s")
    burstiness: float = Field(1.0, gt=0, description="gamma shape; 1 = Poisson, < 1 burstier")
    concurrency: int | None = Field(None, ge=1, description="closed loop: requests kept in flight")
    rate_curve: tuple[tuple[float, float], ...] | None = Field(
        None, description="rate over time: (t_s, factor) points from t_s = 0, the rate being "
                          "rate_rps x factor, linear between points; after the last point the "
                          "curve repeats (with period_s) or its last factor holds")
    period_s: float | None = Field(None, gt=0, description="the rate curve repeats every "
                                                           "period_s (e.g. 86400: daily)")
    bursts: tuple[Burst, ...] = Field((), description="stretches of extra rate on top of the "
                                                      "curve")

    @model_validator(mode="after")
    def _consistent(self) -> ArrivalSpec:
        if self.process == "closed":
            if self.concurrency is None:
                raise ValueError("process 'closed' needs concurrency")
            if self.rate_curve is not None or self.bursts:
                raise ValueError("rate_curve and bursts need an open-loop process")
        elif self.rate_rps is None:
            raise ValueError(f"process {self.process!r} needs rate_rps")
        if self.process == "poisson" and self.burstiness != 1.0:
            raise ValueError(f"burstiness {self.burstiness} needs process 'gamma' (poisson is 1)")
        curve = self.rate_curve
        if curve is not None:
            times = [t for t, _ in curve]
            if not curve or times[0] != 0:
                raise ValueError("rate_curve: the first point must be at t_s = 0")
            if any(b <= a for a, b in zip(times, times[1:])):
                raise ValueError("rate_curve: t_s must increase from point to point")
            if any(f <= 0 for _, f in curve):
                raise ValueError("rate_curve: every factor must be > 0")
            if self.period_s is not None and self.period_s <= times[-1]:
                raise ValueError(f"period_s ({self.period_s:g}) must be after the curve's last "
                                 f"point ({times[-1]:g} s)")
        elif self.period_s is not None:
            raise ValueError("period_s needs rate_curve")
        return self

    def varies(self) -> bool:
        """Whether the rate changes over time (a curve or bursts)."""
        return self.rate_curve is not None or bool(self.bursts)

    def peak_rate_rps(self) -> float | None:
        """The highest rate the curve and bursts reach (rate_rps when it does not vary): what
        a fleet of fixed size must serve. Sampled every 50 ms over one period (or up to the
        curve's last point) and to the end of the last burst."""
        if self.rate_rps is None or not self.varies():
            return self.rate_rps
        span = self.period_s or (self.rate_curve[-1][0] if self.rate_curve else 0.0)
        span = max([span, *(b.at_s + b.duration_s for b in self.bursts)])
        t = np.concatenate([np.arange(0.0, span + 0.05, 0.05), [b.at_s for b in self.bursts]])
        return self.rate_rps * float(self.factor(t).max())

    def factor(self, t: np.ndarray) -> np.ndarray:
        """The rate multiplier at times `t` (seconds from the start of the run)."""
        out = np.ones_like(t, dtype=float)
        curve = self.rate_curve
        if curve is not None:
            xs = [x for x, _ in curve]
            fs = [f for _, f in curve]
            if self.period_s is not None:  # back to the first factor at the period's end
                out = np.interp(np.mod(t, self.period_s), [*xs, self.period_s], [*fs, fs[0]])
            else:
                out = np.interp(t, xs, fs)
        for b in self.bursts:
            out = np.where((t >= b.at_s) & (t < b.at_s + b.duration_s), out * b.factor, out)
        return out

    def gaps(self, rng: np.random.Generator, n: int) -> np.ndarray:
        assert self.rate_rps is not None
        if self.process == "constant":
            return np.full(n, 1.0 / self.rate_rps)
        shape = 1.0 if self.process == "poisson" else self.burstiness
        return rng.gamma(shape, 1.0 / (self.rate_rps * shape), size=n)


class _TimeWarp:
    """Arrivals under a rate that changes over time, by time rescaling: the arrival process
    runs at `rate_rps` in "operational" time tau, and tau = integral of factor(t) dt maps
    it to real time t (so its burstiness is kept and the rate is rate_rps x factor(t)). The
    integral is tabulated on a grid of `_STEP_S` cells, extended as far as the arrivals go."""

    _STEP_S = 0.05
    _CHUNK = 65_536

    def __init__(self, arrival: ArrivalSpec) -> None:
        self.arrival = arrival
        self.t = np.zeros(1)
        self.tau = np.zeros(1)

    def __call__(self, tau: np.ndarray) -> np.ndarray:
        if len(tau) and tau.max() > self.tau[-1]:
            pieces_t, pieces_tau = [self.t], [self.tau]
            end_t, end_tau = self.t[-1], self.tau[-1]
            while end_tau < tau.max():
                ts = end_t + self._STEP_S * np.arange(1, self._CHUNK + 1)
                grow = end_tau + np.cumsum(self.arrival.factor(ts - self._STEP_S / 2)) * self._STEP_S
                pieces_t.append(ts)
                pieces_tau.append(grow)
                end_t, end_tau = ts[-1], grow[-1]
            self.t, self.tau = np.concatenate(pieces_t), np.concatenate(pieces_tau)
        return np.interp(tau, self.tau, self.t)


class WorkloadSpec(_Strict):
    """One load-test run: arrivals, request mix, SLO mix, bounds. Seeded and reproducible."""

    arrival: ArrivalSpec
    slo_classes: dict[str, SloSpec] = Field(default_factory=dict,
                                            description="targets of each SLO class")
    mix: tuple[Component, ...] = Field(..., min_length=1, description="request kinds and shares")
    slo_mix: dict[str, float] = Field(default_factory=dict,
                                      description="share of requests per SLO class")
    duration_s: float | None = Field(None, gt=0, description="measured duration (after warm-up)")
    num_requests: int | None = Field(None, ge=1, description="measured requests (after warm-up)")
    warmup_s: float = Field(0.0, ge=0, description="leading seconds excluded from results")
    max_in_flight: int = Field(256, ge=1, description="cap on requests in flight, always")
    seed: int = Field(0, ge=0)
    trace: str | None = Field(None, description="JSONL trace to replay instead of generating")
    trace_speedup: float = Field(1.0, gt=0, description="replay the trace this many times "
                                                        "faster (its send times divided by it)")
    token_id_range: tuple[int, int] = Field(
        (16, 1024), description="prompt token ids are drawn from [low, high): inside any "
                                "tokenizer's vocabulary")

    @model_validator(mode="after")
    def _cross_checks(self) -> WorkloadSpec:
        if self.duration_s is None and self.num_requests is None and not self.trace:
            raise ValueError("a run needs a bound: duration_s or num_requests (or both; a "
                             "trace ends with its last request)")
        if self.trace_speedup != 1.0 and not self.trace:
            raise ValueError("trace_speedup needs a trace")
        return self

    @field_validator("slo_mix")
    @classmethod
    def _known_classes(cls, mix: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        classes = info.data.get("slo_classes") or {}
        unknown = sorted(set(mix) - set(classes))
        if unknown:
            raise ValueError(f"names classes with no targets: {unknown}; known: "
                             f"{sorted(classes) or 'none (add slo_classes or --fleet)'}")
        if any(v < 0 for v in mix.values()) or (mix and sum(mix.values()) <= 0):
            raise ValueError(f"shares must be >= 0 and not all 0 (got {mix})")
        return mix

    @field_validator("mix")
    @classmethod
    def _component_classes(cls, mix: tuple[Component, ...],
                           info: ValidationInfo) -> tuple[Component, ...]:
        classes = info.data.get("slo_classes") or {}
        for c in mix:
            if c.slo_class is not None and c.slo_class not in classes:
                raise ValueError(f"component {c.name!r} names SLO class {c.slo_class!r}, which "
                                 f"has no targets; known: {sorted(classes) or 'none'}")
        return mix

    @field_validator("token_id_range")
    @classmethod
    def _id_range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 0 <= v[0] < v[1]:
            raise ValueError(f"must be 0 <= low < high (got {v})")
        return v

    def with_classes(self, classes: Mapping[str, SloSpec]) -> WorkloadSpec:
        """Fill in class targets from elsewhere (a fleet config); the spec's own win."""
        merged = {**classes, **self.slo_classes}
        return parse_workload({**self.model_dump(), "slo_classes": merged})

    def describe(self, rate: str | None = None) -> str:
        """One line for reports; `rate` replaces the rate (e.g. a sweep's list of rates)."""
        a = self.arrival
        if a.process == "closed":
            how = f"closed loop, concurrency {a.concurrency}"
        else:
            burst = f", burstiness {a.burstiness}" if a.process == "gamma" else ""
            how = f"{a.process} arrivals at {rate or f'{a.rate_rps:g}'} req/s{burst}"
            if a.rate_curve is not None:
                lo, hi = min(f for _, f in a.rate_curve), max(f for _, f in a.rate_curve)
                every = f" every {a.period_s:g} s" if a.period_s else ""
                how += f" x a rate curve of {len(a.rate_curve)} points ({lo:g}-{hi:g}){every}"
            if a.bursts:
                how += f", {len(a.bursts)} burst{'s' if len(a.bursts) > 1 else ''}"
        if self.trace:
            speed = f" at {self.trace_speedup:g}x" if self.trace_speedup != 1.0 else ""
            how = f"trace {Path(self.trace).name}{speed}"
        mix = ", ".join(f"{c.name} {c.share:g}" for c in self.mix)
        return f"{how}; mix: {mix}; seed {self.seed}"


def parse_workload(raw: Any, where: str = "workload") -> WorkloadSpec:
    try:
        return WorkloadSpec.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, where) from None


def load_workload(path: str | Path) -> WorkloadSpec:
    path = Path(path)
    raw = read_yaml(path, "workload", "workload")
    if isinstance(raw, dict) and isinstance(raw.get("mix"), str):
        raw = {**raw, "mix": _preset(raw["mix"], "mix")}
    if isinstance(raw, dict) and raw.get("trace"):
        trace = Path(raw["trace"])
        raw = {**raw, "trace": str(trace if trace.is_absolute() else path.parent / trace)}
    return parse_workload(raw, str(path))


def _preset(name: str, field: str) -> list[dict[str, Any]]:
    if name not in PRESETS:
        raise ConfigError(f"{field}: unknown preset {name!r}; choose one of {sorted(PRESETS)}", field)
    return [c.model_dump() for c in PRESETS[name]()]


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return str(exc.errors()[0]["msg"])
    return str(exc)


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class Planned:
    """One request to send. `at_s` is its time from the start of the run (None: closed loop)."""

    index: int
    at_s: float | None
    prompt_tokens: int
    output_tokens: int
    component: str = "default"
    slo_class: str | None = None
    slo: dict[str, float] = field(default_factory=dict)
    prompt: str | None = None  # text (from a trace); else `prompt_tokens` random token ids
    warmup: bool = False


def plan_requests(spec: WorkloadSpec) -> Iterator[Planned]:
    """The run's requests in send order, warm-up first. Finite unless the run is closed-loop
    and bounded by duration only (the runner stops it). Same spec, same plans."""
    if spec.trace:
        yield from _from_trace(read_trace(spec.trace, spec.slo_classes), spec.trace_speedup)
        return
    warp = _TimeWarp(spec.arrival) if spec.arrival.varies() else None
    rng = np.random.default_rng(spec.seed)
    shares = np.array([c.share for c in spec.mix], dtype=float)
    classes = list(spec.slo_mix)
    class_p = np.array([spec.slo_mix[c] for c in classes], dtype=float)
    names = {c.slo_class for c in spec.mix} | set(classes) | {None}
    targets = {name: _targets(spec.slo_classes, name) for name in names}
    block = 4096
    index, clock = 0, 0.0
    while True:
        kinds = rng.choice(len(spec.mix), size=block, p=shares / shares.sum())
        prompts = np.empty(block, dtype=np.int64)
        outputs = np.empty(block, dtype=np.int64)
        for k, comp in enumerate(spec.mix):
            where = np.flatnonzero(kinds == k)
            prompts[where] = comp.prompt_tokens.sample(rng, len(where))
            outputs[where] = comp.output_tokens.sample(rng, len(where))
        slo_idx = (rng.choice(len(classes), size=block, p=class_p / class_p.sum())
                   if classes else np.zeros(block, dtype=np.int64))
        closed = spec.arrival.process == "closed"
        times = None if closed else clock + np.cumsum(spec.arrival.gaps(rng, block))
        ats = [None] * block if times is None else (
            times if warp is None else warp(times)).tolist()
        for kind, at, prompt, output, slo_i in zip(kinds.tolist(), ats, prompts.tolist(),
                                                   outputs.tolist(), slo_idx.tolist()):
            comp = spec.mix[kind]
            name = comp.slo_class or (classes[slo_i] if classes else None)
            yield Planned(index, at, prompt, output, comp.name, name, dict(targets[name]))
            index += 1
        if times is not None:
            clock = float(times[-1])


def _from_trace(plans: list[Planned], speedup: float = 1.0) -> Iterator[Planned]:
    t0 = plans[0].at_s if plans and plans[0].at_s is not None else 0.0
    for p in plans:
        yield Planned(p.index, None if p.at_s is None else (p.at_s - t0) / speedup, p.prompt_tokens,
                      p.output_tokens, p.component, p.slo_class, p.slo, p.prompt)


def bounded_plans(spec: WorkloadSpec) -> Iterator[Planned]:
    """`plan_requests` cut to the run's bounds, each marked warm-up or not. Open loop: plans
    due after warmup_s + duration_s are dropped, and at most num_requests measured ones are
    kept. Closed loop has no schedule: the runner applies the time bounds."""
    measured = 0
    for p in plan_requests(spec):
        warm = p.at_s is not None and p.at_s < spec.warmup_s
        if p.at_s is not None and spec.duration_s is not None and \
                p.at_s >= spec.warmup_s + spec.duration_s:
            return
        if not warm:
            if spec.num_requests is not None and measured >= spec.num_requests:
                return
            measured += 1
        yield replace(p, warmup=True) if warm else p  # plans come unmarked


def _targets(classes: Mapping[str, SloSpec], name: str | None) -> dict[str, float]:
    if name is None or name not in classes:
        return {}
    return classes[name].model_dump(exclude_none=True)


# --------------------------------------------------------------------------- traces

_TRACE_FIELDS = {"arrival_s", "prompt", "prompt_tokens", "output_tokens", "slo", "slo_class",
                 "component"}


def read_trace(path: str | Path, classes: Mapping[str, SloSpec] | None = None) -> list[Planned]:
    """A JSONL trace, one request per line: `arrival_s` (seconds from the trace start),
    `prompt` (text) or `prompt_tokens` (count), `output_tokens`, optional `slo`
    ({ttft_ms, tpot_ms, e2e_ms}) and/or `slo_class`, optional `component`. Sorted by
    arrival. Errors name the line and the field."""
    classes = classes or {}
    plans: list[Planned] = []
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise ConfigError(f"trace {path} does not exist", "trace") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"trace {path.name} line {n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not JSON ({exc.msg})", "trace") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: expected an object", "trace")
        extra = sorted(set(row) - _TRACE_FIELDS)
        if extra:
            raise ConfigError(f"{where}: unknown fields {extra}; known: {sorted(_TRACE_FIELDS)}",
                              extra[0])
        plans.append(_trace_row(row, len(plans), where, classes))
    if not plans:
        raise ConfigError(f"trace {path} has no requests", "trace")
    plans.sort(key=lambda p: (p.at_s or 0.0, p.index))
    return [Planned(i, p.at_s, p.prompt_tokens, p.output_tokens, p.component, p.slo_class,
                    p.slo, p.prompt) for i, p in enumerate(plans)]


def _trace_row(row: dict[str, Any], index: int, where: str,
               classes: Mapping[str, SloSpec]) -> Planned:
    def number(name: str, kind: type, minimum: float) -> Any:
        v = row.get(name)
        if isinstance(v, bool) or not isinstance(v, int | float) or (kind is int and
                                                                      not float(v).is_integer()):
            raise ConfigError(f"{where}: {name} must be a{'n integer' if kind is int else ' number'}"
                              f" (got {v!r})", name)
        if v < minimum or not math.isfinite(v):
            raise ConfigError(f"{where}: {name} must be >= {minimum} (got {v!r})", name)
        return kind(v)

    arrival = number("arrival_s", float, 0.0)
    prompt = row.get("prompt")
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt:
            raise ConfigError(f"{where}: prompt must be non-empty text", "prompt")
        prompt_tokens = number("prompt_tokens", int, 1) if "prompt_tokens" in row else 0
    else:
        prompt_tokens = number("prompt_tokens", int, 1)
    output = number("output_tokens", int, 1)
    slo_class = row.get("slo_class")
    if slo_class is not None and not isinstance(slo_class, str):
        raise ConfigError(f"{where}: slo_class must be a string (got {slo_class!r})", "slo_class")
    targets = _targets(classes, slo_class)
    if slo_class is not None and classes and slo_class not in classes and row.get("slo") is None:
        # A row that states its own targets needs no class of the fleet's to take them from.
        raise ConfigError(f"{where}: unknown slo_class {slo_class!r} and no slo of its own; "
                          f"known: {sorted(classes)}", "slo_class")
    if row.get("slo") is not None:
        try:
            targets.update(SloSpec.model_validate(row["slo"]).model_dump(exclude_none=True))
        except ValidationError as exc:
            raise ConfigError(f"{where}: slo: {_first_error(exc)}", "slo") from None
    return Planned(index, arrival, prompt_tokens, output, str(row.get("component", "trace")),
                   slo_class, targets, prompt)


def write_trace(path: str | Path, plans: list[Planned]) -> None:
    """Write plans as a JSONL trace that `read_trace` reads back to the same plans."""
    with open(path, "w") as f:
        for p in plans:
            row: dict[str, Any] = {"arrival_s": p.at_s or 0.0, "output_tokens": p.output_tokens,
                                   "component": p.component}
            if p.prompt is not None:
                row["prompt"] = p.prompt
            if p.prompt_tokens:
                row["prompt_tokens"] = p.prompt_tokens
            if p.slo_class is not None:
                row["slo_class"] = p.slo_class
            if p.slo:
                row["slo"] = p.slo
            f.write(json.dumps(row) + "\n")
