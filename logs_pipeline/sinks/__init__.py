"""Sinks: where documents go.

A sink takes a batch of bulk actions and says, for each one, what happened to it:
- confirmed: written (counted per index);
- rejected: can never be written as it is (a mapping error, a document too large): the
  pipeline dead-letters it with the reason;
- retry: not written now (the sink is down, overloaded, or refusing our credentials): the
  pipeline sends these again after a backoff, and acknowledges nothing that waits on them.

Writes are idempotent by `_id`, so sending an action again never doubles a count.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import orjson
from pydantic_core import to_json

# `_index`, `_id` and `_source`: a dict, or `RawJson`.
Action = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RawJson:
    """A `_source` already serialised, written as it is: the record as it arrived, for
    `ml-api-logs` (parsing it again and writing it back was a fifth of the pipeline's time).
    One line of JSON that Elasticsearch takes: no raw line break (NDJSON files and `_bulk`
    split on them), no `NaN`; `collector.parse` checks before it hands one out."""

    text: str


def source_json(action: Action) -> bytes:
    """The action's `_source` as compact UTF-8 JSON. orjson: 2.7 times fewer instructions than
    pydantic-core for these documents, which were a quarter of the pipeline's work."""
    source = action["_source"]
    if isinstance(source, RawJson):
        return source.text.encode()
    try:
        return orjson.dumps(source)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, which pydantic accepts
        return to_json(source, inf_nan_mode="null")


@lru_cache(maxsize=64)
def _header_start(index: str) -> bytes:
    return b'{"index":{"_index":%s,"_id":' % orjson.dumps(index)


def bulk_lines(action: Action) -> bytes:
    """An action as `_bulk` takes it: the header line `{"index":{"_index":..,"_id":..}}`, then
    the source line. The header's start is the same for every document of an index."""
    start, id_ = _header_start(action["_index"]), orjson.dumps(action["_id"])
    return b"%s%s}}\n%s\n" % (start, id_, source_json(action))


@dataclass(frozen=True)
class Rejected:
    action: Action
    reason: str
    error: str


@dataclass
class WriteResult:
    confirmed: Counter[str] = field(default_factory=Counter)
    rejected: list[Rejected] = field(default_factory=list)
    retry: list[Action] = field(default_factory=list)
    # Why `retry` is not empty, in one line; `refusing` when the sink refuses us as a whole
    # (401/403: credentials or privileges) rather than being down or busy.
    problem: str | None = None
    refusing: bool = False

    def postpone(self, actions: list[Action], problem: str, refusing: bool = False) -> None:
        self.retry += actions
        self.problem = problem
        self.refusing = self.refusing or refusing


class Sink(Protocol):
    name: str

    def write(self, actions: list[Action]) -> WriteResult: ...

    def counts(self) -> dict[str, int]: ...
