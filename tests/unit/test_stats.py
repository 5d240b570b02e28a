"""Live statistics: counted per minute from records, read back as the window's numbers."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import numpy as np
import pytest

from inferlog.telemetry.stats import (
    MAPPING,
    PREDICTION_ROUTES,
    RELATIVE_ACCURACY,
    Minute,
    Tally,
    percentiles,
    route_matcher,
    summarize,
    tally,
    window_minutes,
)

ROUTES = route_matcher(
    [
        ("/predict", re.compile("^/predict$"), {"POST"}),
        ("/predict/batch", re.compile("^/predict/batch$"), {"POST"}),
        ("/health", re.compile("^/health$"), {"GET"}),
        ("/logs/{transaction_id}", re.compile("^/logs/(?P<transaction_id>[^/]+)$"), {"GET"}),
    ]
)
NOW = dt.datetime(2026, 11, 24, 10, 5, 30, tzinfo=dt.UTC)
OLDEST = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC)


def record(
    minute: int,
    ms: float,
    status: int = 200,
    path: str = "/predict",
    method: str = "POST",
    labels: tuple[str, ...] = (),
    hot: float = 0.0,
) -> str:
    r: dict[str, Any] = {
        "@timestamp": f"2026-11-24T10:{minute:02d}:17.000000+00:00",
        "transaction": {"id": f"t-{minute}-{ms}-{status}-{path}"},
        "event": {"duration": int(ms * 1e6)},
        "http": {"request": {"method": method}, "response": {"status_code": status}},
        "url": {"path": path},
    }
    if status >= 400:
        r["error"] = {"type": "validation_error" if status == 422 else "internal_error"}
    if labels:
        outcomes = [{"label": label} for label in labels]
        r["ml"] = {
            "prediction": outcomes if len(outcomes) > 1 else outcomes[0],
            "profile": {
                "profiled": True,
                "inference_ms": 2.0,
                "cpu_ms": 1.0,
                "rss_mb": 100.0 + minute,
                "top_functions": [
                    {
                        "function": "predict",
                        "file": "p.py",
                        "line": 7,
                        "calls": 1,
                        "tottime_ms": 0.25,
                        "cumtime_ms": hot,
                    },
                ],
            },
        }
    return json.dumps(r)


def as_redis(counts: Tally) -> dict[dt.datetime, dict[str, str]]:
    """What HGETALL answers after the increments: field -> decimal text."""
    hashes: dict[dt.datetime, dict[str, str]] = {}
    for minute in counts.minutes.keys() | counts.sums.keys() | counts.functions.keys():
        integers, floats = counts.fields(minute)
        fields = {k: str(v) for k, v in integers.items()}
        fields |= {k: repr(round(v, 4)) for k, v in floats.items()}
        hashes[minute] = fields
    return hashes


def window_stats(records: list[str], window_seconds: int = 360) -> dict[str, Any]:
    hashes = as_redis(tally(records, ROUTES, OLDEST))
    minutes = window_minutes(NOW, window_seconds)
    return summarize(minutes, [Minute.parse(hashes.get(m, {})) for m in minutes])


def test_counts_rates_labels_and_functions_equal_the_numbers_by_hand() -> None:
    records = [
        record(1, 3.0, labels=("malignant",), hot=1.5),
        record(1, 5.0, labels=("benign", "benign", "malignant"), hot=2.5, path="/predict/batch"),
        record(3, 4.0, 422, path="/predict"),
        record(3, 9.0, 500, path="/predict"),
        record(4, 1.0, path="/health", method="GET"),
        record(4, 1.0, 404, path="/no/such/thing", method="GET"),
    ]
    stats = window_stats(records)
    assert stats["requests"] == 6
    assert stats["errors"] == 3
    assert stats["error_rate"] == pytest.approx(0.5)
    assert stats["server_error_rate"] == pytest.approx(1 / 6)
    assert stats["status_counts"] == {"200": 3, "404": 1, "422": 1, "500": 1}
    assert stats["error_types"] == {"internal_error": 2, "validation_error": 1}
    assert stats["predictions"] == 4  # /health and the unknown path are counted apart
    assert stats["prediction_error_rate"] == pytest.approx(0.5)
    assert stats["labels"] == {"benign": 2, "malignant": 2}
    assert stats["inferences"] == 2
    assert stats["profiled"] == 2
    assert stats["mean_inference_ms"] == pytest.approx(2.0)
    assert stats["rss_mb"] == pytest.approx(101.0)  # the latest minute with inferences
    (hot,) = stats["hottest_functions"]
    assert hot == {
        "function": "predict",
        "file": "p.py",
        "line": 7,
        "cumtime_ms": 4.0,
        "tottime_ms": 0.5,
        "calls": 2,
        "requests": 2,
    }
    assert set(stats["latency_ms_by_route"]) == {
        "POST /predict",
        "POST /predict/batch",
        "GET /health",
        "other",
    }
    assert stats["latency_ms_by_route"]["GET /health"]["requests"] == 1


def test_throughput_has_a_zero_for_every_minute_without_traffic() -> None:
    records = [record(1, 2.0), record(1, 2.0), record(3, 2.0), record(4, 1.0, path="/health")]
    stats = window_stats(records)  # 6 minutes: 10:00 .. 10:05
    throughput = stats["throughput"]
    assert [m["minute"][-5:] for m in throughput] == [
        "10:00",
        "10:01",
        "10:02",
        "10:03",
        "10:04",
        "10:05",
    ]
    assert [m["requests"] for m in throughput] == [0, 2, 0, 1, 0, 0]
    assert [m["other_requests"] for m in throughput] == [0, 0, 0, 0, 1, 0]
    assert throughput[2]["p50"] is None  # no point to join across the gap
    assert stats["throughput_per_minute"] == pytest.approx(3 / 6)
    assert stats["last_minute_requests"] == 0  # 10:04 had only a health check


def test_one_request_is_one_request_not_sixty_per_minute() -> None:
    stats = window_stats([record(5, 2.0)], window_seconds=3600)
    assert stats["minutes"] == 60
    assert stats["throughput_per_minute"] == pytest.approx(1 / 60)


def test_records_older_than_the_window_and_text_that_is_no_record_are_not_counted() -> None:
    old = json.loads(record(1, 2.0))
    old["@timestamp"] = "2026-11-24T09:59:59+00:00"
    counts = tally([json.dumps(old), "{not json}", record(2, 2.0)], ROUTES, OLDEST)
    assert counts.transaction_ids == [old["transaction"]["id"], None, "t-2-2.0-200-/predict"]
    assert sum(c["requests"] for c in counts.minutes.values()) == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_are_within_the_stated_bound_of_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # From tens of microseconds (health checks) to seconds: the bound is relative at any scale.
    latencies = rng.lognormal(mean=0.0, sigma=2.0, size=5000)
    records = [record(2, float(ms)) for ms in latencies]
    stats = window_stats(records)
    # DDSketch's guarantee: within RELATIVE_ACCURACY of the order statistic at rank q(n-1).
    exact = np.percentile(latencies, [50, 95, 99], method="lower")
    for name, value in zip(("p50", "p95", "p99"), exact, strict=True):
        estimate = stats["latency_ms"][name]
        assert abs(estimate - value) <= RELATIVE_ACCURACY * value, (name, estimate, value)


def test_a_bucket_maps_back_to_itself() -> None:
    for ms in (0.05, 0.9, 3.1, 250.0, 30_000.0):
        key = MAPPING.key(ms)
        assert MAPPING.key(MAPPING.value(key)) == key
        assert percentiles({key: 1})["p50"] == pytest.approx(ms, rel=RELATIVE_ACCURACY)


def test_a_zero_latency_and_a_record_missing_fields_neither_raise_nor_count_half() -> None:
    zero = record(1, 0.0)
    broken = json.loads(record(1, 2.0, labels=("benign",)))
    del broken["ml"]["profile"]["inference_ms"]
    counts = tally([zero, json.dumps(broken)], ROUTES, OLDEST)
    (minute,) = counts.minutes.values()
    assert minute["requests"] == 1  # the zero-latency one; the broken one not at all
    assert "label|benign" not in minute


def test_buckets_taken_back_by_the_shipper_are_not_latencies() -> None:
    hashes = as_redis(tally([record(1, 2.0)], ROUTES, OLDEST))
    (fields,) = hashes.values()
    taken_back = {name: "0" for name in fields}  # a failed batch, undone: every field at 0
    minutes = window_minutes(NOW, 360)
    parsed = [Minute.parse(taken_back if m == next(iter(hashes)) else {}) for m in minutes]
    stats = summarize(minutes, parsed)
    assert stats["requests"] == 0
    assert stats["latency_ms"] == {"p50": None, "p95": None, "p99": None}


def test_the_prediction_routes_are_the_routes_of_the_prediction_router() -> None:
    from inferlog.api.routes import predict

    routes = {
        f"{method} {route.path}" for route in predict.router.routes for method in route.methods
    }
    assert routes == set(PREDICTION_ROUTES)
