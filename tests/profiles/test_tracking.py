from profiles.latency import RequestShape, RunningSeq
from profiles.tracking import InflightTracker


def test_waiting_until_first_token_then_running() -> None:
    t = InflightTracker()
    t.submit("a", 10, 5)
    t.submit("b", 20, 8)
    assert t.snapshot().waiting == (RequestShape(10, 5), RequestShape(20, 8))
    t.tokens("a", 2)
    snap = t.snapshot()
    assert snap.running == (RunningSeq(12, 3),) and snap.waiting == (RequestShape(20, 8),)
    t.finish("a")
    t.finish("missing")  # unknown ids are ignored
    assert len(t) == 1


def test_arrival_rate_over_the_window() -> None:
    t = InflightTracker(rate_window_s=10.0)
    for i in range(20):
        t.submit(f"r{i}", 100, 5, now=float(i) * 0.5)  # 2 per second for 10 s
    snap = t.snapshot(now=10.0)
    assert abs(snap.arrival_rate_per_s - 2.0) < 0.15
    assert snap.mean_prompt_tokens == 100
    assert t.snapshot(now=100.0).arrival_rate_per_s == 0.0
