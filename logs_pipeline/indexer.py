"""Record -> documents for the three indices, with deterministic `_id`s.

- `ml-api-logs`: the whole record; `_id` = transaction id.
- `ml-api-message`: one document per predicted case (a batch expands); `_id` = transaction id
  + row; every input feature a typed numeric field (`input.<feature>`), plus the prediction.
- `ml-api-perfs`: two kinds of documents, told apart by `kind`:
  - `kind: request`, one per profiled request; `_id` = transaction id: timings, memory, call
    counts, batch size, and the hot functions as a list (to read);
  - `kind: function`, one per charted function of that request (its top 5 by self time and
    its top 5 callees by cumulative time); `_id` = transaction id + `-f` + rank in the
    record's list: the function's name, self and cumulative time, calls, and whether it is
    the profiled root (the model call itself). Lens charts top values of a keyword field by
    a sum of a number field; it cannot chart a list of objects per function, nor dynamic keys.
  Request-level charts filter `NOT kind : "function"`, function charts `kind : "function"`.

A redelivered record yields the same `_id`s, so counts never double.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from inferlog.telemetry.record import RequestRecord
from logs_pipeline.filter import RecordFilter

Action = dict[str, Any]


@dataclass(frozen=True)
class IndexNames:
    logs: str = "ml-api-logs"
    message: str = "ml-api-message"
    perfs: str = "ml-api-perfs"
    dead_letters: str = "ml-api-dead-letters"


@lru_cache(maxsize=4096)  # the same few functions in every profile
def _function_name(file: str, function: str, line: int) -> str:
    """`sklearn/linear_model/_base.py`, `decision_function` ->
    `sklearn.linear_model._base:decision_function`: the same name for the same function in
    every request. Anonymous code (`<listcomp>`, `<lambda>`...) keeps its line, since one file
    may hold several."""
    name = f"{file.removesuffix('.py').replace('/', '.')}:{function}"
    return f"{name}:{line}" if function.startswith("<") else name


def _common(record: RequestRecord, source: dict[str, Any]) -> dict[str, Any]:
    ml = source["ml"]
    return {
        "@timestamp": source["@timestamp"],
        "transaction": {"id": record.transaction.id},
        "url": {"path": record.url.path},
        "model": {"name": ml["model"]["name"], "version": ml["model"]["version"]},
        "batch_size": ml["batch_size"],
    }


# Each charted function is one more document to index: charting every function of the profile
# (up to 2 x PROFILING_TOP_N) made 17 documents of a single-case record, and the pipeline's rate
# fell by half. A function that is not in a request's top 5 adds little to a panel's sums.
CHARTED_FUNCTIONS = 5

# The builders below work on the record's JSON form (`source`, dumped once for ml-api-logs):
# dumping the models again per document was a third of the pipeline's time.


def message_documents(
    record: RequestRecord, source: dict[str, Any], common: dict[str, Any], index: str
) -> list[Action]:
    ml = source["ml"]
    if ml.get("prediction") is None:
        return []
    inputs = ml["input"] if isinstance(ml["input"], list) else [ml["input"]]
    outcomes = ml["prediction"] if isinstance(ml["prediction"], list) else [ml["prediction"]]
    return [
        {
            "_index": index,
            "_id": f"{record.transaction.id}-{row}",
            "_source": {
                **common,
                "row": row,
                "input": case,
                "prediction": {
                    **outcome,
                    "out_of_range": bool(outcome.get("out_of_range_features")),
                },
            },
        }
        for row, (case, outcome) in enumerate(zip(inputs, outcomes, strict=True))
    ]


def perfs_documents(
    record: RequestRecord, source: dict[str, Any], common: dict[str, Any], index: str
) -> list[Action]:
    ml = source["ml"]
    profile = ml["profile"]
    if not profile["profiled"]:
        return []
    top = profile.get("top_functions", [])
    numbers = {k: v for k, v in profile.items() if k not in ("top_functions", "reason", "profiled")}
    names = [_function_name(f["file"], f["function"], f["line"]) for f in top]
    # The list is ranked by cumulative time: the first is the profiled call itself (its
    # cumulative time is the whole call tree's), so it is the root, never a "hot" function.
    hottest = max(range(1, len(top)), key=lambda i: top[i]["tottime_ms"], default=None)
    by_self = sorted(range(len(top)), key=lambda i: top[i]["tottime_ms"], reverse=True)
    by_cumulative = sorted(range(1, len(top)), key=lambda i: top[i]["cumtime_ms"], reverse=True)
    charted = sorted({*by_self[:CHARTED_FUNCTIONS], *by_cumulative[:CHARTED_FUNCTIONS]})
    request = {
        "_index": index,
        "_id": record.transaction.id,
        "_source": {
            **common,
            "kind": "request",
            "http": {"response": {"status_code": record.http.response.status_code}},
            "profile": {
                **numbers,
                "inference_ms_per_case": profile["inference_ms"] / ml["batch_size"],
                "top_functions": top,
                # The callee with the most self time.
                "hottest_function": names[hottest] if hottest is not None else None,
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
                    "name": names[rank],
                    "file": f["file"],
                    "line": f["line"],
                    "calls": f["calls"],
                    "tottime_ms": f["tottime_ms"],
                    "cumtime_ms": f["cumtime_ms"],
                    "rank": rank,
                    "root": rank == 0,
                },
            },
        }
        for rank, f in ((rank, top[rank]) for rank in charted)
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
        if not targets or record.ml is None:  # no case, no profile: nothing more to index
            return actions
        common = _common(record, source)
        if "message" in targets:
            actions += message_documents(record, source, common, self.names.message)
        if "perfs" in targets:
            actions += perfs_documents(record, source, common, self.names.perfs)
        return actions
