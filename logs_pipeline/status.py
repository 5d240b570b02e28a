"""The state of the records stream and its consumer group, for `status` and the pipeline.

Consumers idle longer than the claim threshold are listed apart as stale: a pipeline that
died (a clean stop leaves the group). Bounded Redis calls only (`XLEN`, `XINFO STREAM`,
`XINFO GROUPS`, `XINFO CONSUMERS`, `XPENDING` summary, `GET` of the sink's problem, `INFO
memory`): the compose healthcheck calls `status` every 30 s, and it must answer as fast with a
million entries behind as with none.

Entries trimmed before the group read them (the stream's `STREAM_MAX_LEN` cap at work) leave a
gap between the group's last-delivered id and the stream's first entry. While there is one,
every entry still in the stream is undelivered, so the gap holds: entries ever added, minus
entries the group read, minus the stream's length. (Redis's own `lag` counts a trimmed entry
as still waiting.) Once the group reads past the gap, Redis counts those entries as read: the
pipeline's collector reports them when it meets them.
"""

from __future__ import annotations

from typing import Any

import redis

from inferlog.telemetry.keys import sink_problem_key
from inferlog.telemetry.redis_memory import memory_use
from inferlog.telemetry.stream_group import entry_id, group_info, split_consumers


def trimmed_before_delivery(stream_info: dict[str, Any], group: dict[str, Any]) -> int | None:
    first = stream_info.get("first-entry")
    last_delivered = group["last-delivered-id"]
    if not first or entry_id(first[0]) <= entry_id(last_delivered):
        return 0  # no gap: nothing undelivered was trimmed
    read = group.get("entries-read")
    if read is None:
        if last_delivered != "0-0":
            return None  # Redis cannot tell (the group was moved with XGROUP SETID)
        read = 0
    return max(0, int(stream_info["entries-added"]) - read - int(stream_info["length"]))


def redis_memory(client: redis.Redis) -> dict[str, Any] | None:
    """Asked last: the embedded Redis-compatible server has no INFO, and over TCP it closes
    the connection on it."""
    try:
        return memory_use(client.info("memory"))
    except (redis.ResponseError, redis.ConnectionError):
        return None


def stream_status(
    client: redis.Redis, stream: str, group: str, stale_after_ms: int
) -> dict[str, Any]:
    report = _stream_and_group(client, stream, group, stale_after_ms)
    report["redis_memory"] = redis_memory(client)
    return report


def _consumer(c: dict[str, Any]) -> dict[str, Any]:
    return {"name": c["name"], "pending": c["pending"], "idle_ms": c["idle"]}


def _stream_and_group(
    client: redis.Redis, stream: str, group: str, stale_after_ms: int
) -> dict[str, Any]:
    length = client.xlen(stream)
    report: dict[str, Any] = {
        "stream": stream,
        "group": group,
        "length": length,
        "sink_problem": client.get(sink_problem_key(stream, group)),
    }
    info = group_info(client, stream, group)
    if info is None:
        report.update(
            pending=0, lag=length, consumers=[], stale_consumers=[], trimmed_before_delivery=0
        )
        return report
    running, stale = split_consumers(client.xinfo_consumers(stream, group), stale_after_ms)
    report.update(
        pending=client.xpending(stream, group)["pending"],
        lag=info.get("lag"),
        last_delivered_id=info["last-delivered-id"],
        consumers=[_consumer(c) for c in running],
        stale_consumers=[_consumer(c) for c in stale],
        trimmed_before_delivery=trimmed_before_delivery(client.xinfo_stream(stream), info),
    )
    return report
