"""Declarative rules deciding which records feed `ml-api-message` and `ml-api-perfs`.

Every record feeds `ml-api-logs`. Rules come from configuration (`PIPELINE_RULES`, JSON):

    {"message": [{"route": "/predict*", "method": "POST", "status": "2xx"}],
     "perfs":   [{"route": "/predict*", "status": "2xx", "level": "INFO"}]}

A record feeds an index when it matches any of that index's rules; a rule matches when every
field it names matches: `route` (a glob on `url.path`), `method`, `status` (`200`, or a class
such as `2xx`) and `level` (`log.level`). The default: successful POSTs to the prediction routes.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from inferlog.telemetry.record import STATUS_PATTERN, RequestRecord, status_matches

Target = Literal["message", "perfs"]


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    route: str | None = None
    method: str | None = None
    status: str | None = Field(None, pattern=STATUS_PATTERN)
    level: Literal["INFO", "WARNING", "ERROR"] | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _status_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value

    def matches(self, record: RequestRecord) -> bool:
        if self.route is not None and not fnmatch.fnmatchcase(record.url.path, self.route):
            return False
        if self.method is not None and record.http.request.method != self.method.upper():
            return False
        if self.level is not None and record.log.level != self.level:
            return False
        return self.status is None or status_matches(record.http.response.status_code, self.status)


PREDICTION_ROUTES = ("/predict", "/predict/batch", "/predict_proba")
DEFAULT_RULES: dict[Target, list[Rule]] = {
    "message": [Rule(route=r, method="POST", status="2xx") for r in PREDICTION_ROUTES],
    "perfs": [Rule(route=r, method="POST", status="2xx") for r in PREDICTION_ROUTES],
}

TARGETS_CACHE_SIZE = 1024
_RULES = TypeAdapter(dict[Target, list[Rule]])


class RecordFilter:
    def __init__(self, rules: dict[Target, list[Rule]] | None = None) -> None:
        self.rules = DEFAULT_RULES | (rules or {})
        # Rules read only the route, method, status and level: each combination is worked out
        # once (bounded: `url.path` comes from clients).
        self._targets: dict[tuple[str, str, int, str], frozenset[Target]] = {}

    @classmethod
    def from_json(cls, text: str | None) -> RecordFilter:
        """Rules from configuration; a mistake is a clear error at startup, not a silent drop."""
        return cls(_RULES.validate_python(json.loads(text)) if text else None)

    def targets(self, record: RequestRecord) -> frozenset[Target]:
        key = (
            record.url.path,
            record.http.request.method,
            record.http.response.status_code,
            record.log.level,
        )
        targets = self._targets.get(key)
        if targets is None:
            targets = frozenset(
                target
                for target, rules in self.rules.items()
                if any(rule.matches(record) for rule in rules)
            )
            if len(self._targets) >= TARGETS_CACHE_SIZE:
                self._targets.clear()
            self._targets[key] = targets
        return targets
