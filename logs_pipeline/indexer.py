"""Record -> documents for the three indices, with deterministic `_id`s.

- `ml-api-logs`: the whole record; `_id` = transaction id.
- `ml-api-message`: one document per predicted case (a batch expands); `_id` = transaction id
  + row; every input feature a typed numeric field (`input.<feature>`), plus the prediction.
- `ml-api-perfs`: two kinds of documents, told apart by `kind`:
  - `kind: request`, one per profiled request; `_id` = transaction id: timings, memory, call
    counts, batch size, and the hot functions as a list (to read);
  - `kind: function`, one per hot function of that request; `_id` = transaction id + `-f` +
    rank: the function's name, self and cumulative time, calls, and whether it is the profiled
    root (the model call itself). Lens charts top values of a keyword field by a sum of a
    number field; it cannot chart a list of objects per function, nor dynamic keys.
  Request-level charts filter `NOT kind : "function"`, function charts `kind : "function"`.

A redelivered record yields the same `_id`s, so counts never double.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inferlog.telemetry.record import HotFunction, RequestRecord
from logs_pipeline.filter import RecordFilter

Action = dict[str, Any]


@dataclass(frozen=True)
class IndexNames:
    logs: str = "ml-api-logs"
    message: str = "ml-api-message"
    perfs: str = "ml-api-perfs"
    dead_letters: str = "ml-api-dead-letters"


def function_name(function: HotFunction) -> str:
    """`sklearn/linear_model/_base.py`, `decision_function` ->
    `sklearn.linear_model._base:decision_function`: the same name for the same function in
    every request. Anonymous code (`<listcomp>`, `<lambda>`...) keeps its line, since one file
    may hold several."""
    name = f"{function.file.removesuffix('.py').replace('/', '.')}:{function.function}"
    return f"{name}:{function.line}" if function.function.startswith("<") else name


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


def perfs_documents(record: RequestRecord, index: str) -> list[Action]:
    ml = record.ml
    if ml is None or not ml.profile.profiled:
        return []
    profile = ml.profile.model_dump(exclude={"top_functions", "reason", "profiled"})
    top = ml.profile.top_functions
    # The list is ranked by cumulative time: the first is the profiled call itself (its
    # cumulative time is the whole call tree's), so it is the root, never a "hot" function.
    callees = top[1:]
    hottest = max(callees, key=lambda f: f.tottime_ms) if callees else None
    common = _common(record)
    request = {
        "_index": index,
        "_id": record.transaction.id,
        "_source": {
            **common,
            "kind": "request",
            "http": {"response": {"status_code": record.http.response.status_code}},
            "profile": {
                **profile,
                "inference_ms_per_case": ml.profile.inference_ms / ml.batch_size,
                "top_functions": [f.model_dump() for f in top],
                # The callee with the most self time (the root is always first by cumtime).
                "hottest_function": function_name(hottest) if hottest else None,
            },
        },
    }
    functions = [
        {
            "_index": index,
            "_id": f"{record.transaction.id}-f{rank}",
            "_source": {
                **common,
                "kind": "function",
                "function": {
                    "name": function_name(f),
                    "file": f.file,
                    "line": f.line,
                    "calls": f.calls,
                    "tottime_ms": f.tottime_ms,
                    "cumtime_ms": f.cumtime_ms,
                    "rank": rank,
                    "root": rank == 0,
                },
            },
        }
        for rank, f in enumerate(top)
    ]
    return [request, *functions]


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
            actions += perfs_documents(record, self.names.perfs)
        return actions
