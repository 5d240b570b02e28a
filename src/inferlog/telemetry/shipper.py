"""The shipper: records leave the request path at once and reach the Redis Stream in batches.

    request path --submit()--> inbox --shipper task--> memory queue --XADD (pipeline)--> Redis
                                                            |   ^
                                              overflow (oldest)  | drained first, in order
                                                            v   |
                                                         spool file

- `submit` never blocks and never touches the network.
- The shipper is an asyncio task on the API's event loop, not a thread: then no other thread ever
  runs Python code while an inference is profiled, which is what keeps a profile to its own
  request on Python 3.12+ (one process-wide profiler that records every thread). It builds
  records (profile statistics, JSON) one at a time, yielding to requests between them, and ships
  them in MULTI/EXEC pipelines, so a batch is added whole or not at all.
- While Redis is unreachable, records wait in memory up to `SHIPPER_QUEUE_SIZE`; beyond that the
  oldest move to the spool file. The spool always holds the older records, so draining the spool
  first, then memory, keeps the original order. Retries back off exponentially up to 5 s.
- A clean stop ships what it can and spools the rest; the next start drains the spool first.
- Counters: shipped, queued (in memory now), spooled (ever written to the spool), dropped (only
  when the spool is full; logged), and failed (drafts that could not be turned into a record).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import redis
import redis.asyncio

from inferlog.telemetry.drafts import Draft
from inferlog.telemetry.spool import Spool

log = logging.getLogger(__name__)

RECORD_FIELD = "record"
MAX_BACKOFF_SECONDS = 5.0
FIRST_BACKOFF_SECONDS = 0.1


@dataclass
class ShipperCounters:
    shipped: int = 0
    queued: int = 0
    spooled: int = 0
    spool_pending: int = 0
    dropped: int = 0
    failed: int = 0
    redis_available: bool = False


class Shipper:
    def __init__(
        self,
        stream: str,
        spool: Spool,
        build: Callable[[Draft, bool], str],
        batch_size: int = 200,
        queue_size: int = 10_000,
        stream_max_len: int = 1_000_000,
        flush_interval: float = 0.05,
    ) -> None:
        self._stream = stream
        self._spool = spool
        self._build = build
        self._batch_size = batch_size
        self._queue_size = queue_size
        self._max_len = stream_max_len
        self._flush_interval = flush_interval
        self._inbox: deque[Draft] = deque()
        self._memory: deque[str] = deque()
        self._client: redis.asyncio.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._stopping = False
        self._next_attempt = 0.0
        self._backoff = FIRST_BACKOFF_SECONDS
        self._shipped = 0
        self._spooled = 0
        self._dropped = 0
        self._failed = 0
        self._available = False
        self._idle = threading.Event()  # waited on from other threads (tests, benchmarks)

    # -- request path (event loop) ------------------------------------------------------------

    def submit(self, draft: Draft) -> None:
        self._inbox.append(draft)
        self._idle.clear()
        if self._wakeup is not None:
            self._wakeup.set()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, client: redis.asyncio.Redis) -> None:
        """Start the shipper task on the running event loop."""
        self._client = client
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="inferlog-shipper")

    async def stop(self) -> None:
        """Ship what can be shipped, spool the rest."""
        self._stopping = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            await self._task
        log.info("shipper stopped: %s", self.counters())

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until everything submitted so far has been shipped."""
        return self._idle.wait(timeout)

    def counters(self) -> ShipperCounters:
        return ShipperCounters(
            shipped=self._shipped,
            queued=len(self._memory) + len(self._inbox),
            spooled=self._spooled,
            spool_pending=self._spool.pending,
            dropped=self._dropped,
            failed=self._failed,
            redis_available=self._available,
        )

    # -- the task -----------------------------------------------------------------------------

    async def _run(self) -> None:
        """Build each record as soon as its response is out (the loop is often idle then, while
        the client reads the answer); ship in batches, every `flush_interval` at the latest."""
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        next_flush = loop.time() + self._flush_interval
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), max(0.0, next_flush - loop.time()))
            self._wakeup.clear()
            await self._build_drafts()
            if len(self._memory) >= self._batch_size or loop.time() >= next_flush:
                self._overflow_to_spool()
                await self._ship()
                next_flush = loop.time() + self._flush_interval
            if not (self._inbox or self._memory or self._spool.pending):
                self._idle.set()
        await self._build_drafts()
        self._next_attempt = 0.0
        await self._ship()
        self._spill(len(self._memory))

    async def _build_drafts(self) -> None:
        while self._inbox:
            # Under overload, skip the costly profile statistics rather than fall behind.
            with_profile = len(self._inbox) < self._queue_size
            draft = self._inbox.popleft()
            try:
                self._memory.append(self._build(draft, with_profile))
            except Exception:
                self._failed += 1
                log.exception("could not build the record of transaction %s", draft.transaction_id)
            await asyncio.sleep(0)  # let waiting requests go first

    def _overflow_to_spool(self) -> None:
        excess = len(self._memory) - self._queue_size
        if excess > 0:
            self._spill(excess)

    def _spill(self, count: int) -> None:
        lines = [self._memory.popleft() for _ in range(count)]
        if not lines:
            return
        written = self._spool.append(lines)
        self._spooled += written
        if written < len(lines):
            lost = len(lines) - written
            self._dropped += lost
            log.error(
                "spool %s is full (%d bytes): %d records dropped (%d in total)",
                self._spool.path,
                self._spool.max_bytes,
                lost,
                self._dropped,
            )

    async def _xadd(self, lines: list[str]) -> None:
        assert self._client is not None
        async with self._client.pipeline(transaction=True) as pipe:
            for line in lines:
                pipe.xadd(
                    self._stream, {RECORD_FIELD: line}, maxlen=self._max_len, approximate=True
                )
            await pipe.execute()

    async def _ship(self) -> None:
        if not (self._memory or self._spool.pending) or time.monotonic() < self._next_attempt:
            return
        try:
            while self._spool.pending:
                lines, offset = self._spool.read(self._batch_size)
                if not lines:
                    break
                await self._xadd(lines)
                self._spool.commit(offset, len(lines))
                self._shipped += len(lines)
            while self._memory:
                lines = [self._memory[i] for i in range(min(self._batch_size, len(self._memory)))]
                await self._xadd(lines)
                for _ in lines:
                    self._memory.popleft()
                self._shipped += len(lines)
        except (redis.RedisError, OSError) as exc:
            if self._available or self._backoff == FIRST_BACKOFF_SECONDS:
                log.warning("Redis unreachable (%s): records wait in memory, then the spool", exc)
            self._available = False
            self._next_attempt = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, MAX_BACKOFF_SECONDS)
            return
        if not self._available:
            log.info("Redis reachable: shipping records")
        self._available = True
        self._backoff = FIRST_BACKOFF_SECONDS
