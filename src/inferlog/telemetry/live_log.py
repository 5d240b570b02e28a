"""What the API itself reads from Redis: bounded calls only, on its event loop.

- One record by transaction id: the shipper's index (`{stream}:tx:{id}` -> entry id, kept for
  the live window) and one `XRANGE id id`. Two commands whatever the stream's length.
- The live statistics: the window's per-minute hashes (`stats.py`).
- The stream and its consumer group: `XLEN`, `XINFO GROUPS`; the pipeline's sink problem (one
  `GET`) and Redis memory against its budget (`INFO memory`).
Anything that scans the window runs in the reader process (`window_reader.py`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from typing import Any, cast

import redis
import redis.asyncio

from inferlog.telemetry import stats
from inferlog.telemetry.keys import sink_problem_key, transaction_key
from inferlog.telemetry.record import RECORD_FIELD
from inferlog.telemetry.redis_memory import memory_use
from inferlog.telemetry.stream_group import StreamEntries, named_group, split_consumers

log = logging.getLogger(__name__)

REREAD_PER_CALL = 5


def connect(url: str) -> redis.asyncio.Redis:
    """An asyncio client: all the API's Redis I/O runs on its event loop (see the shipper)."""
    # RESP2 keeps replies identical between redis-server and the embedded server; short
    # timeouts keep a dead Redis from stalling a request or the shipper.
    return redis.asyncio.Redis.from_url(
        url,
        protocol=2,
        decode_responses=True,
        socket_connect_timeout=1.0,
        socket_timeout=2.0,
    )


class LiveLog:
    def __init__(
        self,
        client: redis.asyncio.Redis,
        stream: str,
        group: str,
        window_seconds: int,
        stale_consumer_ms: int,
    ) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.window_seconds = window_seconds
        self.stale_consumer_ms = stale_consumer_ms
        self._no_info = False
        self._minutes: dict[dt.datetime, tuple[float, stats.Minute]] = {}  # parsed, read when

    async def find(self, transaction_id: str) -> dict[str, Any] | None:
        entry_id = await self.client.get(transaction_key(self.stream, transaction_id))
        if entry_id is None:
            return None
        entries = cast(
            StreamEntries,
            await self.client.xrange(self.stream, min=entry_id, max=entry_id, count=1),
        )
        if not entries:  # trimmed, or deleted by DELETE /logs
            return None
        try:
            record: dict[str, Any] = json.loads(entries[0][1][RECORD_FIELD])
        except (KeyError, ValueError):
            log.warning("stream entry %s is not a record", entry_id)
            return None
        return record

    async def statistics(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """The window's statistics. A minute more than a minute old changes only when a late
        record arrives (a spool taken over): those are kept parsed and re-read a few per call,
        oldest read first, so a call reads ~7 hashes instead of 60 and every minute is fresh
        within ~12 calls."""
        minutes = stats.window_minutes(now or dt.datetime.now(dt.UTC), self.window_seconds)
        still_growing = set(minutes[-2:])
        closed = sorted(
            (m for m in minutes if m in self._minutes and m not in still_growing),
            key=lambda m: self._minutes[m][0],
        )
        due = set(closed[:REREAD_PER_CALL])
        wanted = [m for m in minutes if m not in self._minutes or m in still_growing or m in due]
        hashes = await stats.read_window(self.client, self.stream, wanted)
        read_at = time.monotonic()
        for minute, fields in zip(wanted, hashes, strict=True):
            self._minutes[minute] = (read_at, stats.Minute.parse(fields))
        for minute in set(self._minutes) - set(minutes):
            del self._minutes[minute]
        return stats.summarize(minutes, [self._minutes[m][1] for m in minutes])

    async def _memory(self) -> dict[str, Any] | None:
        if self._no_info:
            return None
        try:
            return memory_use(await self.client.info("memory"))
        except (redis.ResponseError, redis.ConnectionError):
            # The embedded Redis-compatible server has no INFO, and over TCP it closes the
            # connection on it: asked once, never again.
            self._no_info = True
            return None

    async def stream_info(self) -> dict[str, Any]:
        length = await self.client.xlen(self.stream)
        info: dict[str, Any] = {
            "stream": self.stream,
            "length": length,
            "group": self.group,
            "sink_problem": await self.client.get(sink_problem_key(self.stream, self.group)),
        }
        try:
            groups = await self.client.xinfo_groups(self.stream)
        except redis.ResponseError:  # no such stream yet
            groups = []
        group = named_group(groups, self.group)
        if group is None:
            info.update(
                consumers=0, stale_consumers=0, pending=0, lag=length, last_delivered_id=None
            )
        else:
            running, stale = split_consumers(
                await self.client.xinfo_consumers(self.stream, self.group), self.stale_consumer_ms
            )
            info.update(
                consumers=len(running),
                stale_consumers=len(stale),
                pending=group["pending"],
                lag=group.get("lag"),
                last_delivered_id=group["last-delivered-id"],
            )
        info["redis_memory"] = await self._memory()
        return info
