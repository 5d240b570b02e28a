"""Filter rules and record -> document mapping, on records built like the API builds them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from inferlog.features import FEATURE_NAMES
from inferlog.ml import dataset
from inferlog.ml.predictor import Predictor
from inferlog.telemetry.profiler import InferenceProfiler, summarize
from inferlog.telemetry.record import HotFunction, RequestRecord
from logs_pipeline.collector import Entry, UnusableEntryError, parse
from logs_pipeline.filter import RecordFilter, Rule
from logs_pipeline.indexer import Indexer, IndexNames
from logs_pipeline.sinks import source_json
from logs_pipeline.sinks.ndjson import NdjsonSink, read_actions
from logs_pipeline.templates import POLICY_NAME, index_templates
from tests.records import record


def test_default_rules_take_successful_prediction_posts_only(predictor: Predictor) -> None:
    rules = RecordFilter()
    assert rules.targets(record(predictor)) == {"message", "perfs"}
    assert rules.targets(record(predictor, "/predict/batch", cases=3)) == {"message", "perfs"}
    assert rules.targets(record(predictor, status=422)) == set()
    assert rules.targets(record(predictor, "/health", method="GET")) == set()


def test_rules_from_configuration_match_route_globs_status_classes_and_levels(
    predictor: Predictor,
) -> None:
    rules = RecordFilter.from_json(
        '{"message": [{"route": "/predict/*", "status": 200}], "perfs": [{"level": "WARNING"}]}'
    )
    assert rules.targets(record(predictor, "/predict/batch", cases=2)) == {"message"}
    assert rules.targets(record(predictor)) == set()
    assert rules.targets(record(predictor, status=422)) == {"perfs"}
    assert Rule(status="4xx").matches(record(predictor, status=404))


def test_a_bad_rule_is_a_clear_error_not_a_silent_drop() -> None:
    with pytest.raises(ValidationError, match="status"):
        RecordFilter.from_json('{"message": [{"status": "abc"}]}')
    with pytest.raises(ValidationError, match="extra"):
        RecordFilter.from_json('{"perfs": [{"path": "/predict"}]}')


def test_a_batch_expands_into_one_message_document_per_case(predictor: Predictor) -> None:
    names = IndexNames.default()
    batch = record(predictor, "/predict/batch", cases=4)
    actions = Indexer(names, RecordFilter()).documents(batch)
    messages = [a for a in actions if a["_index"] == names.message]
    assert [a["_id"] for a in messages] == [f"{batch.transaction.id}-{i}" for i in range(4)]
    x = dataset.split().x_test[:4]
    for i, action in enumerate(messages):
        source = action["_source"]
        assert list(source["input"]) == list(FEATURE_NAMES)
        assert np.allclose(list(source["input"].values()), x[i])
        assert source["row"] == i
        assert source["batch_size"] == 4
        assert source["prediction"]["label"] in ("malignant", "benign")
    assert [a["_index"] for a in actions].count(names.logs) == 1
    perfs = [a["_source"]["kind"] for a in actions if a["_index"] == names.perfs]
    assert perfs.count("request") == 1
    assert perfs.count("function") == len(perfs) - 1


def test_documents_are_the_same_for_a_redelivered_record(predictor: Predictor) -> None:
    one = record(predictor, "/predict/batch", cases=3)
    again = RequestRecord.model_validate_json(one.to_json())
    indexer = Indexer(IndexNames.default(), RecordFilter())
    assert indexer.documents(one) == indexer.documents(again)


def test_an_unprofiled_request_has_no_perfs_document(predictor: Predictor) -> None:
    actions = Indexer(IndexNames.default(), RecordFilter()).documents(
        record(predictor, profiled=False)
    )
    assert {a["_index"] for a in actions} == {"ml-api-logs", "ml-api-message"}


def test_function_documents_rank_the_top_five_by_self_time_and_callees_by_cumulative_time(
    predictor: Predictor,
) -> None:
    one = record(predictor)
    actions = Indexer(IndexNames.default(), RecordFilter()).documents(one)
    request, *functions = [a for a in actions if a["_index"] == "ml-api-perfs"]
    top = one.ml.profile.top_functions if one.ml else []
    assert request["_id"] == one.transaction.id
    assert request["_source"]["kind"] == "request"
    assert [f["_id"] for f in functions] == [f"{one.transaction.id}-f{r}" for r in range(1, 6)]
    ranked = [f["_source"]["function"] for f in functions]
    assert [f["rank"] for f in ranked] == [1, 2, 3, 4, 5]

    def name(f: HotFunction) -> str:  # module:function; anonymous code keeps its line
        name = f"{f.file.removesuffix('.py').replace('/', '.')}:{f.function}"
        return f"{name}:{f.line}" if f.function.startswith("<") else name

    by_self = sorted(top, key=lambda f: f.tottime_ms, reverse=True)[:5]
    assert [f["by_self"]["name"] for f in ranked] == [name(f) for f in by_self]
    assert [f["by_self"]["tottime_ms"] for f in ranked] == [f.tottime_ms for f in by_self]
    # The profiled call (first by cumulative time: its whole call tree) is no hot callee.
    by_cumulative = sorted(top[1:], key=lambda f: f.cumtime_ms, reverse=True)[:5]
    assert [f["by_cumulative"]["name"] for f in ranked] == [name(f) for f in by_cumulative]
    assert name(top[0]) == "inferlog.ml.predictor:predict"
    assert name(top[0]) not in {f["by_cumulative"]["name"] for f in ranked}
    hottest = max(top[1:], key=lambda f: f.tottime_ms)
    assert request["_source"]["profile"]["hottest_function"] == name(hottest)
    assert all(f["_source"]["@timestamp"] == request["_source"]["@timestamp"] for f in functions)


def test_hot_functions_include_the_top_by_self_time_not_only_by_cumulative(
    predictor: Predictor,
) -> None:
    x = dataset.split().x_test[:1]
    _, capture = InferenceProfiler(enabled=True).run(predictor.probabilities, x)
    assert capture.profile is not None
    top = summarize(capture, top_n=5)["top_functions"]
    cumulative = [f["cumtime_ms"] for f in top[:5]]
    assert top[0]["function"] == "probabilities"
    assert cumulative == sorted(cumulative)[::-1]
    assert len(top) > 5  # functions with much self time and little below them join
    busiest = max(capture.profile.getstats(), key=lambda e: e.inlinetime).code
    assert getattr(busiest, "co_name", busiest) in {f["function"] for f in top}


def entry(fields: dict[str, str]) -> Entry:
    return Entry("1-0", fields)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"other": "x"}, "malformed_entry"),
        ({"record": "{nope"}, "malformed_entry"),
        ({"record": "[1, 2]"}, "malformed_entry"),
        ({"record": '{"schema": "inferlog.request/2"}'}, "unknown_schema"),
        ({"record": '{"schema": "something/1"}'}, "unknown_schema"),
        ({"record": '{"schema": "inferlog.request/1"}'}, "invalid_record"),
    ],
)
def test_unusable_entries_say_why(fields: dict[str, str], reason: str) -> None:
    with pytest.raises(UnusableEntryError) as caught:
        parse(entry(fields))
    assert caught.value.reason == reason


def test_a_minor_schema_version_is_accepted(predictor: Predictor) -> None:
    document: dict[str, Any] = record(predictor).model_dump(mode="json", by_alias=True)
    document["schema"] = "inferlog.request/1.1"
    assert parse(entry({"record": json.dumps(document)})).record.schema_ == "inferlog.request/1.1"


def test_a_record_as_the_api_ships_it_becomes_the_logs_document_as_it_is(
    predictor: Predictor,
) -> None:
    text = record(predictor).to_json()
    parsed = parse(entry({"record": text}))
    assert parsed.text is text
    (logs,) = [
        a
        for a in Indexer(IndexNames.default(), RecordFilter()).documents(*parsed)
        if a["_index"] == "ml-api-logs"
    ]
    assert source_json(logs) == text.encode()


@pytest.mark.parametrize(
    ("change", "indent"),
    [
        (lambda d: d, 1),  # pretty-printed: its line breaks would split an NDJSON line
        (lambda d: d | {"timestamp": d.pop("@timestamp")}, None),  # a field name, not its alias
        (lambda d: d | {"event": {**d["event"], "duration": "2000000"}}, None),  # a number as text
    ],
)
def test_a_record_not_exactly_in_its_schema_is_written_again(
    predictor: Predictor, change: Any, indent: int | None
) -> None:
    document = change(record(predictor).model_dump(mode="json", by_alias=True))
    raw = json.dumps(document, indent=indent)
    parsed = parse(entry({"record": raw}))
    assert parsed.text != raw
    assert json.loads(parsed.text) == json.loads(parsed.record.to_json())
    assert "\n" not in parsed.text
    assert "@timestamp" in json.loads(parsed.text)
    assert json.loads(parsed.text)["event"]["duration"] == 2_000_000


def test_nan_in_a_record_is_written_as_null_not_as_nan(predictor: Predictor) -> None:
    document = json.loads(record(predictor).to_json())
    document["ml"]["profile"]["rss_delta_mb"] = float("nan")
    parsed = parse(entry({"record": json.dumps(document)}))  # json.dumps writes NaN
    assert "NaN" not in parsed.text
    assert json.loads(parsed.text)["ml"]["profile"].get("rss_delta_mb") is None


def test_a_record_without_its_schema_is_refused_whichever_way_it_is_read(
    predictor: Predictor,
) -> None:
    document = json.loads(record(predictor).to_json())
    del document["schema"]
    with pytest.raises(UnusableEntryError) as caught:
        parse(entry({"record": json.dumps(document, separators=(",", ":"))}))
    assert caught.value.reason == "unknown_schema"


def test_documents_survive_the_ndjson_file_and_a_huge_integer(
    predictor: Predictor, tmp_path: Path
) -> None:
    one = record(predictor, "/predict/batch", cases=2)
    actions = Indexer(IndexNames.default(), RecordFilter()).documents(
        *parse(entry({"record": one.to_json()}))
    )
    actions[1]["_source"]["row"] = 2**70  # pydantic takes it, orjson does not
    sink = NdjsonSink(tmp_path)
    assert sum(sink.write(actions).confirmed.values()) == len(actions)
    back = [
        a
        for index in ("ml-api-logs", "ml-api-message", "ml-api-perfs")
        for a in read_actions(sink.path(index))
    ]
    assert {(a["_index"], a["_id"]): a["_source"] for a in back} == {
        (a["_index"], a["_id"]): json.loads(source_json(a)) for a in actions
    }
    assert back[1]["_source"]["row"] == 2**70


def test_a_profile_of_fewer_functions_than_charted_makes_fewer_rank_documents(
    predictor: Predictor,
) -> None:
    one = record(predictor)
    assert one.ml is not None
    one.ml.profile.top_functions = one.ml.profile.top_functions[:3]
    perfs = [
        a
        for a in Indexer(IndexNames.default(), RecordFilter()).documents(one)
        if a["_index"] == "ml-api-perfs"
    ]
    ranked = [a["_source"]["function"] for a in perfs[1:]]
    assert [f["rank"] for f in ranked] == [1, 2, 3]
    assert all("by_self" in f for f in ranked)
    assert ["by_cumulative" in f for f in ranked] == [True, True, False]  # the root is left out


def test_templates_are_composable_strict_and_cover_every_feature() -> None:
    templates = index_templates(IndexNames.default())
    assert set(templates) == {
        "ml-api-logs",
        "ml-api-message",
        "ml-api-perfs",
        "ml-api-dead-letters",
    }
    for name, body in templates.items():
        assert body["index_patterns"] == [f"{name}-*"]  # the bare name is the rollover alias
        assert set(body) == {"index_patterns", "priority", "template", "_meta"}
        assert body["template"]["mappings"]["dynamic"] == "strict"
        settings = body["template"]["settings"]
        assert settings["index.lifecycle.name"] == POLICY_NAME
        assert settings["index.lifecycle.rollover_alias"] == name
    without = index_templates(IndexNames.default(), policy=None)["ml-api-logs"]["template"][
        "settings"
    ]
    assert not any(key.startswith("index.lifecycle") for key in without)
    message = templates["ml-api-message"]["template"]["mappings"]["properties"]
    assert list(message["input"]["properties"]) == list(FEATURE_NAMES)
