from __future__ import annotations

from typing import Any

import pytest

from inferlog.telemetry.stats import compute, hottest_functions


def record(
    minute: int, ms: float, status: int = 200, label: str | None = None, hot: float = 0.0
) -> dict[str, Any]:
    r: dict[str, Any] = {
        "@timestamp": f"2026-11-24T10:{minute:02d}:00.000000Z",
        "event": {"duration": int(ms * 1e6)},
        "http": {"response": {"status_code": status}},
        "url": {"path": "/predict"},
    }
    if label:
        r["ml"] = {
            "prediction": {"label": label},
            "profile": {
                "profiled": True,
                "inference_ms": 1.0,
                "cpu_ms": 0.5,
                "rss_mb": 100.0,
                "top_functions": [
                    {
                        "function": "predict",
                        "file": "p.py",
                        "line": 1,
                        "calls": 1,
                        "tottime_ms": 0.1,
                        "cumtime_ms": hot,
                    },
                ],
            },
        }
    return r


def test_counts_rates_labels_and_percentiles() -> None:
    records = [record(3, 10.0, 500), record(2, 4.0, 422)] + [
        record(1, float(i), label="malignant" if i % 2 else "benign", hot=1.0) for i in range(1, 9)
    ]
    stats = compute(records, window_seconds=3600)
    assert stats["requests"] == 10
    assert stats["errors"] == 2 and stats["error_rate"] == pytest.approx(0.2)
    assert stats["server_error_rate"] == pytest.approx(0.1)
    assert stats["labels"] == {"malignant": 4, "benign": 4}
    assert stats["latency_ms"]["p50"] == pytest.approx(4.5)  # of 1..8, 4 and 10
    assert stats["latency_ms"]["p99"] > 9.0
    assert stats["throughput_per_minute"] == pytest.approx(5.0)  # 10 requests over 2 minutes
    assert [t["requests"] for t in stats["throughput"]] == [8, 1, 1]
    assert stats["mean_inference_ms"] == 1.0


def test_an_empty_window_has_no_percentiles() -> None:
    stats = compute([], window_seconds=60)
    assert stats["requests"] == 0
    assert stats["latency_ms"] == {"p50": None, "p95": None, "p99": None}


def test_hottest_functions_sum_over_requests() -> None:
    profiles = [record(1, 1, label="benign", hot=h)["ml"]["profile"] for h in (1.0, 2.5)]
    (top,) = hottest_functions(profiles)
    assert top["cumtime_ms"] == pytest.approx(3.5)
    assert top["requests"] == 2 and top["calls"] == 2
