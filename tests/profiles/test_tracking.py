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
