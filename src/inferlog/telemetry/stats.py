"""Live statistics over a list of request records (newest first), for `GET /logs/stats`."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from typing import Any

import numpy as np


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99]).tolist()
    return {"p50": p50, "p95": p95, "p99": p99}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _predictions(record: dict[str, Any]) -> list[dict[str, Any]]:
    prediction = record.get("ml", {}).get("prediction")
    if prediction is None:
        return []
    return prediction if isinstance(prediction, list) else [prediction]


def hottest_functions(profiles: list[dict[str, Any]], top: int = 10) -> list[dict[str, Any]]:
    """Top functions summed over requests: cumulative time, calls, and in how many requests."""
    totals: dict[tuple[str, str, int], dict[str, Any]] = defaultdict(
        lambda: {"cumtime_ms": 0.0, "tottime_ms": 0.0, "calls": 0, "requests": 0}
    )
    for profile in profiles:
        for f in profile.get("top_functions", []):
            entry = totals[(f["function"], f["file"], f["line"])]
            entry["cumtime_ms"] += f["cumtime_ms"]
            entry["tottime_ms"] += f["tottime_ms"]
            entry["calls"] += f["calls"]
            entry["requests"] += 1
    ranked = sorted(totals.items(), key=lambda item: item[1]["cumtime_ms"], reverse=True)
    return [
        {"function": name, "file": file, "line": line, **values}
        for (name, file, line), values in ranked[:top]
    ]


def compute(records: list[dict[str, Any]], window_seconds: int) -> dict[str, Any]:
    latencies = [r["event"]["duration"] / 1e6 for r in records]
    statuses = [r["http"]["response"]["status_code"] for r in records]
    profiles = [r["ml"]["profile"] for r in records if "ml" in r]
    profiled = [p for p in profiles if p["profiled"]]
    per_minute = Counter(r["@timestamp"][:16] for r in records)
    latency_by_minute: dict[str, list[float]] = defaultdict(list)
    for r, latency in zip(records, latencies, strict=True):
        latency_by_minute[r["@timestamp"][:16]].append(latency)
    labels = Counter(p["label"] for r in records for p in _predictions(r))
    by_route: dict[str, list[float]] = defaultdict(list)
    for r, latency in zip(records, latencies, strict=True):
        by_route[r["url"]["path"]].append(latency)
    count = len(records)
    span_minutes = window_seconds / 60
    if records:
        newest = dt.datetime.fromisoformat(records[0]["@timestamp"])
        oldest = dt.datetime.fromisoformat(records[-1]["@timestamp"])
        span_minutes = max((newest - oldest).total_seconds() / 60, 1 / 60)
    return {
        "requests": count,
        "errors": sum(s >= 400 for s in statuses),
        "error_rate": sum(s >= 400 for s in statuses) / count if count else 0.0,
        "server_error_rate": sum(s >= 500 for s in statuses) / count if count else 0.0,
        "status_counts": dict(sorted(Counter(str(s) for s in statuses).items())),
        "throughput_per_minute": count / span_minutes if count else 0.0,
        "throughput": [
            {"minute": m, "requests": n, **_percentiles(latency_by_minute[m])}
            for m, n in sorted(per_minute.items())
        ],
        "latency_ms": _percentiles(latencies),
        "latency_ms_by_route": {path: _percentiles(v) for path, v in sorted(by_route.items())},
        "inferences": len(profiles),
        "profiled": len(profiled),
        "mean_inference_ms": _mean([p["inference_ms"] for p in profiles]),
        "mean_cpu_ms": _mean([p["cpu_ms"] for p in profiles]),
        "rss_mb": profiles[0]["rss_mb"] if profiles else None,
        "max_rss_mb": max((p["rss_mb"] for p in profiles), default=None),
        "labels": dict(labels),
        "hottest_functions": hottest_functions(profiled),
    }
