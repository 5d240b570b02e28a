"""Record -> documents for the three indices, with deterministic `_id`s.

- `ml-api-logs`: the whole record; `_id` = transaction id.
- `ml-api-message`: one document per predicted case the record keeps (a batch expands, up to
  RECORD_MAX_CASES; `ml.omitted` in `ml-api-logs` counts the rest); `_id` = transaction id
  + row; every input feature a typed numeric field (`input.<feature>`), plus the prediction.
- `ml-api-perfs`: two kinds of documents, told apart by `kind`:
  - `kind: request`, one per profiled request; `_id` = transaction id: timings, memory, call
    counts, batch size, the hottest function's name (the whole list is in `ml-api-logs`);
  - `kind: function`, one per rank r = 1..5 (fewer for a smaller profile): the request's r-th
    function by self time (`function.by_self`) and its r-th callee by cumulative time
    (`function.by_cumulative`, the profiled call itself left out), each with its name
    (module:function), calls, self and cumulative time; `_id` = transaction id + `-f` + r.
    The two sides of one document are unrelated functions that share a rank: read one side.
    Lens charts the top values of a keyword field by a sum of a number field: "hottest by self
    time" sums `function.by_self.tottime_ms` per `function.by_self.name`, and each request adds
    exactly its top 5 to it. It cannot chart a list of objects per function, nor dynamic keys;
    one document per rank rather than per function halves the documents to write.
  Request-level charts filter `NOT kind : "function"`, function charts `kind : "function"`.

A redelivered record yields the same `_id`s, so counts never double.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter
from typing import Any

from pydantic_core import to_json

from inferlog.config import Settings
from inferlog.telemetry.record import HotFunction, Ml, RequestRecord
from logs_pipeline.filter import RecordFilter
from logs_pipeline.sinks import Action, RawJson


@dataclass(frozen=True)
class IndexNames:
    """The aliases written to: `INDEX_*` settings (`default()`: their defaults, whatever the
    environment says, for the files the project ships)."""

    logs: str
    message: str
    perfs: str
    dead_letters: str

    @classmethod
    def of(cls, settings: Settings) -> IndexNames:
        return cls(
            settings.index_logs,
            settings.index_message,
            settings.index_perfs,
            settings.index_dead_letters,
        )

    @classmethod
    def default(cls) -> IndexNames:
        fields = Settings.model_fields
        return cls(
            *(fields[f"index_{n}"].default for n in ("logs", "message", "perfs", "dead_letters"))
        )


def _name(f: HotFunction) -> str:
    return _function_name(f.file, f.function, f.line)


@lru_cache(maxsize=4096)  # the same few functions in every profile
def _function_name(file: str, function: str, line: int) -> str:
    """`sklearn/linear_model/_base.py`, `decision_function` ->
    `sklearn.linear_model._base:decision_function`: the same name for the same function in
    every request. Anonymous code (`<listcomp>`, `<lambda>`...) keeps its line, since one file
    may hold several."""
    name = f"{file.removesuffix('.py').replace('/', '.')}:{function}"
    return f"{name}:{line}" if function.startswith("<") else name


def _common(record: RequestRecord, ml: Ml) -> dict[str, Any]:
    return {
        "@timestamp": to_json(record.timestamp).decode()[1:-1],  # as the API writes it
        "transaction": {"id": record.transaction.id},
        "url": {"path": record.url.path},
        "model": {"name": ml.model.name, "version": ml.model.version},
        "batch_size": ml.batch_size,
    }


# Function documents are most of what the pipeline writes: charting every function of the
# profile (up to 2 x PROFILING_TOP_N) made 17 documents of a single-case record, and the
# pipeline's rate fell by half. A function outside a request's top 5 adds little to a panel's
# sums.
CHARTED_FUNCTIONS = 5
SELF_TIME, CUMULATIVE_TIME = attrgetter("tottime_ms"), attrgetter("cumtime_ms")
NOT_PERFS = {"top_functions", "reason", "profiled"}  # profile fields ml-api-perfs leaves out


def message_documents(
    record: RequestRecord, ml: Ml, common: dict[str, Any], index: str
) -> list[Action]:
    if ml.prediction is None:
        return []
    inputs = ml.input if isinstance(ml.input, list) else [ml.input]
    outcomes = ml.prediction if isinstance(ml.prediction, list) else [ml.prediction]
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


def perfs_documents(
    record: RequestRecord, ml: Ml, common: dict[str, Any], index: str
) -> list[Action]:
    profile = ml.profile
    if not profile.profiled:
        return []
    top = profile.top_functions
    # The list is ranked by cumulative time: the first is the profiled call itself (its
    # cumulative time is the whole call tree's), so it is never a "hot" callee.
    callees = top[1:]
    by_self = sorted(top, key=SELF_TIME, reverse=True)[:CHARTED_FUNCTIONS]
    by_cumulative = sorted(callees, key=CUMULATIVE_TIME, reverse=True)[:CHARTED_FUNCTIONS]
    hottest = max(callees, key=SELF_TIME, default=None)
    request = {
        "_index": index,
        "_id": record.transaction.id,
        "_source": {
            **common,
            "kind": "request",
            "http": {"response": {"status_code": record.http.response.status_code}},
            "profile": {
                **profile.model_dump(exclude=NOT_PERFS),
                "inference_ms_per_case": profile.inference_ms / ml.batch_size,
                # The callee with the most self time.
                "hottest_function": _name(hottest) if hottest is not None else None,
            },
        },
    }
    functions = []
    for rank in range(max(len(by_self), len(by_cumulative))):
        function: dict[str, Any] = {"rank": rank + 1}
        for key, ranked in (("by_self", by_self), ("by_cumulative", by_cumulative)):
            if rank < len(ranked):
                f = ranked[rank]
                function[key] = {
                    "name": _name(f),
                    "calls": f.calls,
                    "tottime_ms": f.tottime_ms,
                    "cumtime_ms": f.cumtime_ms,
                }
        functions.append(
            {
                "_index": index,
                "_id": f"{record.transaction.id}-f{rank + 1}",
                "_source": {**common, "kind": "function", "function": function},
            }
        )
    return [request, *functions]


class Indexer:
    def __init__(self, names: IndexNames, record_filter: RecordFilter) -> None:
        self.names = names
        self.filter = record_filter

    def documents(self, record: RequestRecord, text: str | None = None) -> list[Action]:
        """`text`: the record as one line of JSON, when the caller has it (`collector.parse`);
        it becomes the `ml-api-logs` document as it is."""
        logs = RawJson(record.to_json() if text is None else text)
        actions: list[Action] = [
            {"_index": self.names.logs, "_id": record.transaction.id, "_source": logs}
        ]
        targets = self.filter.targets(record)
        if not targets or record.ml is None:  # no case, no profile: nothing more to index
            return actions
        common = _common(record, record.ml)
        if "message" in targets:
            actions += message_documents(record, record.ml, common, self.names.message)
        if "perfs" in targets:
            actions += perfs_documents(record, record.ml, common, self.names.perfs)
        return actions
