"""The state of the records stream and its consumer group, for `status` and the pipeline.

Entries trimmed before the group ever read them are found by arithmetic: entries ever added to
the stream, minus entries the group has read, minus the undelivered entries still there.
(Redis's own `lag` cannot tell: `XTRIM` does not mark what it removed.)
"""

from __future__ import annotations

from typing import Any

import redis


def group_info(client: redis.Redis, stream: str, group: str) -> dict[str, Any] | None:
    """`XINFO GROUPS` of one group; None when the group (or the stream) does not exist."""
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:  # no such stream yet
        return None
    return next((g for g in groups if g["name"] == group), None)


def stream_status(client: redis.Redis, stream: str, group: str) -> dict[str, Any]:
    report: dict[str, Any] = {"stream": stream, "group": group, "length": client.xlen(stream)}
    info = group_info(client, stream, group)
    if info is None:
        report.update(pending=0, lag=report["length"], consumers=[], trimmed_before_delivery=0)
        return report
    consumers = client.xinfo_consumers(stream, group)
    lag = info.get("lag")
    undelivered = len(client.xrange(stream, min=f"({info['last-delivered-id']}", max="+"))
    added = client.xinfo_stream(stream)["entries-added"]
    read = info.get("entries-read")
    if read is None and info["last-delivered-id"] == "0-0":
        read = 0  # a group that has never read anything
    trimmed = None if read is None else max(0, added - read - undelivered)
    report.update(
        pending=info["pending"],
        lag=lag,
        last_delivered_id=info["last-delivered-id"],
        consumers=[
            {"name": c["name"], "pending": c["pending"], "idle_ms": c["idle"]} for c in consumers
        ],
        trimmed_before_delivery=trimmed,
    )
    return report
