"""Record -> documents for the three indices, with deterministic `_id`s.

- `ml-api-logs`: the whole record; `_id` = transaction id.
- `ml-api-message`: one document per predicted case (a batch expands); `_id` = transaction id
  + row; every input feature a typed numeric field (`input.<feature>`), plus the prediction.
- `ml-api-perfs`: one document per profiled request; `_id` = transaction id; timings, memory,
  call counts, batch size, and the hot functions both as a list (to read) and as
  `function_ms.<function>` numbers (to chart: one numeric field per function).

A redelivered record yields the same `_id`s, so counts never double.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from inferlog.telemetry.record import RequestRecord
from logs_pipeline.filter import RecordFilter

Action = dict[str, Any]

_NOT_A_FIELD_CHAR = re.compile(r"[^A-Za-z0-9_]+")


@dataclass(frozen=True)
class IndexNames:
    logs: str = "ml-api-logs"
    message: str = "ml-api-message"
    perfs: str = "ml-api-perfs"
    dead_letters: str = "ml-api-dead-letters"


def function_field(file: str, function: str) -> str:
    """`sklearn/linear_model/_base.py`, `fit` -> `linear_model__base_fit`.

    No dots (they would nest objects); the same name for the same function in every request."""
    module = file.removesuffix(".py").split("/")[-2:]
    return _NOT_A_FIELD_CHAR.sub("_", "_".join([*module, function])).strip("_")


def _common(record: RequestRecord) -> dict[str, Any]:
    assert record.ml is not None
    return {
        "@timestamp": record.timestamp.isoformat().replace("+00:00", "Z"),
        "transaction": {"id": record.transaction.id},
        "url": {"path": record.url.path},
        "model": {"name": record.ml.model.name, "version": record.ml.model.version},
        "batch_size": record.ml.batch_size,
    }


def message_documents(record: RequestRecord, index: str) -> list[Action]:
    ml = record.ml
    if ml is None or ml.prediction is None:
        return []
    inputs = ml.input if isinstance(ml.input, list) else [ml.input]
    outcomes = ml.prediction if isinstance(ml.prediction, list) else [ml.prediction]
    common = _common(record)
    return [
        {
            "_index": index,
            "_id": f"{record.transaction.id}-{row}",
            "_source": {
                **common,
                "row": row,
                "input": case,
                "prediction": {
                    **outcome.model_dump(),
                    "out_of_range": bool(outcome.out_of_range_features),
                },
            },
        }
        for row, (case, outcome) in enumerate(zip(inputs, outcomes, strict=True))
    ]


def perfs_document(record: RequestRecord, index: str) -> list[Action]:
    ml = record.ml
    if ml is None or not ml.profile.profiled:
        return []
    profile = ml.profile.model_dump(exclude={"top_functions", "reason", "profiled"})
    top = [f.model_dump() for f in ml.profile.top_functions]
    function_ms: dict[str, float] = {}
    for f in ml.profile.top_functions:
        name = function_field(f.file, f.function)
        function_ms[name] = function_ms.get(name, 0.0) + f.cumtime_ms
    return [
        {
            "_index": index,
            "_id": record.transaction.id,
            "_source": {
                **_common(record),
                "http": {"response": {"status_code": record.http.response.status_code}},
                "profile": {
                    **profile,
                    "inference_ms_per_case": ml.profile.inference_ms / ml.batch_size,
                    "top_functions": top,
                    "hottest_function": top[0]["function"] if top else None,
                    "function_ms": function_ms,
                },
            },
        }
    ]


class Indexer:
    def __init__(self, names: IndexNames, record_filter: RecordFilter) -> None:
        self.names = names
        self.filter = record_filter

    def documents(self, record: RequestRecord) -> list[Action]:
        source = record.model_dump(mode="json", by_alias=True, exclude_none=True)
        actions: list[Action] = [
            {"_index": self.names.logs, "_id": record.transaction.id, "_source": source}
        ]
        targets = self.filter.targets(record)
        if "message" in targets:
            actions += message_documents(record, self.names.message)
        if "perfs" in targets:
            actions += perfs_document(record, self.names.perfs)
        return actions
