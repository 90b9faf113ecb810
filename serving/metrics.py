"""Prometheus metrics of the ingress (one registry per ingress replica)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("costroute_requests", "Requests by backend and outcome",
                                ["backend", "outcome"], registry=r)
        self.ttft = Histogram("costroute_ttft_ms", "Time to first token, ms", ["backend"],
                              buckets=_LATENCY_BUCKETS_MS, registry=r)
        self.tpot = Histogram("costroute_tpot_ms", "Time per output token, ms", ["backend"],
                              buckets=_LATENCY_BUCKETS_MS, registry=r)
        self.e2e = Histogram("costroute_e2e_ms", "Request to last token, ms", ["backend"],
                             buckets=_LATENCY_BUCKETS_MS, registry=r)
        self.slo = Counter("costroute_slo", "Requests that met or missed their SLO",
                           ["slo_class", "backend", "met"], registry=r)
        self.expected_usd = Counter("costroute_expected_cost_usd",
                                    "Sum of expected (attributed) request costs, USD",
                                    ["backend"], registry=r)
        self.prediction_error = Histogram(
            "costroute_prediction_error_ratio", "Predicted / observed latency",
            ["backend", "metric"], buckets=(0.25, 0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2, 4),
            registry=r)
        self.overhead = Histogram(
            "costroute_overhead_ms", "The ingress's own time per request outside waiting for "
            "the backend (parse, route, encode), ms", ["backend"],
            buckets=(0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500), registry=r)
        self.inflight = Gauge("costroute_inflight", "Requests in flight", ["backend"], registry=r)
        self.replicas = Gauge("costroute_replicas", "Replicas as Ray Serve reports them, by "
                              "state (starting, running, stopping)", ["backend", "state"],
                              registry=r)
        self.target_replicas = Gauge("costroute_target_replicas", "The autoscaler's target",
                                     ["backend"], registry=r)
        self.provisioned_usd_per_hour = Gauge(
            "costroute_provisioned_usd_per_hour", "Replicas billed now (starting, running, "
            "stopping) x usd_per_hour", ["backend"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
