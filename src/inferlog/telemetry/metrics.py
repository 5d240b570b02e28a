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


SHIPPER_METRICS: tuple[tuple[type[CounterMetricFamily | GaugeMetricFamily], str, str], ...] = (
    (CounterMetricFamily, "shipped", "records added to the Redis Stream"),
    (CounterMetricFamily, "spooled", "records that waited in the spool for an unreachable Redis"),
    (CounterMetricFamily, "dropped", "records lost: the spool and the memory queue were full"),
    (CounterMetricFamily, "failed", "requests whose record could not be built"),
    (CounterMetricFamily, "failed_passes", "shipping passes that failed and were retried"),
    (CounterMetricFamily, "corrupt", "spool lines that were not records (see corrupt.ndjson)"),
    (CounterMetricFamily, "taken_over", "records taken over from a process that is gone"),
    (CounterMetricFamily, "unindexed", "records shipped without a transaction index entry"),
    (GaugeMetricFamily, "backlog", "records written, not yet in the Redis Stream"),
    (GaugeMetricFamily, "backlog_peak", "the largest backlog since the process started"),
    (GaugeMetricFamily, "spool_pending", "records in the spool, not yet in the Redis Stream"),
    (GaugeMetricFamily, "in_memory", "records waiting in memory: the spool refused them"),
    (GaugeMetricFamily, "redis_available", "1 when the last attempt to reach Redis succeeded"),
    (GaugeMetricFamily, "healthy", "0 while the shipper has a problem (/ready says which)"),
)


class _ShipperCollector(Collector):
    def __init__(self, read: Callable[[], ShipperCounters | None]) -> None:
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        counters = self._read()
        if counters is None:
            return
        for family, name, help_text in SHIPPER_METRICS:
            value = int(getattr(counters, name))
            yield family(f"inferlog_shipper_{name}", help_text, value=value)


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
