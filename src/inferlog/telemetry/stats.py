"""Live statistics, kept incrementally in Redis: one hash of counters per minute of the window.

Write side: the shipper adds each batch's counts (`tally`) in the same MULTI/EXEC as the batch's
XADDs and spool offset. A record is counted exactly when it enters the stream, once, whichever
API process ships it, and whether or not the logs pipeline or Elasticsearch is running: the
Monitoring tab shows the traffic exactly when an engineer needs it. The cost is one more JSON
decode per record in the API process: in no request's path, but on the same event loop, once
per record (measured by `bench/telemetry_costs.py`, in `docs/performance.md`).
(Counting in the logs pipeline would make the statistics stop whenever the pipeline is stuck on
a refusing sink, and count a batch twice when it is redelivered.)

Read side: `GET /logs/stats` reads the window's hashes (one `HGETALL` per minute: ~60 small
hashes, whatever the traffic) and `summarize`s them. No record is read back.

Latency percentiles come from a DDSketch (the `ddsketch` library's logarithmic mapping, relative
accuracy 1 %): each latency is counted in the bucket `key(ms)`; buckets of minutes and routes
merge by addition, and a quantile is DDSketch's: the bucket holding rank `q * (n - 1)`. A
percentile is within 1 % (relative) of the exact order statistic
`numpy.percentile(..., method="lower")` of the same latencies (tests/unit/test_stats.py).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pydantic_core
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

    @functools.lru_cache(maxsize=1024)  # the same few paths, over and over
    def route_of(method: str, path: str) -> str:
        for template, regex, methods in table:
            if method in methods and regex.match(path):
                return f"{method} {template}"
        return OTHER_ROUTE

    return route_of


# -- write side -----------------------------------------------------------------------------


FunctionKey = tuple[int, str, str]  # line, file, function


@dataclass
class Tally:
    """Counter increments per minute, and the transaction ids, of one batch of records."""

    minutes: dict[dt.datetime, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    sums: dict[dt.datetime, defaultdict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )
    # Per function: calls, requests, cumulative ms, own ms. Field names are made once per
    # batch, not per record: a record names ten functions.
    functions: dict[dt.datetime, dict[FunctionKey, list[float]]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    transaction_ids: list[str | None] = field(default_factory=list)

    def negated(self) -> Tally:
        """The increments that take this tally back."""
        undo = Tally(transaction_ids=self.transaction_ids)
        for minute, counts in self.minutes.items():
            undo.minutes[minute].subtract(counts)
        for minute, sums in self.sums.items():
            undo.sums[minute] = defaultdict(float, {k: -v for k, v in sums.items()})
        for minute, functions in self.functions.items():
            undo.functions[minute] = {k: [-v for v in values] for k, values in functions.items()}
        return undo

    def fields(self, minute: dt.datetime) -> tuple[dict[str, int], dict[str, float]]:
        """The minute's integer and float increments, by hash field name."""
        counts: dict[str, int] = dict(self.minutes.get(minute, {}))
        sums: dict[str, float] = dict(self.sums.get(minute, {}))
        for (line, file, function), (calls, requests, cumtime, tottime) in self.functions.get(
            minute, {}
        ).items():
            name = f"{line}|{file}|{function}"
            counts[f"fn_calls|{name}"] = int(calls)
            counts[f"fn_requests|{name}"] = int(requests)
            sums[f"fn_cumtime_ms|{name}"] = cumtime
            sums[f"fn_tottime_ms|{name}"] = tottime
        return counts, sums


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
            record = pydantic_core.from_json(text)  # Rust: about twice as fast as json.loads
            moment = minute_of(dt.datetime.fromisoformat(record["@timestamp"]))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
            result.transaction_ids.append(str(record["transaction"]["id"]))
        except (ValueError, KeyError, TypeError, AttributeError):  # from_json: ValueError
            result.transaction_ids.append(None)  # the pipeline dead-letters it
            continue
        if moment < oldest:  # a record from a spool taken over late: its minute has gone
            continue
        try:
            _count(record, route_of, result, moment)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            log.warning(
                "record %s not counted in the statistics: %r", result.transaction_ids[-1], exc
            )
    return result


def _count(record: dict[str, Any], route_of: RouteOf, result: Tally, minute: dt.datetime) -> None:
    """Read everything first, then add: a record that lacks a field counts nothing."""
    status = record["http"]["response"]["status_code"]
    route = route_of(record["http"]["request"]["method"], record["url"]["path"])
    latency_ms = max(record["event"]["duration"] / 1e6, MAPPING.min_possible)
    names = [
        "requests",
        f"status|{status}",
        f"route|{route}",
        f"latency|{route}|{MAPPING.key(latency_ms)}",
    ]
    if status >= 400:
        names += [
            f"route_errors|{route}",
            f"error|{record.get('error', {}).get('type', 'unknown')}",
        ]
    ml = record.get("ml")
    sums: tuple[float, float, float] | None = None
    functions: list[tuple[FunctionKey, int, float, float]] = []
    omitted: dict[str, int] = {}
    if ml is not None:
        names += [f"label|{outcome['label']}" for outcome in _outcomes(ml)]
        # A large batch's record keeps its first cases; the rest are only tallied.
        labels = (ml.get("omitted") or {}).get("labels") or {}
        omitted = {f"label|{label}": int(count) for label, count in labels.items()}
        profile = ml["profile"]
        sums = (float(profile["inference_ms"]), float(profile["cpu_ms"]), float(profile["rss_mb"]))
        names.append("inferences")
        if profile["profiled"]:
            names.append("profiled")
            functions = [
                (
                    (f["line"], f["file"], f["function"]),
                    f["calls"],
                    f["cumtime_ms"],
                    f["tottime_ms"],
                )
                for f in profile["top_functions"]
            ]
    result.minutes[minute].update(names)
    result.minutes[minute].update(omitted)
    if sums is not None:
        totals = result.sums[minute]
        totals["inference_ms"] += sums[0]
        totals["cpu_ms"] += sums[1]
        totals["rss_mb"] += sums[2]
    known = result.functions[minute]
    for key, calls, cumtime, tottime in functions:
        values = known.setdefault(key, [0, 0, 0.0, 0.0])
        values[0] += calls
        values[1] += 1
        values[2] += cumtime
        values[3] += tottime


def write_commands(pipe: Any, stream: str, counts: Tally, window_seconds: int) -> None:
    """Queue the increments on a Redis pipeline (the shipper's transaction)."""
    for minute in counts.minutes.keys() | counts.sums.keys() | counts.functions.keys():
        key = stats_key(stream, minute)
        integers, floats = counts.fields(minute)
        for name, value in integers.items():
            pipe.hincrby(key, name, value)
        for name, total in floats.items():
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
        hashes: list[dict[str, str]] = await pipe.execute()
    return hashes


QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


def percentiles(buckets: dict[int, int]) -> dict[str, float | None]:
    """DDSketch's quantiles (the rank `q * (n - 1)`, lower), walked over the sorted buckets."""
    total = sum(buckets.values())
    if not total:
        return {name: None for name, _ in QUANTILES}
    keys = sorted(buckets)
    values: dict[str, float | None] = {}
    for name, q in QUANTILES:
        rank, running = q * (total - 1), 0
        for key in keys:
            running += buckets[key]
            if running > rank:
                values[name] = float(f"{MAPPING.value(key):.4g}")  # keeps the 1 % at any scale
                break
    return values


@dataclass
class Minute:
    """One minute's hash, parsed: plain counters and latency buckets per route."""

    counts: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    latency: dict[str, dict[int, int]] = field(default_factory=dict)

    @classmethod
    def parse(cls, fields: dict[str, str]) -> Minute:
        minute = cls()
        for name, value in fields.items():
            if name.startswith("latency|"):
                if int(value) <= 0:  # a bucket taken back by the shipper (a failed batch)
                    continue
                _, route, key = name.rsplit("|", 2)
                minute.latency.setdefault(route, {})[int(key)] = int(value)
            else:
                minute.counts[name] = float(value)
        return minute

    def add(self, other: Minute) -> None:
        for name, value in other.counts.items():
            self.counts[name] += value
        for route, buckets in other.latency.items():
            mine = self.latency.setdefault(route, {})
            for key, count in buckets.items():
                mine[key] = mine.get(key, 0) + count

    @functools.cached_property
    def prediction_percentiles(self) -> dict[str, float | None]:
        """Of a minute read once and kept (see `LiveLog.statistics`): computed once."""
        return percentiles(self.prediction_latency())

    def prediction_latency(self) -> dict[int, int]:
        total: dict[int, int] = {}
        for route in PREDICTION_ROUTES:
            for key, count in self.latency.get(route, {}).items():
                total[key] = total.get(key, 0) + count
        return total

    def predictions(self) -> int:
        return int(sum(self.counts.get(f"route|{r}", 0) for r in PREDICTION_ROUTES))


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


def summarize(minutes: list[dt.datetime], per_minute: list[Minute]) -> dict[str, Any]:
    """The statistics of the window from its parsed per-minute hashes (oldest first)."""
    window = Minute()
    for minute in per_minute:
        window.add(minute)
    counts = window.counts
    routes = _prefixed(counts, "route|")
    predictions = window.predictions()
    prediction_errors = sum(counts.get(f"route_errors|{r}", 0) for r in PREDICTION_ROUTES)
    statuses = {k: int(v) for k, v in sorted(_prefixed(counts, "status|").items())}
    requests = int(counts["requests"])
    errors = sum(n for code, n in statuses.items() if int(code) >= 400)
    server_errors = sum(n for code, n in statuses.items() if int(code) >= 500)
    profiled_minutes = [m for m in per_minute if m.counts["inferences"]]
    throughput = [
        {
            "minute": f"{when:%Y-%m-%dT%H:%M}",
            "requests": m.predictions(),
            "other_requests": int(m.counts["requests"]) - m.predictions(),
            **m.prediction_percentiles,
        }
        for when, m in zip(minutes, per_minute, strict=True)
    ]
    return {
        "minutes": len(minutes),
        "estimator": f"DDSketch, relative accuracy {RELATIVE_ACCURACY:.0%}",
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else 0.0,
        "server_error_rate": server_errors / requests if requests else 0.0,
        "status_counts": statuses,
        "error_types": {k: int(v) for k, v in sorted(_prefixed(counts, "error|").items())},
        "prediction_routes": list(PREDICTION_ROUTES),
        "predictions": predictions,
        "prediction_error_rate": prediction_errors / predictions if predictions else 0.0,
        "throughput_per_minute": predictions / len(minutes),
        "last_minute_requests": throughput[-2]["requests"] if len(throughput) > 1 else None,
        "throughput": throughput,
        "latency_ms": percentiles(window.prediction_latency()),
        "latency_ms_by_route": {
            route: {"requests": int(routes.get(route, 0)), **percentiles(buckets)}
            for route, buckets in sorted(window.latency.items())
        },
        "inferences": int(counts["inferences"]),
        "profiled": int(counts["profiled"]),
        "mean_inference_ms": _mean(counts["inference_ms"], counts["inferences"]),
        "mean_cpu_ms": _mean(counts["cpu_ms"], counts["inferences"]),
        "rss_mb": (
            _mean(profiled_minutes[-1].counts["rss_mb"], profiled_minutes[-1].counts["inferences"])
            if profiled_minutes
            else None
        ),
        "labels": {k: int(v) for k, v in sorted(_prefixed(counts, "label|").items())},
        "hottest_functions": _hottest(counts),
    }
