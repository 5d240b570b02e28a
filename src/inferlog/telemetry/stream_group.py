"""The records stream's consumer group, as Redis reports it (`group_info`: for the
synchronous clients, the logs pipeline and the API's reader process)."""

from __future__ import annotations

from typing import Any

import redis

# Replies of XRANGE, XREVRANGE and XCLAIM from a client made with decode_responses=True (every
# client here): redis-py types them for either mode.
StreamEntries = list[tuple[str, dict[str, str]]]


def entry_id(text: str) -> tuple[int, int]:
    """A stream entry id (`<ms>-<seq>`) as a pair that orders as Redis orders ids."""
    ms, seq = text.split("-")
    return int(ms), int(seq)


def named_group(groups: list[dict[str, Any]], group: str) -> dict[str, Any] | None:
    """One group of an `XINFO GROUPS` reply; None when it is not there."""
    return next((g for g in groups if g["name"] == group), None)


def group_info(client: redis.Redis, stream: str, group: str) -> dict[str, Any] | None:
    """`XINFO GROUPS` of one group; None when the group (or the stream) does not exist."""
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:  # no such stream yet
        return None
    return named_group(groups, group)


def split_consumers(
    consumers: list[dict[str, Any]], stale_after_ms: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`XINFO CONSUMERS` split into running consumers and stale ones: idle longer than
    `stale_after_ms` (the pipeline's claim threshold). A stale consumer died, or is stuck that
    long (a pipeline retrying a sink that is down reads nothing meanwhile); a working one reads
    at least once per block time."""
    running = [c for c in consumers if c["idle"] <= stale_after_ms]
    stale = [c for c in consumers if c["idle"] > stale_after_ms]
    return running, stale
