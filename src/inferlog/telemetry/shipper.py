"""The shipper: records leave the request path at once and reach the Redis Stream in batches.

    request path --submit()--> inbox --worker thread--> memory queue --XADD (pipeline)--> Redis
                                                            |   ^
                                              overflow (oldest)  | drained first, in order
                                                            v   |
                                                         spool file

- `submit` never blocks and never touches the network.
- The worker builds records (profile statistics, JSON) and ships them in MULTI/EXEC pipelines,
  so a batch is added whole or not at all.
- While Redis is unreachable, records wait in memory up to `SHIPPER_QUEUE_SIZE`; beyond that the
  oldest move to the spool file. The spool always holds the older records, so draining the spool
  first, then memory, keeps the original order. Retries back off exponentially up to 5 s.
- A clean stop ships what it can and spools the rest; the next start drains the spool first.
- Counters: shipped, queued (in memory now), spooled (ever written to the spool), dropped (only
  when the spool is full; logged), and failed (drafts that could not be turned into a record).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import redis

from inferlog.telemetry.drafts import Draft
from inferlog.telemetry.spool import Spool

log = logging.getLogger(__name__)

RECORD_FIELD = "record"
MAX_BACKOFF_SECONDS = 5.0


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
        client: redis.Redis,
        stream: str,
        spool: Spool,
        build: Callable[[Draft, bool], str],
        batch_size: int = 200,
        queue_size: int = 10_000,
        stream_max_len: int = 1_000_000,
        flush_interval: float = 0.05,
    ) -> None:
        self._client = client
        self._stream = stream
        self._spool = spool
        self._build = build
        self._batch_size = batch_size
        self._queue_size = queue_size
        self._max_len = stream_max_len
        self._flush_interval = flush_interval
        self._inbox: queue.SimpleQueue[Draft] = queue.SimpleQueue()
        self._memory: deque[str] = deque()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_attempt = 0.0
        self._backoff = 0.1
        self._shipped = 0
        self._spooled = 0
        self._dropped = 0
        self._failed = 0
        self._available = False
        self._idle = threading.Event()
        self._idle_lock = threading.Lock()  # keeps "inbox empty" and "idle" consistent

    # -- request path -------------------------------------------------------------------------

    def submit(self, draft: Draft) -> None:
        with self._idle_lock:
            self._inbox.put(draft)
            self._idle.clear()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="inferlog-shipper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ship what can be shipped, spool the rest."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        log.info("shipper stopped: %s", self.counters())

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until everything submitted so far has been shipped (tests, benchmarks)."""
        return self._idle.wait(timeout)

    def counters(self) -> ShipperCounters:
        return ShipperCounters(
            shipped=self._shipped,
            queued=len(self._memory) + self._inbox.qsize(),
            spooled=self._spooled,
            spool_pending=self._spool.pending,
            dropped=self._dropped,
            failed=self._failed,
            redis_available=self._available,
        )

    # -- worker -------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._take_drafts(block=True)
            self._overflow_to_spool()
            self._ship()
            with self._idle_lock:
                if not self._memory and not self._spool.pending and self._inbox.empty():
                    self._idle.set()
        while not self._inbox.empty():
            self._take_drafts(block=False)
        self._next_attempt = 0.0
        self._ship()
        self._spill(len(self._memory))

    def _take_drafts(self, block: bool) -> None:
        drafts: list[Draft] = []
        try:
            if block:
                drafts.append(self._inbox.get(timeout=self._flush_interval))
            while len(drafts) < self._batch_size:
                drafts.append(self._inbox.get_nowait())
        except queue.Empty:
            pass
        # Under overload, skip the costly profile statistics rather than fall behind.
        with_profile = self._inbox.qsize() < self._queue_size
        for draft in drafts:
            try:
                self._memory.append(self._build(draft, with_profile))
            except Exception:
                self._failed += 1
                log.exception("could not build the record of transaction %s", draft.transaction_id)

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

    def _xadd(self, lines: list[str]) -> None:
        pipe = self._client.pipeline(transaction=True)
        for line in lines:
            pipe.xadd(self._stream, {RECORD_FIELD: line}, maxlen=self._max_len, approximate=True)
        pipe.execute()

    def _ship(self) -> None:
        if not (self._memory or self._spool.pending) or time.monotonic() < self._next_attempt:
            return
        try:
            while self._spool.pending:
                lines, offset = self._spool.read(self._batch_size)
                if not lines:
                    break
                self._xadd(lines)
                self._spool.commit(offset, len(lines))
                self._shipped += len(lines)
            while self._memory:
                lines = [self._memory[i] for i in range(min(self._batch_size, len(self._memory)))]
                self._xadd(lines)
                for _ in lines:
                    self._memory.popleft()
                self._shipped += len(lines)
        except redis.RedisError as exc:
            if self._available or self._backoff == 0.1:
                log.warning("Redis unreachable (%s): records wait in memory, then the spool", exc)
            self._available = False
            self._next_attempt = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, MAX_BACKOFF_SECONDS)
            return
        if not self._available:
            log.info("Redis reachable: shipping records")
        self._available = True
        self._backoff = 0.1
