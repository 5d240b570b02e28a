"""Live statistics, kept incrementally in Redis: one hash of counters per minute of the window.

Write side: the shipper adds each batch's counts (`tally`) in the same MULTI/EXEC as the batch's
XADDs and spool offset. A record is counted exactly when it enters the stream, once, whichever
API process ships it, and whether or not the logs pipeline or Elasticsearch is running: the
Monitoring tab shows the traffic exactly when an engineer needs it. The cost is one more JSON
decode per record in the API process, off the request path (`bench/telemetry_costs.py`).
(Counting in the logs pipeline would make the statistics stop whenever the pipeline is stuck on
a refusing sink, and count a batch twice when it is redelivered.)

Read side: `GET /logs/stats` reads the window's hashes (one `HGETALL` per minute: ~60 small
hashes, whatever the traffic) and `summarize`s them. No record is read back.

Latency percentiles come from a DDSketch (the `ddsketch` library's logarithmic mapping, relative
accuracy 1 %): each latency is counted in the bucket `key(ms)`; buckets of minutes and routes
merge by addition. A percentile is within 1 % (relative) of the exact order statistic
`numpy.percentile(..., method="lower")` of the same latencies (tests/unit/test_stats.py).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping

from inferlog.telemetry.keys import stats_key

log = logging.getLogger(__name__)

RELATIVE_ACCURACY = 0.01
MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
PREDICTION_ROUTES = ("POST /predict", "POST /predict_proba", "POST /predict/batch")
OTHER_ROUTE = "other"
MINUTE = dt.timedelta(minutes=1)
# A minute's hash outlives the window by this much, so a late batch still finds its minute.
KEY_GRACE_SECONDS = 120

RouteOf = Callable[[str, str], str]


def minute_of(moment: dt.datetime) -> dt.datetime:
    return moment.replace(second=0, microsecond=0)


def route_matcher(routes: Iterable[tuple[str, re.Pattern[str], set[str]]]) -> RouteOf:
    """`METHOD /template` for a known route, `other` for anything else: the counters' field
    names stay few whatever paths clients invent."""
    table = list(routes)

    def route_of(method: str, path: str) -> str:
        for template, regex, methods in table:
            if method in methods and regex.match(path):
                return f"{method} {template}"
        return OTHER_ROUTE

    return route_of


# -- write side -----------------------------------------------------------------------------


@dataclass
class Tally:
    """Counter increments per minute, and the transaction ids, of one batch of records."""

    minutes: dict[dt.datetime, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    sums: dict[dt.datetime, dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )
    transaction_ids: list[str | None] = field(default_factory=list)

    def negated(self) -> Tally:
        """The increments that take this tally back."""
        undo = Tally(transaction_ids=self.transaction_ids)
        for minute, counts in self.minutes.items():
            undo.minutes[minute].update({name: -value for name, value in counts.items()})
        for minute, sums in self.sums.items():
            undo.sums[minute].update({name: -total for name, total in sums.items()})
        return undo


def _outcomes(ml: dict[str, Any]) -> list[dict[str, Any]]:
    prediction = ml.get("prediction")
    if prediction is None:
        return []
    return prediction if isinstance(prediction, list) else [prediction]


def tally(records: Iterable[str], route_of: RouteOf, oldest: dt.datetime) -> Tally:
    """Counts of the records (JSON text) whose minute is not before `oldest`; the transaction
    id of every record, in order (None for text that is not a record)."""
    result = Tally()
    for text in records:
        try:
            record = json.loads(text)
            moment = minute_of(dt.datetime.fromisoformat(record["@timestamp"]))
            result.transaction_ids.append(record["transaction"]["id"])
        except (ValueError, KeyError, TypeError):
            result.transaction_ids.append(None)  # the pipeline dead-letters it
            continue
        if moment < oldest:  # a record from a spool taken over late: its minute has gone
            continue
        try:
            _count(record, route_of, result.minutes[moment], result.sums[moment])
        except (KeyError, TypeError, AttributeError):
            log.warning("record %s lacks a field the statistics need", record["transaction"])
    return result


def _count(
    record: dict[str, Any], route_of: RouteOf, counts: Counter[str], sums: dict[str, float]
) -> None:
    status = record["http"]["response"]["status_code"]
    route = route_of(record["http"]["request"]["method"], record["url"]["path"])
    counts["requests"] += 1
    counts[f"status|{status}"] += 1
    counts[f"route|{route}"] += 1
    if status >= 400:
        counts[f"route_errors|{route}"] += 1
        counts[f"error|{record.get('error', {}).get('type', 'unknown')}"] += 1
    counts[f"latency|{route}|{MAPPING.key(record['event']['duration'] / 1e6)}"] += 1
    ml = record.get("ml")
    if ml is None:
        return
    for outcome in _outcomes(ml):
        counts[f"label|{outcome['label']}"] += 1
    profile = ml["profile"]
    counts["inferences"] += 1
    sums["inference_ms"] += profile["inference_ms"]
    sums["cpu_ms"] += profile["cpu_ms"]
    sums["rss_mb"] += profile["rss_mb"]
    if not profile["profiled"]:
        return
    counts["profiled"] += 1
    for f in profile["top_functions"]:
        name = f"{f['line']}|{f['file']}|{f['function']}"
        counts[f"fn_calls|{name}"] += f["calls"]
        counts[f"fn_requests|{name}"] += 1
        sums[f"fn_cumtime_ms|{name}"] += f["cumtime_ms"]
        sums[f"fn_tottime_ms|{name}"] += f["tottime_ms"]


def write_commands(pipe: Any, stream: str, counts: Tally, window_seconds: int) -> None:
    """Queue the increments on a Redis pipeline (the shipper's transaction)."""
    for minute in counts.minutes.keys() | counts.sums.keys():
        key = stats_key(stream, minute)
        for name, value in counts.minutes.get(minute, Counter()).items():
            pipe.hincrby(key, name, value)
        for name, total in counts.sums.get(minute, {}).items():
            pipe.hincrbyfloat(key, name, round(total, 4))
        pipe.expireat(key, int(minute.timestamp()) + window_seconds + KEY_GRACE_SECONDS)


# -- read side ------------------------------------------------------------------------------


def window_minutes(now: dt.datetime, window_seconds: int) -> list[dt.datetime]:
    """The minutes of the window, oldest first, the current (partial) minute last."""
    last = minute_of(now)
    count = max(1, window_seconds // 60)
    return [last - MINUTE * i for i in range(count - 1, -1, -1)]


async def read_window(client: Any, stream: str, minutes: list[dt.datetime]) -> list[dict[str, str]]:
    async with client.pipeline(transaction=False) as pipe:
        for minute in minutes:
            pipe.hgetall(stats_key(stream, minute))
        return await pipe.execute()


def _sketch(buckets: Counter[int]) -> DDSketch:
    sketch = DDSketch(RELATIVE_ACCURACY)
    for key, count in buckets.items():
        sketch.add(MAPPING.value(key), count)
    return sketch


def percentiles(buckets: Counter[int]) -> dict[str, float | None]:
    if not buckets:
        return {"p50": None, "p95": None, "p99": None}
    sketch = _sketch(buckets)
    values = {}
    for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        value = sketch.get_quantile_value(q)
        values[name] = None if value is None else round(float(value), 3)
    return values


@dataclass
class _Merged:
    counts: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    latency: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))


def _merge(hashes: Iterable[dict[str, str]]) -> _Merged:
    merged = _Merged()
    for fields in hashes:
        for name, value in fields.items():
            if name.startswith("latency|"):
                _, route, key = name.rsplit("|", 2)
                merged.latency[route][int(key)] += int(value)
            else:
                merged.counts[name] += float(value)
    return merged


def _prediction_latency(merged: _Merged) -> Counter[int]:
    total: Counter[int] = Counter()
    for route in PREDICTION_ROUTES:
        total.update(merged.latency.get(route, Counter()))
    return total


def _prefixed(counts: dict[str, float], prefix: str) -> dict[str, float]:
    return {k[len(prefix) :]: v for k, v in counts.items() if k.startswith(prefix)}


def _hottest(counts: dict[str, float], top: int = 10) -> list[dict[str, Any]]:
    cumtime = _prefixed(counts, "fn_cumtime_ms|")
    ranked = sorted(cumtime.items(), key=lambda item: item[1], reverse=True)[:top]
    functions = []
    for name, total in ranked:
        line, file, function = name.split("|", 2)
        functions.append(
            {
                "function": function,
                "file": file,
                "line": int(line),
                "cumtime_ms": round(total, 3),
                "tottime_ms": round(counts[f"fn_tottime_ms|{name}"], 3),
                "calls": int(counts[f"fn_calls|{name}"]),
                "requests": int(counts[f"fn_requests|{name}"]),
            }
        )
    return functions


def _mean(total: float, count: float) -> float | None:
    return round(total / count, 3) if count else None


def summarize(minutes: list[dt.datetime], hashes: list[dict[str, str]]) -> dict[str, Any]:
    """The statistics of the window from its per-minute hashes (`minutes` oldest first)."""
    per_minute = [_merge([fields]) for fields in hashes]
    merged = _merge(hashes)
    counts = merged.counts
    routes = _prefixed(counts, "route|")
    predictions = sum(routes.get(r, 0) for r in PREDICTION_ROUTES)
    prediction_errors = sum(counts[f"route_errors|{r}"] for r in PREDICTION_ROUTES)
    statuses = {k: int(v) for k, v in sorted(_prefixed(counts, "status|").items())}
    requests = int(counts["requests"])
    errors = sum(n for code, n in statuses.items() if int(code) >= 400)
    last_rss = next(
        (
            _mean(m.counts["rss_mb"], m.counts["inferences"])
            for m in reversed(per_minute)
            if m.counts["inferences"]
        ),
        None,
    )
    throughput = [
        {
            "minute": f"{minute:%Y-%m-%dT%H:%M}",
            "requests": int(sum(m.counts[f"route|{r}"] for r in PREDICTION_ROUTES)),
            "other_requests": int(
                m.counts["requests"] - sum(m.counts[f"route|{r}"] for r in PREDICTION_ROUTES)
            ),
            **percentiles(_prediction_latency(m)),
        }
        for minute, m in zip(minutes, per_minute, strict=True)
    ]
    return {
        "minutes": len(minutes),
        "estimator": f"DDSketch, relative accuracy {RELATIVE_ACCURACY:.0%}",
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else 0.0,
        "server_error_rate": (
            sum(n for code, n in statuses.items() if int(code) >= 500) / requests
            if requests
            else 0.0
        ),
        "status_counts": statuses,
        "error_types": {k: int(v) for k, v in sorted(_prefixed(counts, "error|").items())},
        "prediction_routes": list(PREDICTION_ROUTES),
        "predictions": int(predictions),
        "prediction_error_rate": prediction_errors / predictions if predictions else 0.0,
        "throughput_per_minute": predictions / len(minutes),
        "last_minute_requests": throughput[-2]["requests"] if len(throughput) > 1 else None,
        "throughput": throughput,
        "latency_ms": percentiles(_prediction_latency(merged)),
        "latency_ms_by_route": {
            route: {"requests": int(routes.get(route, 0)), **percentiles(buckets)}
            for route, buckets in sorted(merged.latency.items())
        },
        "inferences": int(counts["inferences"]),
        "profiled": int(counts["profiled"]),
        "mean_inference_ms": _mean(counts["inference_ms"], counts["inferences"]),
        "mean_cpu_ms": _mean(counts["cpu_ms"], counts["inferences"]),
        "rss_mb": last_rss,
        "labels": {k: int(v) for k, v in sorted(_prefixed(counts, "label|").items())},
        "hottest_functions": _hottest(counts),
    }
