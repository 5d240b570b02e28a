"""The collector: one consumer of the `logs-pipeline` group on the records stream.

`XREADGROUP` in batches for new entries; `XPENDING` + `XCLAIM` for entries another consumer
took and never acknowledged (it died), once they have been idle `PIPELINE_CLAIM_IDLE_MS`.
Entries pending but already trimmed from the stream are counted, never silently skipped.
`parse` turns an entry into a validated record or says why it cannot be one.

Crash loops: an entry whose processing kills the consumer comes back, claimed, each time. Entries
delivered more than once are claimed one at a time, oldest first, so only the poison entry's
delivery count climbs; the pipeline dead-letters it once delivered more than
`PIPELINE_MAX_DELIVERIES` times, and the entries behind it go through normally. (Every delivery
counts, also one abandoned by a pipeline stopped while the sink was down.)
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import redis
from pydantic import ValidationError

from inferlog.telemetry.record import (
    RECORD_FIELD,
    SCHEMA,
    SCHEMA_MAJOR,
    RequestRecord,
    schema_major,
)
from inferlog.telemetry.stream_group import StreamEntries, entry_id

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


# Line breaks (JSON whitespace here) would split an NDJSON line; NaN and Infinity, which pydantic
# parses, are not JSON for Elasticsearch. Also inside a string they only send the record the
# slow way, which writes it again (NaN as null).
_NOT_AS_IT_IS = ("\n", "\r", "NaN", "Infinity")


class Parsed(NamedTuple):
    record: RequestRecord
    text: str  # the record as one line of JSON


def parse(entry: Entry) -> Parsed:
    raw = entry.fields.get(RECORD_FIELD)
    if raw is None:
        raise UnusableEntryError("malformed_entry", f"no {RECORD_FIELD!r} field")
    # The common case in one pass (pydantic parses and validates at once, twice as fast as
    # json.loads + model_validate). Strict, by alias: every value has its schema type and every
    # key its name in the record as it is, so the entry's own text is the record, with no
    # need to write it again, unless it holds what Elasticsearch cannot parse.
    try:
        record = RequestRecord.model_validate_json(raw, strict=True, by_name=False)
    except ValidationError:
        pass
    else:
        # A record without its schema is no record (as below), though the model has a default.
        ours = '"schema":' in raw and (
            record.schema_ == SCHEMA or schema_major(record.schema_) == SCHEMA_MAJOR
        )
        if ours and not any(part in raw for part in _NOT_AS_IT_IS):
            return Parsed(record, raw)
    # Anything else takes this path, which says why it is not a record, or writes it again.
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
        record = RequestRecord.model_validate(document)
    except ValidationError as exc:
        raise UnusableEntryError("invalid_record", str(exc)) from exc
    return Parsed(record, record.to_json())


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
        self._cursor = "-"  # where the next claim starts looking (XPENDING range)

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            log.info("created consumer group %s on %s", self.group, self.stream)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, block: bool = True) -> list[Entry]:
        reply = cast(
            list[tuple[str, StreamEntries]] | None,
            self.client.xreadgroup(
                self.group,
                self.consumer,
                {self.stream: ">"},
                count=self.batch_size,
                block=self.block_ms if block else None,
            ),
        )
        return [
            Entry(entry_id, fields) for _, entries in reply or [] for entry_id, fields in entries
        ]

    def claim(self) -> list[Entry]:
        """Take over entries left pending by consumers that stopped acknowledging."""
        idle = cast(
            list[dict[str, Any]],
            self.client.xpending_range(
                self.stream, self.group, self._cursor, "+", self.batch_size, idle=self.claim_idle_ms
            ),
        )
        suspects = [p for p in idle if p["times_delivered"] > 1]
        # One suspect at a time, and the next claim starts after it: an entry that stays
        # pending for good (its dead letter refused) does not hold up the others.
        chosen = suspects[:1] or idle
        self._cursor = f"({suspects[0]['message_id']}" if suspects else "-"
        if not chosen:
            return []
        ids: list[Any] = [p["message_id"] for p in chosen]  # str: redis-py's list is invariant
        claimed = cast(
            StreamEntries,
            self.client.xclaim(self.stream, self.group, self.consumer, self.claim_idle_ms, ids),
        )
        self._count_trimmed([i for i in ids if i not in {entry_id for entry_id, _ in claimed}])
        deliveries = {p["message_id"]: p["times_delivered"] + 1 for p in chosen}
        entries = [Entry(i, fields, deliveries[i]) for i, fields in claimed if fields]
        if suspects and entries:
            log.warning("claimed entry %s alone, delivery %d", ids[0], entries[0].deliveries)
        elif entries:
            log.info("claimed %d entries left pending by another consumer", len(entries))
        return entries

    def _count_trimmed(self, missing: list[str]) -> None:
        """Pending ids XCLAIM did not return: trimmed from the stream before anyone indexed
        them (Redis drops them from the pending list), or claimed by another consumer."""
        if not missing:
            return
        first = cast(StreamEntries, self.client.xrange(self.stream, count=1))
        oldest = entry_id(first[0][0]) if first else None
        trimmed = [i for i in missing if oldest is None or entry_id(i) < oldest]
        if trimmed:
            self.trimmed_while_pending += len(trimmed)
            log.error("%d pending entries were trimmed before indexing", len(trimmed))

    def ack(self, ids: list[str]) -> None:
        if ids:
            self.client.xack(self.stream, self.group, *ids)

    def leave(self) -> int:
        """Leave the group if this consumer holds no pending entry (deleting a consumer drops
        its pending entries, so one that holds some stays for another to claim). Returns the
        number of entries it still holds."""
        summary = self.client.xpending(self.stream, self.group)
        held = next(
            (int(c["pending"]) for c in summary["consumers"] if c["name"] == self.consumer), 0
        )
        if held == 0:
            self.client.xgroup_delconsumer(self.stream, self.group, self.consumer)
        return held
