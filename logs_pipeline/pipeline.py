"""collect -> parse -> filter/index -> write -> acknowledge -> trim.

- An entry is acknowledged only after the sink confirmed every document made from it, or the
  dead letter of each document it can never take. What the sink cannot take now (down, busy,
  refusing our credentials) is sent again with exponential backoff, and nothing waiting on it
  is acknowledged meanwhile. A dead letter the sink refuses leaves its entry unacknowledged.
- Entries that can never become records (malformed, unknown schema major, a failure while
  indexing, or delivered `PIPELINE_MAX_DELIVERIES` times without being acknowledged) become
  dead-letter documents with their reason and the original entry.
- While the sink cannot write, the reason is logged once per change of state and kept in Redis
  (`keys.sink_problem_key`) for `status` and `/logs/stats`: "sink refusing: 403 ...".
- The stream is trimmed below the oldest entry that is unacknowledged or inside the live window:
  `XTRIM MINID` never touches an entry that is pending, undelivered or recent.
- `stop()` (SIGTERM/SIGINT) lets the current batch finish, or abandons it unacknowledged while
  the sink is failing; abandoned entries stay pending and are claimed later.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import redis

from inferlog.telemetry.keys import sink_problem_key
from inferlog.telemetry.stream_group import entry_id, group_info
from logs_pipeline.collector import Collector, Entry, UnusableEntryError, parse
from logs_pipeline.indexer import Indexer, IndexNames
from logs_pipeline.sinks import Action, Sink, WriteResult, source_json

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 30.0
# The dead letter of a document refused as too large keeps this much of it: it must fit where
# the document did not. Every other dead letter keeps its original whole.
TOO_LARGE_ORIGINAL_CHARS = 16_000
PROBLEM_TTL_SECONDS = 120  # a stale problem (its pipeline died) disappears by itself


@dataclass
class PipelineCounters:
    entries: int = 0
    acknowledged: int = 0
    documents: Counter[str] = field(default_factory=Counter)  # confirmed by the sink
    dead_letters: int = 0  # confirmed by the sink
    refused_dead_letters: int = 0
    retries: int = 0
    abandoned_batches: int = 0
    trimmed_while_pending: int = 0  # pending entries trimmed before this pipeline indexed them


@contextlib.contextmanager
def _cycle_collection_paused() -> Iterator[None]:
    """Building a batch's documents makes tens of thousands of objects, none in a cycle, that
    all live until the batch is written: the cyclic garbage collector would scan them again
    and again as they age, a fifth of the pipeline's time. Paused while they are built (not
    while the sink is retried: a long outage's exceptions are cycles to collect)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _original(entry: Entry) -> str:
    return json.dumps(entry.fields)


class Pipeline:
    def __init__(
        self,
        collector: Collector,
        indexer: Indexer,
        sink: Sink,
        window_seconds: int,
        claim_every_seconds: float = 30.0,
        max_deliveries: int = 10,
    ) -> None:
        self.collector = collector
        self.indexer = indexer
        self.sink = sink
        self.names: IndexNames = indexer.names
        self.window_seconds = window_seconds
        self.claim_every = claim_every_seconds
        self.max_deliveries = max_deliveries
        self.counters = PipelineCounters()
        self.problem: str | None = None
        self._stopping = threading.Event()
        self._next_claim = 0.0
        self._unacknowledged: list[str] = []  # done, but XACK did not reach Redis yet

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- one batch ----------------------------------------------------------------------------

    def _dead_letter(
        self, entry_id: str, reason: str, error: str, original: str, refused: Action | None = None
    ) -> Action:
        """A dead letter per unusable entry, or per refused document (`refused`)."""
        index = refused["_index"] if refused else None
        truncated = reason == "document_too_large" and len(original) > TOO_LARGE_ORIGINAL_CHARS
        return {
            "_index": self.names.dead_letters,
            "_id": f"{entry_id}/{index}/{refused['_id']}" if refused else entry_id,
            "_source": {
                "@timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
                "stream_id": entry_id,
                "index": index,
                "reason": reason,
                "error": error[:10_000],
                "original": original[:TOO_LARGE_ORIGINAL_CHARS] if truncated else original,
                "original_truncated": truncated,
            },
        }

    def _documents(self, entry: Entry) -> list[Action]:
        if entry.deliveries > self.max_deliveries:
            detail = f"delivered {entry.deliveries} times, never acknowledged"
            return [self._dead_letter(entry.id, "delivery_limit", detail, _original(entry))]
        try:
            return self.indexer.documents(*parse(entry))
        except UnusableEntryError as exc:
            return [self._dead_letter(entry.id, exc.reason, exc.detail, _original(entry))]
        except Exception as exc:  # one entry's defect must not stop the pipeline
            log.exception("entry %s could not be indexed: dead-lettered", entry.id)
            error = f"{type(exc).__name__}: {exc}"
            return [self._dead_letter(entry.id, "indexing_failed", error, _original(entry))]

    def _report(self, problem: str | None) -> None:
        """Log a change of the sink's state once, and keep the current problem in Redis."""
        if problem != self.problem:
            if problem is None:
                log.warning("sink writes again (was: %s)", self.problem)
            elif self.problem is None or problem.split(":")[0] != self.problem.split(":")[0]:
                log.error("%s; retrying with backoff", problem)
            self.problem = problem
        collector = self.collector
        key = sink_problem_key(collector.stream, collector.group)
        try:
            if problem is None:
                collector.client.delete(key)
            else:
                collector.client.set(key, problem, ex=PROBLEM_TTL_SECONDS)
        except redis.RedisError:
            log.debug("could not record the sink's state in Redis", exc_info=True)

    def _write(self, actions: list[Action]) -> WriteResult | None:
        """Write until the sink confirmed or rejected every action; None if stopped first."""
        total = WriteResult()
        backoff = 0.5
        while actions:
            result = self.sink.write(actions)
            self.counters.documents.update(result.confirmed)
            total.confirmed.update(result.confirmed)
            total.rejected += result.rejected
            if not result.retry:
                break
            self.counters.retries += 1
            kind = "sink refusing" if result.refusing else "sink failing"
            self._report(f"{kind}: {result.problem}")
            if self._stopping.wait(backoff):
                return None
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            actions = result.retry
        if self.problem is not None:
            self._report(None)
        return total

    def process(self, entries: list[Entry]) -> bool:
        """Index a batch and acknowledge it; False if abandoned (left pending)."""
        if not entries:
            return True
        with _cycle_collection_paused():
            made = [(entry, self._documents(entry)) for entry in entries]
        written = self._write([action for _, documents in made for action in documents])
        if written is None:
            self.counters.abandoned_batches += 1
            return False
        failed: set[str] = set()
        if written.rejected:
            log.error("%d documents refused by the sink: dead-lettered", len(written.rejected))
            # action (by identity) -> the entry it was made from
            owner = {id(action): entry for entry, documents in made for action in documents}
            letters = []
            for r in written.rejected:
                entry = owner[id(r.action)]
                letter = self._dead_letter(
                    entry.id,
                    r.reason,
                    r.error,
                    source_json(r.action).decode(),
                    refused=r.action,
                )
                owner[id(letter)] = entry
                letters.append(letter)
            confirmed = self._write(letters)
            if confirmed is None:
                self.counters.abandoned_batches += 1
                return False
            for r in confirmed.rejected:  # nowhere left to put it: stays pending
                failed.add(owner[id(r.action)].id)
                log.error("dead letter refused, entry left pending: %s", r.error[:500])
            self.counters.refused_dead_letters += len(confirmed.rejected)
            written.confirmed.update(confirmed.confirmed)
        self.counters.dead_letters += written.confirmed[self.names.dead_letters]
        done = [e.id for e in entries if e.id not in failed]
        self._unacknowledged += done
        self.counters.entries += len(done)
        self._acknowledge()
        return True

    def _acknowledge(self) -> None:
        """XACK what is done; if Redis is away, the ids wait for the next call."""
        if self._unacknowledged:
            self.collector.ack(self._unacknowledged)
            self.counters.acknowledged += len(self._unacknowledged)
            self._unacknowledged = []

    # -- housekeeping -------------------------------------------------------------------------

    def trim(self) -> int:
        """Drop acknowledged entries older than the live window; returns how many went."""
        client, stream, group = self.collector.client, self.collector.stream, self.collector.group
        window_start = int((time.time() - self.window_seconds) * 1000)
        bounds = [f"{window_start}-0"]
        summary = client.xpending(stream, group)
        if summary["pending"]:
            bounds.append(summary["min"])
        info = group_info(client, stream, group)
        if info is None:  # no group yet: nothing was ever acknowledged
            return 0
        ms, seq = entry_id(info["last-delivered-id"])
        bounds.append(f"{ms}-{seq + 1}")  # everything after it is undelivered
        minid = min(bounds, key=entry_id)
        return int(client.xtrim(stream, minid=minid, approximate=False))

    def _claim_due(self) -> list[Entry]:
        if time.monotonic() < self._next_claim:
            return []
        self._next_claim = time.monotonic() + self.claim_every
        claimed = self.collector.claim()
        self.counters.trimmed_while_pending = self.collector.trimmed_while_pending
        if len(claimed) == 1 and claimed[0].deliveries > 2:
            self._next_claim = 0.0  # isolating a suspect entry: the next one at once
        return claimed

    # -- loops --------------------------------------------------------------------------------

    def step(self, block: bool = True) -> int:
        """Claimed entries first, then new ones: one batch each. Returns entries handled."""
        self._acknowledge()
        handled = 0
        for entries in (self._claim_due(), None):
            batch = entries if entries is not None else self.collector.read(block=block)
            if batch and self.process(batch):
                handled += len(batch)
        return handled

    def run(self, progress_every: float) -> None:
        next_report, last_entries, last_time = (
            time.monotonic() + progress_every,
            0,
            time.monotonic(),
        )
        backoff, group_ready = 0.0, False
        while not self.stopping:
            try:
                if not group_ready:
                    self.collector.ensure_group()
                    group_ready = True
                self.step()
                if backoff:
                    log.info("Redis answers again")
                    backoff = 0.0
                if time.monotonic() >= next_report:
                    now = time.monotonic()
                    self.trim()
                    if self.counters.entries != last_entries:  # idle: nothing new to say
                        log.info(
                            "%.1f records/s, lag %s, %d dead letters, %s",
                            (self.counters.entries - last_entries) / (now - last_time),
                            self.lag(),
                            self.counters.dead_letters,
                            dict(self.counters.documents),
                        )
                    last_entries, last_time = self.counters.entries, now
                    next_report = now + progress_every
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # A reset or a silent Redis: wait, longer each time, and say so once.
                if not backoff:
                    log.error("Redis unreachable (%s): retrying with backoff", exc)
                backoff = min(max(backoff * 2, 0.5), MAX_BACKOFF_SECONDS)
                self._stopping.wait(backoff)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # Redis restarted without its data: the group goes with the stream.
                log.warning("consumer group gone (%s): creating it again", exc)
                group_ready = False
        self.leave_group()
        log.info("stopped: %s", self.counters)

    def leave_group(self) -> None:
        """A clean stop leaves the group, so `status` lists only running consumers; one that
        still holds entries stays until another consumer claims them."""
        try:
            held = self.collector.leave()
        except redis.RedisError as exc:
            log.warning("could not leave the consumer group (%s): it stays listed", exc)
            return
        if held:
            log.warning(
                "%d entries not acknowledged: this consumer stays in the group until another "
                "claims them",
                held,
            )

    def lag(self) -> int | None:
        collector = self.collector
        info = group_info(collector.client, collector.stream, collector.group)
        return None if info is None else info.get("lag")
