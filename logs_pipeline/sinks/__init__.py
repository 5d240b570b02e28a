"""Sinks: where documents go. Each takes a batch of bulk actions and returns the ones that can
never be written (with the reason); a transient failure raises `RetryableSinkError`, and the
pipeline retries the whole batch (writes are idempotent by `_id`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

Action = dict[str, Any]


class RetryableSinkError(RuntimeError):
    """The sink could not confirm the batch now (429, 5xx, connection): retry later."""


@dataclass(frozen=True)
class Rejected:
    action: Action
    reason: str
    error: str


class Sink(Protocol):
    name: str

    def write(self, actions: list[Action]) -> list[Rejected]: ...

    def counts(self) -> dict[str, int]: ...
