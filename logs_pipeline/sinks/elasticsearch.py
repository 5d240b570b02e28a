"""The Elasticsearch sink: the official client and its bulk helper.

Per-document outcomes decide: indexed; refused for good (a 4xx such as a mapping error: the
document goes to the dead letters); or transient (429, 5xx, connection trouble: the batch is
retried later and nothing is acknowledged meanwhile).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from elasticsearch import ApiError, Elasticsearch, TransportError, helpers

from logs_pipeline.sinks import Action, Rejected, RetryableSinkError

log = logging.getLogger(__name__)

TRANSIENT_STATUSES = {408, 429}


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


def _transient(status: object) -> bool:
    return not isinstance(status, int) or status in TRANSIENT_STATUSES or status >= 500


class ElasticsearchSink:
    name = "elasticsearch"

    def __init__(self, client: Elasticsearch, chunk_size: int = 500) -> None:
        self.client = client
        self.chunk_size = chunk_size

    def write(self, actions: list[Action]) -> list[Rejected]:
        if not actions:
            return []
        rejected: list[Rejected] = []
        transient = 0
        # The helper re-sends 429s and yields their outcome later: match results by key.
        by_key = {(a["_index"], a["_id"]): a for a in actions}
        try:
            results = helpers.streaming_bulk(
                self.client,
                actions,
                chunk_size=self.chunk_size,
                max_retries=2,  # the helper's own backoff, for 429s only
                initial_backoff=0.5,
                raise_on_error=False,
                raise_on_exception=False,
                yield_ok=True,
            )
            for ok, item in results:
                if ok:
                    continue
                info = next(iter(item.values()))
                status = info.get("status")
                action = by_key[(info.get("_index"), info.get("_id"))]
                if _transient(status):
                    transient += 1
                else:
                    error = info.get("error", {})
                    reason = (
                        error.get("type", "rejected") if isinstance(error, dict) else "rejected"
                    )
                    rejected.append(Rejected(action, str(reason), str(error)))
        except (TransportError, ApiError) as exc:
            raise RetryableSinkError(f"Elasticsearch unreachable: {exc}") from exc
        if transient:
            raise RetryableSinkError(f"{transient} documents refused for now (429 or 5xx)")
        return rejected

    def counts(self) -> dict[str, int]:
        stats = self.client.cat.indices(format="json", h="index,docs.count")
        return {row["index"]: int(row["docs.count"] or 0) for row in stats}

    def install_templates(self, templates: dict[str, dict[str, Any]]) -> None:
        for name, body in templates.items():
            self.client.indices.put_index_template(name=name, **body)
            log.info("index template %s installed", name)
