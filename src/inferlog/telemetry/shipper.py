"""The shipper: records go from the spool to the Redis Stream in batches, within ~50 ms.

    request path --submit()--> spool file (this process's) --shipper task--> XADD (MULTI/EXEC)
                        \\--> memory, only while the spool refuses writes (disk full, limit)

- `submit` runs on the request path, after the record is built and before the response goes
  out: one `write(2)`, no network. The cost of a record is paid by its own request, so under
  any load the work cannot pile up behind the responses; the backlog is only what waits for
  the next batch (reported as `backlog` and `backlog_peak`).
- The shipper is an asyncio task on the API's event loop, not a thread: no other thread runs
  Python code while an inference is profiled, which keeps a profile to its own request on
  Python 3.12+ (one process-wide profiler that records every thread). Every
  `flush_interval`, or as soon as a batch is full, it reads the spool from its committed
  offset and sends the records in MULTI/EXEC pipelines together with the new offset. The
  offset is also written next to the segment (`spool.py`). The same transaction adds the
  records to the live statistics (`stats.py`); after it, each record's transaction id is
  indexed to its entry id for keyed lookups. After a connection failure the
  shipper reads the offsets back from Redis, since a transaction whose answer was lost may have
  been applied; after a failed command it takes the offset and the statistics back, in one
  transaction sent before anything else (Redis applies the rest of a transaction whose
  command failed).
- While Redis is unreachable, records stay in the spool, fsynced after each failed pass, and
  passes back off up to 5 s (a full batch does not wake a shipper that is backing off). If the
  spool refuses a record (disk full, `SPOOL_MAX_BYTES`), it waits in memory, up to
  `SHIPPER_QUEUE_SIZE`; beyond that it is dropped: counted and logged. Memory is the one
  place where a record can be lost to a crash, or sent twice when a transaction's answer is
  lost (its batches carry no offset).
- A pass that fails for any other reason (a bug, a corrupt spool) is logged with its cause and
  retried; meanwhile `counters().problem` says what is wrong (shown by `/ready`,
  `/logs/stats` and `/metrics`).
- Spool segments left by a process that is gone are taken over at start and every
  `takeover_interval` seconds (see `spool.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import redis
import redis.asyncio

from inferlog.private_files import open_private_append
from inferlog.telemetry import stats
from inferlog.telemetry.keys import spool_offset_key, transaction_key
from inferlog.telemetry.record import RECORD_FIELD
from inferlog.telemetry.spool import Segment, Spool, SpoolFullError

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 5.0
FIRST_BACKOFF_SECONDS = 0.1
OFFSET_TTL_SECONDS = 30 * 24 * 3600  # the spool's offset file is the lasting copy


@dataclass(frozen=True)
class Offset:
    """A batch's place in its spool segment: the key of the committed offset in Redis, the
    offset before the batch and after it."""

    key: str
    end: int
    start: int


@dataclass
class ShipperCounters:
    shipped: int = 0
    backlog: int = 0
    backlog_peak: int = 0
    spooled: int = 0
    spool_pending: int = 0
    in_memory: int = 0
    dropped: int = 0
    failed: int = 0
    failed_passes: int = 0  # shipping passes that failed (and were retried)
    corrupt: int = 0
    taken_over: int = 0
    unindexed: int = 0
    redis_available: bool = True
    healthy: bool = True
    problem: str | None = None


class Shipper:
    def __init__(
        self,
        stream: str,
        spool: Spool,
        batch_size: int = 200,
        memory_size: int = 10_000,
        stream_max_len: int = 200_000,
        flush_interval: float = 0.05,
        takeover_interval: float = 10.0,
        window_seconds: int = 3600,
    ) -> None:
        self._stream = stream
        self._window_seconds = window_seconds
        self._route_of: stats.RouteOf = lambda method, path: stats.OTHER_ROUTE
        self._spool = spool
        self._batch_size = batch_size
        self._memory_size = memory_size
        self._max_len = stream_max_len
        self._flush_interval = flush_interval
        self._takeover_interval = takeover_interval
        self._memory: deque[str] = deque()
        self._client: redis.asyncio.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._stopping = False
        self._backoff = FIRST_BACKOFF_SECONDS
        self._resync = True  # ask Redis for the committed offsets before the next send
        self._unsynced = False  # spool writes not fsynced yet (only matters while Redis is down)
        self._counts = ShipperCounters()
        # Records spooled while Redis was up and not shipped yet: if an outage starts, they
        # wait for it too (counted in `spooled` then, once).
        self._uncounted = 0
        self._taken: list[Segment] = []  # taken over, not yet checked against Redis
        self._undo: tuple[stats.Tally, Offset | None] | None = None  # a failed batch's effects
        self._spool_problem: str | None = None
        self._pass_problem: str | None = None
        self._idle = threading.Event()  # waited on from other threads (tests, benchmarks)

    # -- request path (event loop) ------------------------------------------------------------

    def submit(self, line: str) -> None:
        """Keep one record until it is in Redis: in the spool, else in memory, else count it."""
        counts = self._counts
        try:
            self._spool.append(line.encode() + b"\n")
            if self._spool_problem is not None:
                log.info("spool writable again")
                self._spool_problem = None
            if counts.redis_available:
                self._uncounted += 1
            else:
                counts.spooled += 1
                self._unsynced = True
        except (OSError, SpoolFullError) as exc:
            self._spool_refused(line, exc)
        backlog = self._spool.pending + len(self._memory)
        counts.backlog_peak = max(counts.backlog_peak, backlog)
        self._idle.clear()
        # A full batch wakes the shipper, unless it is backing off after a failure.
        failing = not counts.redis_available or self._pass_problem is not None
        if backlog >= self._batch_size and not failing and self._wakeup is not None:
            self._wakeup.set()

    def _spool_refused(self, line: str, exc: Exception) -> None:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problem = f"spool not writable: {reason}"  # no path: it is shown by /ready
        if problem != self._spool_problem:
            log.error(
                "spool not writable (%s): records wait in memory (up to %d)", exc, self._memory_size
            )
            self._spool_problem = problem
        if len(self._memory) < self._memory_size:
            self._memory.append(line)
            return
        self._counts.dropped += 1
        if self._counts.dropped == 1 or self._counts.dropped % 1000 == 0:
            log.error(
                "spool and memory full: a record was dropped (%d so far)", self._counts.dropped
            )

    def count_failed(self) -> None:
        """A request whose record could not be built (the builder logs why)."""
        self._counts.failed += 1

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, client: redis.asyncio.Redis, route_of: stats.RouteOf | None = None) -> None:
        """Start the shipper task on the running event loop; `route_of` names the routes in
        the live statistics."""
        self._client = client
        if route_of is not None:
            self._route_of = route_of
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(
            self._run(self._wakeup), name="inferlog-shipper"
        )

    async def stop(self) -> None:
        """Ship what can be shipped; the spool keeps the rest for the next process."""
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
        """The running counts, with what is derived from the state now (backlog, problem)."""
        c = self._counts
        problem = self._pass_problem or self._spool_problem
        if problem is None and not c.redis_available:
            problem = "Redis unreachable: records wait in the spool"
        spool_pending, in_memory = self._spool.pending, len(self._memory)
        return replace(
            c,
            spool_pending=spool_pending,
            in_memory=in_memory,
            backlog=spool_pending + in_memory,
            problem=problem,
            healthy=problem is None,
        )

    # -- the task -----------------------------------------------------------------------------

    @property
    def _redis(self) -> redis.asyncio.Redis:
        if self._client is None:
            raise RuntimeError("the shipper is not started")
        return self._client

    async def _run(self, wakeup: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_takeover = loop.time()
        while not self._stopping:
            if loop.time() >= next_takeover:
                next_takeover = loop.time() + self._takeover_interval
                await self._guarded(self._take_over)
            ok = await self._guarded(self._ship)
            if ok:  # the ones still waiting are the newest
                self._uncounted = min(self._uncounted, self._spool.pending)
            if ok and not (self._spool.pending or self._memory):
                self._idle.set()
            delay = self._flush_interval if ok else self._backoff
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), delay)
            wakeup.clear()
        await self._guarded(self._ship)
        self._keep_memory_on_stop()
        self._spool.close()

    def _keep_memory_on_stop(self) -> None:
        """Records still in memory go to the spool if it takes them now; else they are lost:
        counted and logged."""
        while self._memory:
            try:
                self._spool.append(self._memory[0].encode() + b"\n")
            except (OSError, SpoolFullError) as exc:
                self._counts.dropped += len(self._memory)
                log.error(
                    "stopping: %d records held in memory are lost (spool: %s)",
                    len(self._memory),
                    exc,
                )
                self._memory.clear()
                return
            self._memory.popleft()

    async def _guarded(self, step: Callable[[], Awaitable[None]]) -> bool:
        """Run one step of a pass; any failure is logged with its cause and retried later."""
        try:
            await step()
        except Exception as exc:
            self._counts.failed_passes += 1
            if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
                self._redis_failed(exc)
                return False
            if isinstance(exc, redis.OutOfMemoryError):
                # Redis at its maxmemory (noeviction) refused the whole transaction: the
                # records stay in the spool until the pipeline has drained and trimmed.
                problem = "Redis is full (maxmemory): records wait in the spool"
                if problem != self._pass_problem:
                    log.error("%s; retrying", problem)
            else:
                # Said in /ready and /logs/stats: the kind only; the details (which may name
                # hosts, ports or server messages) go to the log.
                problem = f"shipper pass failed ({type(exc).__name__}): see the API's log"
                if problem != self._pass_problem:
                    log.exception("shipper pass failed: %s; retrying", exc)
            self._pass_problem = problem
            self._backoff = min(self._backoff * 2, MAX_BACKOFF_SECONDS)
            return False
        if self._pass_problem is not None:
            log.info("shipper pass succeeds again")
            self._pass_problem = None
        return True

    def _redis_failed(self, exc: Exception) -> None:
        counts = self._counts
        if counts.redis_available:
            log.warning("Redis unreachable (%s): records wait in the spool", exc)
            counts.spooled += min(self._uncounted, self._spool.pending)
            self._uncounted = 0
            self._unsynced = True
        counts.redis_available = False
        self._resync = True
        self._backoff = min(self._backoff * 2, MAX_BACKOFF_SECONDS)
        if self._unsynced:  # once per failed pass: passes are spaced by the backoff
            self._unsynced = False
            try:
                self._spool.fsync()
            except OSError as fsync_error:
                log.error("spool fsync failed: %s", fsync_error)

    async def _take_over(self) -> None:
        taken = self._spool.take_over_orphans()
        if taken:
            self._taken.extend(taken)
            self._idle.clear()
            self._resync = True

    def _offset_key(self, segment: Segment) -> str:
        return spool_offset_key(self._stream, segment.name)

    async def _ship(self) -> None:
        if self._undo is not None:
            await self._take_back(self._undo)
        if self._resync:
            await self._sync_offsets()
        for segment in list(self._spool.segments):
            key = self._offset_key(segment)
            while segment.pending:
                lines, end = segment.read(self._batch_size)
                if not lines:  # cannot happen with whole-line appends; never loop on it
                    log.error(
                        "spool %s: %d records counted, none readable", segment.path, segment.pending
                    )
                    segment.pending = 0
                    break
                records = self._records_of(lines, segment)
                await self._xadd(records, Offset(key, end, segment.offset))
                segment.commit(end, len(lines))
                self._shipped(len(records))
            if self._spool.release(segment):
                await self._redis.delete(key)
        while self._memory:
            batch = [self._memory[i] for i in range(min(self._batch_size, len(self._memory)))]
            await self._xadd(batch, None)
            for _ in batch:
                self._memory.popleft()
            self._shipped(len(batch))

    async def _sync_offsets(self) -> None:
        """Trust Redis for what was added already: after a failure (a transaction whose answer
        was lost may have been applied), and for segments taken over from a dead process."""
        segments = list(self._spool.segments)
        if segments:
            committed = await self._redis.mget([self._offset_key(s) for s in segments])
            for segment, offset in zip(segments, committed, strict=True):
                if offset is None:
                    continue
                before = segment.pending
                segment.skip_to(int(offset))
                if segment.own:  # ours: shipped by a transaction whose answer we missed
                    self._counts.shipped += before - segment.pending
        for segment in self._taken:
            self._counts.taken_over += segment.pending
            if segment.pending:
                log.info(
                    "spool %s: %d records left by a process that is gone; shipping them",
                    segment.path,
                    segment.pending,
                )
        self._taken.clear()
        self._resync = False

    def _records_of(self, lines: list[bytes], segment: Segment) -> list[str]:
        """Decoded lines; a line that is not a JSON object (a damaged file) is set aside."""
        records = []
        for line in lines:
            try:
                text = line.decode()
            except UnicodeDecodeError:
                text = ""
            if text.startswith("{") and text.endswith("}"):
                records.append(text)
                continue
            self._counts.corrupt += 1
            quarantine = self._spool.directory / "corrupt.ndjson"
            with open_private_append(quarantine) as f:
                f.write(line + b"\n")
            log.error(
                "spool %s: a line that is not a record was moved to %s (%d bytes)",
                segment.path,
                quarantine,
                len(line),
            )
        return records

    async def _xadd(self, records: list[str], offset: Offset | None) -> None:
        """One transaction: the records, their live statistics and the spool offset. Then the
        transaction-id index (`GET /logs/{id}`), which needs the entry ids Redis just made."""
        oldest = stats.minute_of(dt.datetime.now(dt.UTC)) - dt.timedelta(
            seconds=self._window_seconds
        )
        counts = stats.tally(records, self._route_of, oldest)
        async with self._redis.pipeline(transaction=True) as pipe:
            for record in records:
                pipe.xadd(
                    self._stream, {RECORD_FIELD: record}, maxlen=self._max_len, approximate=True
                )
            stats.write_commands(pipe, self._stream, counts, self._window_seconds)
            if offset is not None:
                pipe.set(offset.key, offset.end, ex=OFFSET_TTL_SECONDS)
            replies = await pipe.execute(raise_on_error=False)
        failed = [reply for reply in replies if isinstance(reply, Exception)]
        if any(isinstance(reply, Exception) for reply in replies[: len(records)]):
            # A command failed (a stream key of the wrong type, say) and Redis applied the
            # rest: the statistics and the new offset. Both are taken back, in one
            # transaction, before anything else is sent: else the next resync would skip
            # records that are not in the stream, and the retry would count them twice.
            self._undo = (counts.negated(), offset)
            await self._take_back(self._undo)
            raise failed[0]
        if failed:  # only the statistics (a key of the wrong type): the records are in
            log.warning("live statistics not counted for %d records: %s", len(records), failed[0])
        await self._index(counts.transaction_ids, replies[: len(records)])

    async def _take_back(self, undo: tuple[stats.Tally, Offset | None]) -> None:
        counts, offset = undo
        async with self._redis.pipeline(transaction=True) as pipe:
            stats.write_commands(pipe, self._stream, counts, self._window_seconds)
            if offset is not None:
                pipe.set(offset.key, offset.start, ex=OFFSET_TTL_SECONDS)
            await pipe.execute(raise_on_error=False)
        self._undo = None

    async def _index(self, transaction_ids: list[str | None], entry_ids: list[str]) -> None:
        """A lost index entry costs only the keyed lookup of that record (it is still in the
        stream, in `/logs` and in the indices): counted as `unindexed`, never retried."""
        ttl = self._window_seconds + stats.KEY_GRACE_SECONDS
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for transaction_id, entry_id in zip(transaction_ids, entry_ids, strict=True):
                    if transaction_id is not None:
                        pipe.set(transaction_key(self._stream, transaction_id), entry_id, ex=ttl)
                await pipe.execute()
        except redis.RedisError as exc:
            self._counts.unindexed += len(entry_ids)
            log.warning("transaction index of %d records not written: %s", len(entry_ids), exc)

    def _shipped(self, count: int) -> None:
        counts = self._counts
        counts.shipped += count
        if not counts.redis_available:
            log.info("Redis reachable again: shipping the records that waited")
            counts.redis_available = True
        self._backoff = FIRST_BACKOFF_SECONDS
