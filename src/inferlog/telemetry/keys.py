"""The Redis keys next to the records stream, in one place (API, pipeline and tests use them)."""

from __future__ import annotations

import datetime as dt


def transaction_key(stream: str, transaction_id: str) -> str:
    """One record's stream entry id, kept for the live window (`GET /logs/{id}`)."""
    return f"{stream}:tx:{transaction_id}"


def stats_key(stream: str, minute: dt.datetime) -> str:
    """The live statistics' counters of one minute."""
    return f"{stream}:stats:{minute:%Y-%m-%dT%H:%M}"


def spool_offset_key(stream: str, segment: str) -> str:
    """How far one spool segment has been shipped."""
    return f"{stream}:spool:{segment}"


def sink_problem_key(stream: str, group: str) -> str:
    """Why the group's pipeline cannot write now ("sink refusing: ..."); absent when it can."""
    return f"{stream}:sink:{group}"
