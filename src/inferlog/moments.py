"""Times given by people (query parameters, CLI options): ISO 8601, UTC unless they say
otherwise."""

from __future__ import annotations

import datetime as dt


def utc(moment: dt.datetime) -> dt.datetime:
    """A time without a zone is taken as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def as_utc(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else utc(moment)


def parse_moment(text: str) -> dt.datetime:
    """`2026-11-25`, `2026-11-25T08:00` or `2026-11-25T08:00:00+01:00`; a readable ValueError
    for anything else."""
    try:
        return utc(dt.datetime.fromisoformat(text.strip()))
    except ValueError:
        raise ValueError(
            "expected an ISO 8601 date or time such as 2026-11-25 or 2026-11-25T08:00:00Z "
            f"(UTC unless a zone is given), got {text!r}"
        ) from None
