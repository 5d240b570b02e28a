"""The collector: one consumer of the `logs-pipeline` group on the records stream.

`XREADGROUP` in batches for new entries; `XAUTOCLAIM` for entries another consumer took and
never acknowledged (it died), once they have been idle `PIPELINE_CLAIM_IDLE_MS`. Entries claimed
but already trimmed from the stream are reported by Redis as deleted: they are counted, never
silently skipped. `parse` turns an entry into a validated record or says why it cannot be one.

Crash loops: an entry whose processing kills the consumer comes back, claimed, each time. Once
the idle entries include one delivered more than once, they are claimed one at a time, oldest
first, so only that entry's delivery count climbs; the pipeline dead-letters it at
`PIPELINE_MAX_DELIVERIES`, and the entries behind it go through normally.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

import redis
from pydantic import ValidationError

from inferlog.telemetry.record import RECORD_FIELD, SCHEMA_MAJOR, RequestRecord, schema_major

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    id: str
    fields: dict[str, str]
    deliveries: int = 1


class UnusableEntryError(ValueError):
    """An entry that can never become a record: it goes to the dead letters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse(entry: Entry) -> RequestRecord:
    raw = entry.fields.get(RECORD_FIELD)
    if raw is None:
        raise UnusableEntryError("malformed_entry", f"no {RECORD_FIELD!r} field")
    # The common case in one pass (pydantic parses and validates at once, twice as fast as
    # json.loads + model_validate); anything else takes the path below, which says why.
    try:
        record = RequestRecord.model_validate_json(raw)
    except ValidationError:
        pass
    else:
        if schema_major(record.schema_) == SCHEMA_MAJOR:
            return record
    try:
        document: Any = json.loads(raw)
    except ValueError as exc:
        raise UnusableEntryError("malformed_entry", f"not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise UnusableEntryError("malformed_entry", "not a JSON object")
    major = schema_major(document.get("schema"))
    if major != SCHEMA_MAJOR:
        raise UnusableEntryError("unknown_schema", f"schema {document.get('schema')!r}")
    try:
        return RequestRecord.model_validate(document)
    except ValidationError as exc:
        raise UnusableEntryError("invalid_record", str(exc)) from exc


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Collector:
    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        group: str,
        consumer: str,
        batch_size: int,
        block_ms: int,
        claim_idle_ms: int,
    ) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.trimmed_while_pending = 0

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            log.info("created consumer group %s on %s", self.group, self.stream)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, block: bool = True) -> list[Entry]:
        reply = self.client.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=self.batch_size,
            block=self.block_ms if block else None,
        )
        return [
            Entry(entry_id, fields) for _, entries in reply or [] for entry_id, fields in entries
        ]

    def claim(self) -> list[Entry]:
        """Take over entries left pending by consumers that stopped acknowledging."""
        idle = self.client.xpending_range(
            self.stream, self.group, "-", "+", self.batch_size, idle=self.claim_idle_ms
        )
        if not idle:
            return []
        if any(p["times_delivered"] > 1 for p in idle):
            return self._claim_one(idle[0]["message_id"], idle[0]["times_delivered"] + 1)
        claimed: list[Entry] = []
        start = "0-0"
        while len(claimed) < self.batch_size:
            next_start, entries, deleted = self.client.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=self.claim_idle_ms,
                start_id=start,
                count=self.batch_size - len(claimed),
            )
            claimed += [Entry(entry_id, fields, 2) for entry_id, fields in entries if fields]
            if deleted:
                # Trimmed before anyone indexed them: acknowledge (nothing left to index), count.
                self.client.xack(self.stream, self.group, *deleted)
                self.trimmed_while_pending += len(deleted)
                log.error("%d pending entries were trimmed before indexing", len(deleted))
            if next_start == "0-0":
                break
            start = next_start
        if claimed:
            log.info("claimed %d entries left pending by another consumer", len(claimed))
        return claimed

    def _claim_one(self, entry: str, deliveries: int) -> list[Entry]:
        claimed = self.client.xclaim(
            self.stream, self.group, self.consumer, self.claim_idle_ms, [entry]
        )
        if claimed:
            log.warning("claimed entry %s, delivery %d, alone", entry, deliveries)
        return [Entry(entry_id, fields, deliveries) for entry_id, fields in claimed if fields]

    def ack(self, ids: list[str]) -> None:
        if ids:
            self.client.xack(self.stream, self.group, *ids)
