"""Text a client sent, cut to a bound wherever it is repeated back (answers, records)."""

from __future__ import annotations


def shortened(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how many were left out."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"
