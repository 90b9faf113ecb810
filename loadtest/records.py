"""What happened to one request, as the client saw it (pure data), and its JSONL form.

Times are seconds: `scheduled_s` and `sent_s` from the start of the run, `token_s`, `end_s`
and `done_s` from the moment the request was sent (monotonic clock). Metrics follow
`vllm bench serve`, where a token event is a streamed chunk carrying a choice (its text may be
empty while the detokenizer holds back part of a character; usage-only chunks are not):

    TTFT = first token event - sent
    E2E  = last token event - sent
    TPOT = (E2E - TTFT) / (completion tokens - 1)      (requests with >= 2 tokens)
    ITL  = gaps between consecutive token events
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backends.errors import ConfigError

BACKEND_HEADER = "x-costroute-backend"
COST_HEADER = "x-costroute-cost-usd"


@dataclass
class Record:
    index: int
    sent_s: float
    scheduled_s: float | None = None  # None: closed loop (sent when a slot freed)
    component: str = "default"
    slo_class: str | None = None
    slo: dict[str, float] = field(default_factory=dict)
    warmup: bool = False
    planned_prompt_tokens: int = 0
    planned_output_tokens: int = 0
    prompt_tokens: int = 0  # from the server's usage when it sends one
    completion_tokens: int = 0
    usage_from_server: bool = False
    status: int = 0  # HTTP status; 0: no response (connection refused, timeout, cancelled)
    error: str | None = None
    token_s: list[float] = field(default_factory=list)
    end_s: float | None = None
    done_s: float | None = None  # when the client finished with it (any outcome), after sent
    headers: dict[str, str] = field(default_factory=dict)  # the server's x-costroute-* headers

    # ------------------------------------------------------------------ derived

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None and bool(self.token_s)

    @property
    def lag_ms(self) -> float | None:
        return None if self.scheduled_s is None else (self.sent_s - self.scheduled_s) * 1e3

    @property
    def ttft_ms(self) -> float | None:
        return self.token_s[0] * 1e3 if self.ok else None

    @property
    def e2e_ms(self) -> float | None:
        if not self.ok:
            return None
        return (self.end_s if self.end_s is not None else self.token_s[-1]) * 1e3

    @property
    def tpot_ms(self) -> float | None:
        ttft, e2e = self.ttft_ms, self.e2e_ms
        if ttft is None or e2e is None or self.completion_tokens < 2:
            return None
        return (e2e - ttft) / (self.completion_tokens - 1)

    @property
    def itl_ms(self) -> list[float]:
        t = self.token_s
        return [(b - a) * 1e3 for a, b in zip(t, t[1:])] if self.ok else []

    @property
    def backend(self) -> str:
        return self.headers.get(BACKEND_HEADER, "unknown")

    @property
    def cost_usd(self) -> float | None:
        raw = self.headers.get(COST_HEADER)
        try:
            return float(raw) if raw is not None else None
        except ValueError:
            return None

    def met_slo(self) -> bool:
        """Meets every target it carries; an error is a miss; no targets is a pass."""
        if not self.ok:
            return False
        checks = {"ttft_ms": self.ttft_ms, "tpot_ms": self.tpot_ms, "e2e_ms": self.e2e_ms}
        for name, target in self.slo.items():
            value = checks.get(name)
            if value is not None and value > target:
                return False
        return True

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, Any]:
        row = asdict(self)
        row["token_s"] = [round(t, 6) for t in self.token_s]
        row["ttft_ms"], row["tpot_ms"], row["e2e_ms"] = self.ttft_ms, self.tpot_ms, self.e2e_ms
        row["met_slo"] = self.met_slo()
        return row


_DERIVED = {"ttft_ms", "tpot_ms", "e2e_ms", "met_slo"}


def write_records(path: str | Path, records: Iterable[Record]) -> None:
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r.to_json()) + "\n")


def read_records(path: str | Path) -> list[Record]:
    return list(iter_records(path))


def iter_records(path: str | Path) -> Iterator[Record]:
    path = Path(path)
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = {k: v for k, v in json.loads(line).items() if k not in _DERIVED}
                yield Record(**row)
            except (json.JSONDecodeError, TypeError) as exc:
                raise ConfigError(f"{path.name} line {n} is not a request record: {exc}",
                                  "records") from None
