"""collect -> parse -> filter/index -> write -> acknowledge -> trim.

- An entry is acknowledged only after the sink confirmed every document made from it (or
  dead-lettered what can never be written). A transient sink failure is retried with
  exponential backoff, and nothing of the batch is acknowledged meanwhile.
- Entries that can never become records (malformed, unknown schema major) become dead-letter
  documents with their reason and the original entry, then are acknowledged.
- The stream is trimmed below the oldest entry that is unacknowledged or inside the live window:
  `XTRIM MINID` never touches an entry that is pending, undelivered or recent.
- `stop()` (SIGTERM/SIGINT) lets the current batch finish, or abandons it unacknowledged while
  the sink is failing; abandoned entries stay pending and are claimed later.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import redis

from inferlog.telemetry.stream_group import entry_id, group_info
from logs_pipeline.collector import Collector, Entry, UnusableEntryError, parse
from logs_pipeline.indexer import Action, Indexer, IndexNames
from logs_pipeline.sinks import Rejected, RetryableSinkError, Sink

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 30.0


@dataclass
class PipelineCounters:
    entries: int = 0
    acknowledged: int = 0
    documents: Counter[str] = field(default_factory=Counter)
    dead_letters: int = 0
    retries: int = 0
    abandoned_batches: int = 0


class Pipeline:
    def __init__(
        self,
        collector: Collector,
        indexer: Indexer,
        sink: Sink,
        window_seconds: int,
        claim_every_seconds: float = 30.0,
    ) -> None:
        self.collector = collector
        self.indexer = indexer
        self.sink = sink
        self.names: IndexNames = indexer.names
        self.window_seconds = window_seconds
        self.claim_every = claim_every_seconds
        self.counters = PipelineCounters()
        self._stopping = threading.Event()
        self._next_claim = 0.0

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
        return {
            "_index": self.names.dead_letters,
            "_id": f"{entry_id}/{index}/{refused['_id']}" if refused else entry_id,
            "_source": {
                "@timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
                "stream_id": entry_id,
                "index": index,
                "reason": reason,
                "error": error[:10_000],
                "original": original,
            },
        }

    def _write(self, actions: list[Action]) -> list[Rejected] | None:
        """Write until the sink confirms; None if stopping while the sink keeps failing."""
        backoff = 0.5
        while True:
            try:
                return self.sink.write(actions)
            except RetryableSinkError as exc:
                self.counters.retries += 1
                log.warning("sink: %s; retrying in %.1f s", exc, backoff)
                if self._stopping.wait(backoff):
                    return None
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def process(self, entries: list[Entry]) -> bool:
        """Index a batch and acknowledge it; False if abandoned (left pending)."""
        if not entries:
            return True
        actions: list[Action] = []
        source_of: dict[tuple[str, str], Entry] = {}
        for entry in entries:
            try:
                documents = self.indexer.documents(parse(entry))
            except UnusableEntryError as exc:
                documents = [
                    self._dead_letter(entry.id, exc.reason, exc.detail, json.dumps(entry.fields))
                ]
            for action in documents:
                source_of[(action["_index"], action["_id"])] = entry
            actions += documents
        rejected = self._write(actions)
        if rejected is None:
            self.counters.abandoned_batches += 1
            return False
        if rejected:
            letters = [
                self._dead_letter(
                    source_of[(r.action["_index"], r.action["_id"])].id,
                    r.reason,
                    r.error,
                    json.dumps(r.action["_source"]),
                    refused=r.action,
                )
                for r in rejected
            ]
            log.error("%d documents refused by the sink: dead-lettered", len(rejected))
            if self._write(letters) is None:
                self.counters.abandoned_batches += 1
                return False
            actions += letters
        refused = {(r.action["_index"], r.action["_id"]) for r in rejected}
        for action in actions:
            if (action["_index"], action["_id"]) not in refused:
                self.counters.documents[action["_index"]] += 1
        self.counters.dead_letters += sum(
            1 for a in actions if a["_index"] == self.names.dead_letters
        )
        self.collector.ack([e.id for e in entries])
        self.counters.entries += len(entries)
        self.counters.acknowledged += len(entries)
        return True

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
        return self.collector.claim()

    # -- loops --------------------------------------------------------------------------------

    def step(self, block: bool = True) -> int:
        """Claimed entries first, then new ones: one batch each. Returns entries handled."""
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
                    rate = (self.counters.entries - last_entries) / (now - last_time)
                    self.trim()
                    log.info(
                        "%.1f records/s, lag %s, %d dead letters, %s",
                        rate,
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
        log.info("stopped: %s", self.counters)

    def lag(self) -> int | None:
        collector = self.collector
        info = group_info(collector.client, collector.stream, collector.group)
        return None if info is None else info.get("lag")
