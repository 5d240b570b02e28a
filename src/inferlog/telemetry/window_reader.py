"""Reads that scan the live window run in a separate process, never on the API's event loop.

A filtered `GET /logs`, `GET /drift` and `DELETE /logs` may read thousands of records (up to
`SCAN_MAX_RECORDS`). Decoded on the event loop, that stalls every inference in flight (one
poll of 10,000 records took 1.4 s); in a thread it would still hold the GIL against the
inference thread. So each API process starts one reader process (at startup in a server, else
on first use; with `spawn`: no copy of the server's threads or sockets), which has its own
Redis connection and answers with the response body already encoded: the event loop only
passes bytes along.

Stream ids start with a millisecond timestamp, so a time bound is an id bound.
`DELETE /logs` removes only entries the logs pipeline has acknowledged: delivered to its
consumer group (id <= the group's last-delivered id) and no longer pending.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import multiprocessing
import re
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import cached_property
from typing import Any, cast

import numpy as np
import orjson
import redis

from inferlog.telemetry.record import RECORD_FIELD, status_matches
from inferlog.telemetry.stream_group import StreamEntries, group_info

log = logging.getLogger(__name__)

PAGE = 500
SHIPPED_WITHIN = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Window:
    """What the reader process needs to know about the stream (picklable)."""

    redis_url: str
    stream: str
    group: str
    window_seconds: int
    max_records: int
    max_bytes: int


@dataclass
class ScanCount:
    """What one scan read; `full` once it stopped at SCAN_MAX_RECORDS or SCAN_MAX_BYTES."""

    records: int = 0
    bytes: int = 0
    full: bool = False


@dataclass(frozen=True, kw_only=True)
class LogFilter:
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    status: str | None = None
    path: str | None = None
    request_id: str | None = None

    @cached_property
    def _needles(self) -> list[re.Pattern[str]]:
        """Text a record's JSON must contain to match: a scan parses only the records that
        have it (parsing is most of a scan's cost; the filter itself is then applied)."""
        needles = []
        if self.status is not None:
            code = self.status.removesuffix("xx")
            needles.append(
                re.compile(rf'"status_code":\s*{code}' + ("" if len(code) == 1 else r"\b"))
            )
        for value in (self.path, self.request_id):
            if value is None or not (value.isascii() and value.isprintable()):
                continue  # only text every JSON writer spells the same: no escapes
            if not {'"', "\\"} & set(value):
                needles.append(re.compile(re.escape(f'"{value}"')))
        return needles

    def may_keep(self, text: str) -> bool:
        return all(needle.search(text) for needle in self._needles)

    def keeps(self, record: dict[str, Any]) -> bool:
        if self.since is not None or self.until is not None:
            moment = dt.datetime.fromisoformat(record["@timestamp"])
            if (self.since and moment < self.since) or (self.until and moment > self.until):
                return False
        if self.request_id is not None and record["http"]["request"].get("id") != self.request_id:
            return False
        if self.path is not None and record["url"]["path"] != self.path:
            return False
        status = record["http"]["response"]["status_code"]
        return self.status is None or status_matches(status, self.status)


class ReaderError(RuntimeError):
    """Redis could not be read; the message is safe to show."""


# -- in the reader process ------------------------------------------------------------------

_clients: dict[str, redis.Redis] = {}
_reference: dict[str, Any] | None = None


def _init(reference: dict[str, Any] | None, log_level: str) -> None:
    global _reference
    _reference = reference
    # Ctrl-C in a terminal reaches the whole process group: the API stops this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _warm() -> None:
    """Import what `/drift` needs (seconds of imports) before anyone asks."""
    import inferlog.features
    import inferlog.ml.drift  # noqa: F401


def _client(window: Window) -> redis.Redis:
    if window.redis_url not in _clients:
        _clients[window.redis_url] = redis.Redis.from_url(
            window.redis_url,
            protocol=2,
            decode_responses=True,
            socket_connect_timeout=1.0,
            socket_timeout=10.0,
        )
    return _clients[window.redis_url]


def _ms_id(moment: dt.datetime) -> str:
    return f"{int(moment.timestamp() * 1000)}-0"


def _newest_first(
    window: Window,
    since: dt.datetime | None,
    until: dt.datetime | None,
    count: ScanCount,
    may_keep: Callable[[str], bool] | None = None,
) -> Iterator[dict[str, Any] | None]:
    """Records of the window, newest first, until `max_records` or `max_bytes` of them are read
    (counted in `count`); unreadable ones skipped. A record whose text `may_keep` refuses is
    not parsed: None in its place."""
    now = dt.datetime.now(dt.UTC)
    start = now - dt.timedelta(seconds=window.window_seconds)
    oldest = max(start, since) if since else start
    # An entry's id is the time it was shipped, after its request: look a little past `until`
    # (the caller filters on @timestamp). Compared with now first: `until` may be any year.
    if until is not None and until < now and until + SHIPPED_WITHIN < oldest:
        return  # a range that ends before the window begins
    high = "+" if until is None or until >= now else _ms_id(until + SHIPPED_WITHIN)
    low = _ms_id(oldest)
    client = _client(window)
    while True:
        page = min(PAGE, window.max_records - count.records)
        entries = cast(
            StreamEntries, client.xrevrange(window.stream, max=high, min=low, count=page)
        )
        for entry_id, fields in entries:
            text = fields.get(RECORD_FIELD, "")
            count.records += 1
            count.bytes += len(text)
            if may_keep is not None and not may_keep(text):
                yield None
            else:
                try:
                    # orjson: a scan is mostly parsing; 3.5 times faster than json here
                    # (bench/request_costs.py).
                    yield orjson.loads(text)
                except ValueError:  # orjson.JSONDecodeError is a ValueError
                    log.warning("stream entry %s is not a record; skipped", entry_id)
            if count.records >= window.max_records or count.bytes >= window.max_bytes:
                count.full = True
                return
        if len(entries) < page:
            return
        high = "(" + entries[-1][0]


def _guarded(job: Any, *args: Any) -> tuple[bool, Any]:
    """The job's result, or what failed (logged by the API process, once per outage)."""
    try:
        return True, job(*args)
    except (redis.RedisError, OSError) as exc:
        return False, (f"Redis is unreachable ({type(exc).__name__})", str(exc))


def _scan_logs(window: Window, limit: int, keep: LogFilter) -> bytes:
    found, count = [], ScanCount()
    for record in _newest_first(window, keep.since, None, count, keep.may_keep):
        if record is not None and keep.keeps(record):
            found.append(record)
            if len(found) >= limit:
                break
    body = {
        "count": len(found),
        "window_seconds": window.window_seconds,
        "scanned": count.records,
        "truncated": count.full and len(found) < limit,
        "records": found,
    }
    return orjson.dumps(body)


def cases_of(record: dict[str, Any]) -> list[tuple[dict[str, float], float]]:
    """(input, probability of malignancy) for each case a successful prediction record holds."""
    ml = record.get("ml")
    if not ml or record["http"]["response"]["status_code"] >= 400:
        return []
    inputs = ml["input"] if isinstance(ml["input"], list) else [ml["input"]]
    if ml.get("prediction") is not None:
        outcomes = ml["prediction"] if isinstance(ml["prediction"], list) else [ml["prediction"]]
        probabilities = [o["probability"] for o in outcomes]
    else:
        probabilities = [ml["probabilities"]["malignant"]]
    return list(zip(inputs, probabilities, strict=True))


def _drift(
    window: Window,
    model_version: str,
    since: dt.datetime | None,
    until: dt.datetime | None,
    cases: tuple[int, int],
    histograms: bool,
) -> bytes:
    """The drift report of the newest cases in range: at most `cases[1]`, a verdict from
    `cases[0]` on. The reference holds 455 training cases: beyond a few thousand current ones
    the tests barely change, while the scan's cost grows with every record read."""
    from inferlog.features import matrix_of
    from inferlog.ml.drift import drift_report

    if _reference is None:
        raise RuntimeError("the reader process has no reference statistics")
    min_cases, max_cases = cases
    omitted, count = 0, ScanCount()
    pairs: list[tuple[dict[str, float], float]] = []
    in_range = LogFilter(since=since, until=until)
    for record in _newest_first(window, since, until, count):
        if record is not None and in_range.keeps(record):
            found = cases_of(record)
            pairs += found
            if found:
                omitted += (record["ml"].get("omitted") or {}).get("cases", 0)
            if len(pairs) >= max_cases:
                break
    enough = len(pairs) >= max_cases
    pairs = pairs[:max_cases]
    inputs = matrix_of(case for case, _ in pairs)
    probabilities = np.array([p for _, p in pairs])
    report = drift_report(_reference, inputs, probabilities, min_cases, histograms)
    report = {"model_version": model_version, **report}
    report["records_read"] = count.records
    # Cases of large batches past RECORD_MAX_CASES: predicted, not recorded, not compared.
    report["cases_not_recorded"] = omitted
    # Older cases in range were left out: DRIFT_MAX_CASES reached, or the scan's bounds.
    report["truncated"] = enough or count.full
    return orjson.dumps(report, option=orjson.OPT_SERIALIZE_NUMPY)


def _delete_acknowledged(window: Window) -> dict[str, int]:
    client = _client(window)
    group = group_info(client, window.stream, window.group)
    if group is None:
        return {"removed": 0, "kept": client.xlen(window.stream)}
    pending: set[str] = set()
    low = "-"
    while True:
        page = cast(
            list[dict[str, Any]],
            client.xpending_range(window.stream, window.group, min=low, max="+", count=PAGE),
        )
        pending.update(p["message_id"] for p in page)
        if len(page) < PAGE:
            break
        low = "(" + page[-1]["message_id"]
    removed, low = 0, "-"
    while True:
        entries = cast(
            StreamEntries,
            client.xrange(window.stream, min=low, max=group["last-delivered-id"], count=PAGE),
        )
        acknowledged: list[Any] = [i for i, _ in entries if i not in pending]  # str, invariant
        if acknowledged:
            removed += client.xdel(window.stream, *acknowledged)
        if len(entries) < PAGE:
            break
        low = "(" + entries[-1][0]
    return {"removed": removed, "kept": client.xlen(window.stream)}


# -- in the API process ---------------------------------------------------------------------


class WindowReader:
    """The API's handle on its reader process (started by `start()` or on first use). One
    process: a long `DELETE /logs` makes the reads behind it wait."""

    def __init__(
        self, window: Window, reference: dict[str, Any] | None = None, log_level: str = "INFO"
    ) -> None:
        self.window = window
        self._reference = reference
        self._log_level = log_level
        self._pool: ProcessPoolExecutor | None = None
        self._failing = False  # the last read failed: the next failure is not news

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init,
                initargs=(self._reference, self._log_level),
            )
        return self._pool

    def start(self) -> None:
        self._executor().submit(_warm)

    async def _run(self, *job: Any) -> Any:
        loop = asyncio.get_running_loop()
        pool = self._executor()
        try:
            ok, result = await loop.run_in_executor(pool, _guarded, *job)
        except BrokenProcessPool as exc:  # killed (out of memory, say): a new one next time
            log.error("the reader process stopped: %s", exc)
            if self._pool is pool:  # not one another request has made since
                pool.shutdown(wait=False)
                self._pool = None
            raise ReaderError("the reader process stopped; try again") from exc
        if not ok:
            message, detail = result
            if not self._failing:
                log.error("reading the live window failed: %s", detail)
                self._failing = True
            raise ReaderError(message)
        if self._failing:
            log.info("reading the live window works again")
            self._failing = False
        return result

    async def logs(self, limit: int, keep: LogFilter) -> bytes:
        body: bytes = await self._run(_scan_logs, self.window, limit, keep)
        return body

    async def drift(
        self,
        model_version: str,
        since: dt.datetime | None,
        until: dt.datetime | None,
        cases: tuple[int, int],
        histograms: bool,
    ) -> bytes:
        """`cases`: (DRIFT_MIN_CASES, DRIFT_MAX_CASES)."""
        body: bytes = await self._run(
            _drift, self.window, model_version, since, until, cases, histograms
        )
        return body

    async def delete_acknowledged(self) -> dict[str, int]:
        counts: dict[str, int] = await self._run(_delete_acknowledged, self.window)
        return counts

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
