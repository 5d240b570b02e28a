"""The state of the records stream and its consumer group, for `status` and the progress log.

Entries trimmed before the group ever read them are found by arithmetic: the group's lag
(entries added to the stream but not yet read by the group) minus the undelivered entries
still in the stream.
"""

from __future__ import annotations

from typing import Any

import redis


def stream_status(client: redis.Redis, stream: str, group: str) -> dict[str, Any]:
    report: dict[str, Any] = {"stream": stream, "group": group, "length": client.xlen(stream)}
    try:
        groups = {g["name"]: g for g in client.xinfo_groups(stream)}
    except redis.ResponseError:
        groups = {}
    info = groups.get(group)
    if info is None:
        report.update(pending=0, lag=report["length"], consumers=[], trimmed_before_delivery=0)
        return report
    consumers = client.xinfo_consumers(stream, group)
    lag = info.get("lag")
    undelivered = len(client.xrange(stream, min=f"({info['last-delivered-id']}", max="+"))
    report.update(
        pending=info["pending"],
        lag=lag,
        last_delivered_id=info["last-delivered-id"],
        consumers=[
            {"name": c["name"], "pending": c["pending"], "idle_ms": c["idle"]} for c in consumers
        ],
        trimmed_before_delivery=max(0, lag - undelivered) if lag is not None else None,
    )
    return report
