"""Times given by people (query parameters, CLI options): ISO 8601, UTC unless they say
otherwise."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BeforeValidator


def utc(moment: dt.datetime) -> dt.datetime:
    """A time without a zone is taken as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


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


def _iso_moment(value: object) -> object:
    """ISO 8601 text only: pydantic alone would also take a number as a Unix time (`0.5`)."""
    return parse_moment(value) if isinstance(value, str) else value


# A query parameter's time: ISO 8601 text, UTC unless it says otherwise.
Moment = Annotated[dt.datetime | None, BeforeValidator(_iso_moment)]
