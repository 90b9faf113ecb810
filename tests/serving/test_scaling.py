"""Autoscaling policies on plain data (serving/scaling.py): a virtual clock, given capacities."""

from __future__ import annotations

import random

from serving.scaling import (
    CostAwareScaler,
    CostAwareSettings,
    OngoingRequestsScaler,
    Replicas,
    ScaledBackend,
)

CHAT = "chat p0-128 o0-64"  # the bucket of a 100-token prompt, 50-token answer of class chat
BATCH = "batch p0-128 o0-64"
SLOS = {"chat": {"tpot_ms": 10.0}, "batch": {"e2e_ms": 60_000.0}}
# req/s per replica: "cheap" cannot meet chat's TPOT; both serve batch, "dear" faster.
CAPACITY = {CHAT: {"cheap": 0.0, "dear": 4.0}, BATCH: {"cheap": 2.0, "dear": 4.0}}


def scaler(min_replicas: int = 0, hold_s: float = 60.0, margin: float = 0.0) -> CostAwareScaler:
    backends = [ScaledBackend("cheap", 1.0, min_replicas=min_replicas, startup_s=20.0),
                ScaledBackend("dear", 3.0, min_replicas=min_replicas, startup_s=20.0)]
    settings = CostAwareSettings(interval_s=10.0, halflife_s=10.0, margin=margin, noise_z=0.0,
                                 downscale_hold_s=hold_s)
    return CostAwareScaler(backends, SLOS, settings, CAPACITY)


class Fleet:
    """Carries decisions out at once (no start-up), for the policy's own logic."""

    def __init__(self, s: CostAwareScaler | OngoingRequestsScaler) -> None:
        self.s = s
        self.now = 0.0
        self.ready = {"cheap": 0, "dear": 0}
        self.history: list[dict[str, int]] = []

    def tick(self, arrivals: dict[str, float], ongoing: dict[str, int] | None = None) -> None:
        for cls, rate in arrivals.items():
            for _ in range(round(rate * self.s.interval_s)):
                self.s.arrive(self.now, cls, 100, 50)
        self.now += self.s.interval_s
        seen = {k: Replicas(0, n, 0, (ongoing or {}).get(k, 0)) for k, n in self.ready.items()}
        self.ready = dict(self.s.decide(self.now, seen).target)
        self.history.append(dict(self.ready))


def test_scale_up_goes_to_the_cheapest_backend_that_meets_the_slo() -> None:
    f = Fleet(scaler())
    for _ in range(6):
        f.tick({"batch": 5.0})
    assert f.ready == {"cheap": 3, "dear": 0}  # 5 req/s at 2 per cheap replica, $3 < $6
    f = Fleet(scaler())
    for _ in range(6):
        f.tick({"chat": 5.0})
    assert f.ready == {"cheap": 0, "dear": 2}  # only dear meets chat's TPOT


def test_growth_is_immediate_and_follows_a_rise() -> None:
    f = Fleet(scaler())
    f.tick({"batch": 1.0})
    assert f.ready["cheap"] == 1
    f.tick({"batch": 9.0})  # the first interval of a step already adds replicas
    assert f.ready["cheap"] > 1


def test_scale_down_waits_for_the_hold_and_sheds_the_dearest_first() -> None:
    f = Fleet(scaler(hold_s=60.0))
    for _ in range(6):
        f.tick({"batch": 5.0, "chat": 5.0})
    before = dict(f.ready)
    # chat fills 1.25 dear replicas; the second's rest takes 3 batch req/s, one cheap the rest
    assert before == {"cheap": 1, "dear": 2}
    for _ in range(3):  # the rates fall: 30 s later nothing has gone yet
        f.tick({"batch": 1.5, "chat": 2.0})
        assert f.ready == before
    downs = []
    for _ in range(10):
        f.tick({"batch": 1.5, "chat": 2.0})
        downs += [k for k in f.ready if f.ready[k] < before[k] and k not in downs]
    assert downs == ["dear", "cheap"]  # the dearest went first
    assert f.ready == {"cheap": 0, "dear": 1}  # both buckets fit on one dear replica


def test_no_scale_down_while_a_replica_is_starting() -> None:
    s = scaler(hold_s=0.0)
    for _ in range(3):
        for _ in range(50):
            s.arrive(0.0, "batch", 100, 50)
        s.decide(10.0 * (_ + 1), {"cheap": Replicas(0, 3)})
    # the rate fell to nothing, but a replica of the other backend is still starting
    d = s.decide(40.0, {"cheap": Replicas(0, 3), "dear": Replicas(1, 0)})
    assert d.target["cheap"] == 3


def test_hysteresis_holds_under_a_noisy_rate() -> None:
    rng = random.Random(1)
    f = Fleet(scaler(hold_s=120.0, margin=0.2))
    for _ in range(200):  # Poisson arrivals around 5 req/s, 2000 s
        n = sum(1 for _ in range(100) if rng.random() < 0.5)  # binomial ~ 50 per interval
        f.tick({"batch": n / 10.0})
    steady = f.history[20:]
    changes = sum(1 for a, b in zip(steady, steady[1:]) if a != b)
    assert changes <= 4, steady


def test_scale_to_zero_and_back() -> None:
    f = Fleet(scaler(min_replicas=0, hold_s=30.0))
    for _ in range(4):
        f.tick({"batch": 3.0})
    assert f.ready["cheap"] == 2
    for _ in range(30):  # no traffic: the smoothed rate decays, then the hold passes
        f.tick({})
    assert f.ready == {"cheap": 0, "dear": 0}
    f.tick({"batch": 3.0})
    assert f.ready["cheap"] >= 1


def test_min_and_max_replicas_bound_the_target() -> None:
    backends = [ScaledBackend("cheap", 1.0, min_replicas=1, max_replicas=2),
                ScaledBackend("dear", 3.0, min_replicas=1)]
    s = CostAwareScaler(backends, SLOS, CostAwareSettings(interval_s=10.0, margin=0.0, noise_z=0.0),
                        CAPACITY)
    for _ in range(200):
        s.arrive(0.0, "batch", 100, 50)
    d = s.decide(10.0, {"cheap": Replicas(0, 1), "dear": Replicas(0, 1)})
    # 20 req/s: cheap capped at 2 (4 req/s), the rest on dear (16 req/s, 4 replicas)
    assert d.target == {"cheap": 2, "dear": 4}


def test_the_routing_table_follows_the_plan_once_its_replicas_are_up() -> None:
    s = scaler()
    for _ in range(50):
        s.arrive(0.0, "batch", 100, 50)
    d = s.decide(10.0, {"cheap": Replicas(0, 0), "dear": Replicas(0, 0)})
    assert d.target["cheap"] == 3 and d.routing_table is None  # not up yet
    d = s.decide(20.0, {"cheap": Replicas(0, 3), "dear": Replicas(0, 0)})
    assert d.routing_table is not None
    assert d.routing_table[0]["shares"] == {"cheap": 1.0}


def test_ray_default_waits_its_delays() -> None:
    backends = [ScaledBackend("cheap", 1.0, min_replicas=1, max_replicas=10),
                ScaledBackend("dear", 3.0, min_replicas=1, max_replicas=10)]
    s = OngoingRequestsScaler(backends, target_ongoing_requests=2.0, upscale_delay_s=30.0,
                              downscale_delay_s=60.0, look_back_s=10.0, interval_s=10.0)
    f = Fleet(s)
    f.ready = {"cheap": 1, "dear": 1}
    f.tick({}, {"cheap": 8, "dear": 2})
    assert f.ready == {"cheap": 1, "dear": 1}  # wants 4 of cheap, not for 30 s yet
    for _ in range(3):
        f.tick({}, {"cheap": 8, "dear": 2})
    assert f.ready == {"cheap": 4, "dear": 1}
    for _ in range(6):
        f.tick({}, {"cheap": 0, "dear": 0})
    assert f.ready["cheap"] == 4
    f.tick({}, {"cheap": 0, "dear": 0})
    assert f.ready == {"cheap": 1, "dear": 1}


def test_the_noise_allowance_shrinks_as_the_rate_grows() -> None:
    def provisioned(rate: float) -> float:
        s = CostAwareScaler([ScaledBackend("cheap", 1.0)], SLOS,
                            CostAwareSettings(interval_s=10.0, margin=0.0, noise_z=2.0), CAPACITY)
        for tick in range(5):
            for _ in range(round(rate * 10)):
                s.arrive(10.0 * tick, "batch", 100, 50)
            s.decide(10.0 * (tick + 1), {"cheap": Replicas(0, 1)})
        return sum(s.forecast().values()) / rate

    low, high = provisioned(1.0), provisioned(100.0)
    assert low > high > 1.0  # both above the rate, the few requests relatively more so
    assert high < 1.1
