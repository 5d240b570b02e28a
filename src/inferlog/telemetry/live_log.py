"""The live window of request records, read straight from the Redis Stream.

`GET /logs`, `/logs/{id}` and `/logs/stats` look back `LIVE_WINDOW_SECONDS` from now; stream ids
start with a millisecond timestamp, so a time bound is an id bound (`XREVRANGE + <ms>-0`).
`DELETE /logs` removes only entries the logs pipeline has acknowledged: delivered to its
consumer group (id <= the group's last-delivered id) and no longer pending.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from inferlog.telemetry.record import RECORD_FIELD

log = logging.getLogger(__name__)

PAGE = 500


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


def _ms_id(moment: dt.datetime) -> str:
    return f"{int(moment.timestamp() * 1000)}-0"


@dataclass(frozen=True)
class Deletion:
    removed: int
    kept: int


class LiveLog:
    def __init__(
        self, client: redis.asyncio.Redis, stream: str, group: str, window_seconds: int
    ) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.window_seconds = window_seconds

    def window_start(self, since: dt.datetime | None = None) -> dt.datetime:
        start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self.window_seconds)
        return max(start, since) if since is not None else start

    async def _newest_first(
        self, since: dt.datetime | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Records of the window, newest first, read page by page; unreadable entries skipped."""
        low = _ms_id(self.window_start(since))
        high = "+"
        while True:
            entries = await self.client.xrevrange(self.stream, max=high, min=low, count=PAGE)
            for entry_id, fields in entries:
                try:
                    yield json.loads(fields[RECORD_FIELD])
                except (KeyError, ValueError):
                    log.warning("stream entry %s is not a record; skipped", entry_id)
            if len(entries) < PAGE:
                return
            high = "(" + entries[-1][0]

    async def recent(
        self,
        limit: int,
        since: dt.datetime | None = None,
        keep: Callable[[dict[str, Any]], bool] = lambda record: True,
    ) -> list[dict[str, Any]]:
        found = []
        async for record in self._newest_first(since):
            if keep(record):
                found.append(record)
                if len(found) >= limit:
                    break
        return found

    async def find(self, transaction_id: str) -> dict[str, Any] | None:
        async for record in self._newest_first():
            if record.get("transaction", {}).get("id") == transaction_id:
                return record
        return None

    async def stream_info(self) -> dict[str, Any]:
        length = await self.client.xlen(self.stream)
        info: dict[str, Any] = {"stream": self.stream, "length": length, "group": self.group}
        group = await self._group()
        if group is None:
            info.update(consumers=0, pending=0, lag=length, last_delivered_id=None)
            return info
        info.update(
            consumers=group["consumers"],
            pending=group["pending"],
            lag=group.get("lag"),
            last_delivered_id=group["last-delivered-id"],
        )
        return info

    async def _group(self) -> dict[str, Any] | None:
        try:
            groups = await self.client.xinfo_groups(self.stream)
        except redis.ResponseError:  # no such stream yet
            return None
        return next((g for g in groups if g["name"] == self.group), None)

    async def delete_acknowledged(self) -> Deletion:
        group = await self._group()
        if group is None:
            return Deletion(removed=0, kept=await self.client.xlen(self.stream))
        last_delivered = group["last-delivered-id"]
        pending = await self._pending_ids()
        removed = 0
        low = "-"
        while True:
            entries = await self.client.xrange(self.stream, min=low, max=last_delivered, count=PAGE)
            acknowledged = [entry_id for entry_id, _ in entries if entry_id not in pending]
            if acknowledged:
                removed += await self.client.xdel(self.stream, *acknowledged)
            if len(entries) < PAGE:
                break
            low = "(" + entries[-1][0]
        return Deletion(removed=removed, kept=await self.client.xlen(self.stream))

    async def _pending_ids(self) -> set[str]:
        ids: set[str] = set()
        low = "-"
        while True:
            page = await self.client.xpending_range(
                self.stream, self.group, min=low, max="+", count=PAGE
            )
            ids.update(p["message_id"] for p in page)
            if len(page) < PAGE:
                return ids
            low = "(" + page[-1]["message_id"]
