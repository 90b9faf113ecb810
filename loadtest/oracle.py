"""Cost oracle (pure): a lower bound on the cost any router could reach for a set of requests
with known lengths on a given fleet, to judge a policy by (policy cost / oracle cost >= 1).

An offline assignment, solved as a linear program (HiGHS through scipy.optimize.linprog):

    minimise   sum_r sum_a y_ra c_ra price_a                     (attributed cost, USD)
    subject to sum_a y_ra = 1                                    for every request r
               sum_{r arriving in window w} y_ra c_ra <= n_a (W + slack)   for every w, a
               y_ra >= 0, and y_ra = 0 where request r alone on an idle replica of a would
               miss its SLO (unless it misses on every backend: then anywhere)

c_ra is the least replica time request r can use on a: its prefill and decode steps shared
with the fullest batch a allows (min over batch sizes of step(B) / B): no router can make it
cheaper. The capacity rows relax the real schedule (a window's work may spill into the next
`slack` seconds), so the bound stays a bound. The cost is in the units of the router's
attributed cost (x-costroute-cost-usd), which is what `simulate` compares it with.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from loadtest.records import Record
from loadtest.simulator import SimBackend
from profiles.latency import BackendLoad, LatencyModel, RequestShape
from serving.policies import Slo


@dataclass(frozen=True)
class OracleResult:
    usd: float  # lower bound on the attributed cost of these requests
    requests: int
    infeasible_alone: int  # requests whose SLO no backend meets even when idle
    solve_s: float
    status: str


def least_replica_ms(model: LatencyModel, prompt: int, output: int) -> float:
    """The least replica time one request can use on this backend (fullest batch)."""
    per_seq = prompt + output
    cap = max(1, min(model.max_num_seqs, model.kv_tokens // max(per_seq, 1)))
    sizes = sorted({1, cap, *[b for b in model.profile.decode.batch if b <= cap]})
    prefill = min(model.prefill_ms(b, prompt)[0] / b for b in sizes)
    step = min(model.decode_step_ms(b, prompt + output / 2)[0] / b for b in sizes)
    return prefill + max(output - 1, 0) * step


def oracle_cost(records: Sequence[Record], backends: Sequence[SimBackend],
                window_s: float = 10.0, slack_s: float | None = None) -> OracleResult:
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    started = time.perf_counter()
    reqs = [r for r in records if not r.warmup]
    nr, na = len(reqs), len(backends)
    if nr == 0:
        return OracleResult(0.0, 0, 0, 0.0, "empty")
    slack = window_s if slack_s is None else slack_s
    cost = np.zeros((nr, na))
    work = np.zeros((nr, na))
    allowed = np.ones((nr, na), dtype=bool)
    infeasible = 0
    cache: dict[tuple[int, int, int], float] = {}
    for i, r in enumerate(reqs):
        p, o = r.planned_prompt_tokens, max(r.planned_output_tokens, 1)
        slo = Slo(**r.slo)
        for j, b in enumerate(backends):
            key = (j, p, o)
            if key not in cache:
                cache[key] = least_replica_ms(b.model, p, o)
            work[i, j] = cache[key]
            cost[i, j] = cache[key] * b.usd_per_hour / 3.6e6
            if r.slo:
                alone = b.model.predict(RequestShape(p, o), BackendLoad())
                allowed[i, j] = not slo.misses(alone)
        if not allowed[i].any():
            allowed[i] = True
            infeasible += 1
    n_vars = nr * na
    rows = np.repeat(np.arange(nr), na)
    eq = coo_matrix((np.ones(n_vars), (rows, np.arange(n_vars))), shape=(nr, n_vars))
    t0 = min(r.sent_s for r in reqs)
    windows = np.floor((np.array([r.sent_s for r in reqs]) - t0) / window_s).astype(int)
    nw = int(windows.max()) + 1
    ub_rows = (windows[:, None] * na + np.arange(na)[None, :]).ravel()
    ub = coo_matrix((work.ravel(), (ub_rows, np.arange(n_vars))), shape=(nw * na, n_vars))
    ub_rhs = np.tile([b.replicas * (window_s + slack) * 1e3 for b in backends], nw)
    bounds = np.where(allowed.ravel(), math.inf, 0.0)
    result = linprog(cost.ravel(), A_ub=ub.tocsr(), b_ub=ub_rhs, A_eq=eq.tocsr(),
                     b_eq=np.ones(nr), bounds=list(zip(np.zeros(n_vars), bounds)),
                     method="highs")
    solve = time.perf_counter() - started
    if not result.success:  # over capacity even for the oracle: drop the capacity rows
        result = linprog(cost.ravel(), A_eq=eq.tocsr(), b_eq=np.ones(nr),
                         bounds=list(zip(np.zeros(n_vars), bounds)), method="highs")
        return OracleResult(float(result.fun), nr, infeasible, time.perf_counter() - started,
                            "capacity relaxed (the fleet is over capacity for this workload)")
    return OracleResult(float(result.fun), nr, infeasible, solve, "optimal")
