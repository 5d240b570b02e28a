"""The Elasticsearch sink: `_bulk` through the official client, every answer read by status.

A bulk request can fail as a whole or item by item, and the two mean different things:
- whole request 401/403: the cluster refuses our credentials or privileges. Nothing is wrong
  with the documents: retry them all (the pipeline backs off and reports "sink refusing").
- whole request 413 (too large) or 400 (a body the cluster cannot parse): split the request in
  halves until the one document at fault is alone; only that one is rejected.
- whole request 429, 5xx, timeouts, connection errors: retry them all later.
- item 2xx: confirmed. Item 400 (a mapping or parsing error): rejected, it goes to the dead
  letters. Any other item status (429, 5xx, a 403 cluster block...): retried later.

Items are matched to actions by position: the bulk API answers in request order, and an item
names the backing index (a rollover alias or a data stream writes elsewhere than it was asked).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any, cast

from elasticsearch import ApiError, Elasticsearch, TransportError

from logs_pipeline.sinks import Action, Rejected, WriteResult, bulk_lines

log = logging.getLogger(__name__)

REJECTED_ITEM_STATUSES = {400}
GENERATION = re.compile(r"-\d{6}$")
MAX_CHUNK_BYTES = 10 * 1024 * 1024


def connect(
    url: str,
    username: str | None = None,
    password: str | None = None,
    api_key: str | None = None,
    ca_certs: Path | None = None,
) -> Elasticsearch:
    options: dict[str, Any] = {"request_timeout": 30, "max_retries": 1, "retry_on_timeout": True}
    if api_key:
        options["api_key"] = api_key
    elif username:
        options["basic_auth"] = (username, password or "")
    if ca_certs:
        options["ca_certs"] = str(ca_certs)
    return Elasticsearch(url, **options)


def describe(exc: ApiError) -> str:
    """`403 security_exception: action [indices:data/write/bulk] is unauthorized ...`"""
    body = exc.body
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        detail = f"{error.get('type', 'error')}: {error.get('reason', '')}"
    else:
        detail = str(error or body or exc.message)
    return f"{exc.meta.status} {detail}"[:500]


def item_reason(info: dict[str, Any]) -> tuple[str, str]:
    error = info.get("error")
    if isinstance(error, dict):
        return str(error.get("type", "rejected")), json.dumps(error)[:10_000]
    return "rejected", str(error)[:10_000]


class ElasticsearchSink:
    name = "elasticsearch"

    def __init__(
        self,
        client: Elasticsearch,
        chunk_size: int = 500,
        max_chunk_bytes: int = MAX_CHUNK_BYTES,
    ) -> None:
        self.client = client
        self.chunk_size = chunk_size
        self.max_chunk_bytes = max_chunk_bytes

    def _chunks(self, actions: list[Action]) -> list[list[tuple[Action, bytes]]]:
        chunks: list[list[tuple[Action, bytes]]] = [[]]
        size = 0
        for action in actions:
            lines = bulk_lines(action)
            full = len(chunks[-1]) >= self.chunk_size or size + len(lines) > self.max_chunk_bytes
            if chunks[-1] and full:
                chunks.append([])
                size = 0
            chunks[-1].append((action, lines))
            size += len(lines)
        return [chunk for chunk in chunks if chunk]

    def write(self, actions: list[Action]) -> WriteResult:
        result = WriteResult()
        chunks = self._chunks(actions)
        for n, chunk in enumerate(chunks):
            if not self._send(chunk, result):
                # The cluster is down, busy or refusing: the rest waits too.
                for later in chunks[n + 1 :]:
                    result.retry += [action for action, _ in later]
                break
        return result

    def _send(self, chunk: list[tuple[Action, bytes]], result: WriteResult) -> bool:
        """One bulk request; False if the cluster as a whole did not take it."""
        body = b"".join(lines for _, lines in chunk)
        try:
            # Only through the aliases `setup` made: a write before it must not auto-create a
            # plain index of the alias's name (it would block the alias for good).
            # NDJSON already serialized: the client sends bytes as they are (typed for dicts).
            response = self.client.bulk(operations=cast(Any, body), require_alias=True)
        except ApiError as exc:
            status = exc.meta.status
            if status in (400, 413):
                return self._bisect(chunk, result, status, describe(exc))
            actions = [action for action, _ in chunk]
            result.postpone(actions, describe(exc), refusing=status in (401, 403))
            return False
        except TransportError as exc:
            result.postpone([action for action, _ in chunk], f"unreachable: {exc}"[:500])
            return False
        items = response.body.get("items", [])
        if len(items) != len(chunk):
            result.postpone([a for a, _ in chunk], f"{len(items)} items for {len(chunk)} actions")
            return False
        if not response.body.get("errors"):
            for action, _ in chunk:
                result.confirmed[action["_index"]] += 1
            return True
        for (action, _), item in zip(chunk, items, strict=True):
            info = next(iter(item.values()))
            status = int(info.get("status", 0))
            if 200 <= status < 300:
                result.confirmed[action["_index"]] += 1
            elif status in REJECTED_ITEM_STATUSES:
                result.rejected.append(Rejected(action, *item_reason(info)))
            else:
                reason = item_reason(info)[0]
                result.postpone([action], f"{status} {reason}", refusing=status in (401, 403))
        return True

    def _bisect(
        self, chunk: list[tuple[Action, bytes]], result: WriteResult, status: int, problem: str
    ) -> bool:
        if len(chunk) == 1:
            reason = "document_too_large" if status == 413 else "bad_request"
            result.rejected.append(Rejected(chunk[0][0], reason, problem))
            return True
        if status == 413:
            # Smaller requests from now on, so the next batches do not meet the limit again.
            half = max(64 * 1024, sum(len(lines) for _, lines in chunk) // 2)
            self.max_chunk_bytes = min(self.max_chunk_bytes, half)
            log.warning("%s: requests now up to %d bytes", problem, self.max_chunk_bytes)
        middle = len(chunk) // 2
        if not self._send(chunk[:middle], result):
            result.retry += [action for action, _ in chunk[middle:]]
            return False
        return self._send(chunk[middle:], result)

    def counts(self) -> dict[str, int]:
        """Documents per alias (its generations `-000001`, `-000002`... added up)."""
        stats = cast(
            list[dict[str, Any]],
            self.client.cat.indices(format="json", h="index,docs.count").body,
        )
        counts: Counter[str] = Counter()
        for row in stats:
            counts[GENERATION.sub("", row["index"])] += int(row["docs.count"] or 0)
        return dict(counts)

    def install_templates(self, templates: dict[str, dict[str, Any]]) -> None:
        for name, body in templates.items():
            self.client.indices.put_index_template(name=name, **body)
            log.info("index template %s installed", name)
