"""Prometheus metrics (prometheus-client), in a registry of the app's own.

Labels use the route template (`/logs/{transaction_id}`), never the raw path, so label
cardinality stays bounded. Shipper counters are read at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from inferlog.telemetry.shipper import ShipperCounters

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class _ShipperCollector(Collector):
    def __init__(self, read: Callable[[], ShipperCounters | None]) -> None:
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        counters = self._read()
        if counters is None:
            return
        for name, help_text in (
            ("shipped", "records added to the Redis Stream"),
            ("spooled", "records written to the spool while Redis was unreachable"),
            ("dropped", "records lost because the spool and the memory queue were full"),
            ("failed", "requests whose record could not be built"),
            ("corrupt", "spool lines that were not records, set aside in corrupt.ndjson"),
            ("taken_over", "records taken over from the spool of a process that is gone"),
        ):
            yield CounterMetricFamily(
                f"inferlog_shipper_{name}", help_text, value=getattr(counters, name)
            )
        for name, help_text in (
            ("backlog", "records written, not yet in the Redis Stream"),
            ("backlog_peak", "the largest backlog since the process started"),
            ("spool_pending", "records in the spool, not yet in the Redis Stream"),
            ("in_memory", "records waiting in memory because the spool refused them"),
        ):
            yield GaugeMetricFamily(
                f"inferlog_shipper_{name}", help_text, value=getattr(counters, name)
            )
        yield GaugeMetricFamily(
            "inferlog_shipper_redis_available",
            "1 when the last attempt to reach Redis succeeded",
            value=int(counters.redis_available),
        )
        yield GaugeMetricFamily(
            "inferlog_shipper_healthy",
            "0 while the shipper has a problem (see /ready or /logs/stats for which)",
            value=int(counters.healthy),
        )


class Metrics:
    def __init__(self, shipper_counters: Callable[[], ShipperCounters | None]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "inferlog_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "inferlog_http_request_duration_seconds",
            "time spent in the API per request",
            ["route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference = Histogram(
            "inferlog_inference_duration_seconds",
            "time of the model call",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.profiled = Counter(
            "inferlog_inferences",
            "inferences, profiled or not",
            ["profiled"],
            registry=self.registry,
        )
        self.model = Info("inferlog_model", "the model being served", registry=self.registry)
        self.registry.register(_ShipperCollector(shipper_counters))

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, str(status)).observe(seconds)

    def observe_inference(self, route: str, seconds: float, profiled: bool) -> None:
        self.inference.labels(route).observe(seconds)
        self.profiled.labels("true" if profiled else "false").inc()
