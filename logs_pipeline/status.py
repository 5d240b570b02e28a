"""The state of the records stream and its consumer group, for `status` and the pipeline.

Bounded Redis calls only (`XLEN`, `XINFO STREAM`, `XINFO GROUPS`, `XINFO CONSUMERS`, `XPENDING`
summary, one `GET`): the compose healthcheck calls `status` every 30 s, and it must answer as
fast with a million entries behind as with none.

Entries trimmed before the pipeline acknowledged them (the stream's `STREAM_MAX_LEN` cap at work)
are found by arithmetic: entries ever added, minus entries still in the stream, minus entries
removed after their acknowledgment, which the pipeline's trim and `DELETE /logs` count in
`{stream}:removed`. (Redis's own `lag` cannot tell: it counts a trimmed entry as still waiting.)
"""

from __future__ import annotations

from typing import Any

import redis

from inferlog.telemetry.keys import removed_key


def group_info(client: redis.Redis, stream: str, group: str) -> dict[str, Any] | None:
    """`XINFO GROUPS` of one group; None when the group (or the stream) does not exist."""
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:  # no such stream yet
        return None
    return next((g for g in groups if g["name"] == group), None)


def stream_status(client: redis.Redis, stream: str, group: str) -> dict[str, Any]:
    length = client.xlen(stream)
    report: dict[str, Any] = {"stream": stream, "group": group, "length": length}
    info = group_info(client, stream, group)
    if info is None:
        report.update(pending=0, lag=length, consumers=[], trimmed_before_delivery=0)
        return report
    consumers = client.xinfo_consumers(stream, group)
    added = client.xinfo_stream(stream)["entries-added"]
    removed = int(client.get(removed_key(stream)) or 0)
    report.update(
        pending=client.xpending(stream, group)["pending"],
        lag=info.get("lag"),
        last_delivered_id=info["last-delivered-id"],
        consumers=[
            {"name": c["name"], "pending": c["pending"], "idle_ms": c["idle"]} for c in consumers
        ],
        trimmed_before_delivery=max(0, added - length - removed),
    )
    return report
