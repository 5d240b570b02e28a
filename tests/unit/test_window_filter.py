"""The text check a scan of the live window makes before parsing a record (`may_keep`) must
never drop a record the filter itself keeps, whoever wrote the JSON."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from inferlog.telemetry.window_reader import LogFilter

PATHS = st.sampled_from(["/predict", "/predict/batch", "/logs/x", '/q"uote', "/é", "/a\\b", "/"])
STATUSES = st.integers(min_value=100, max_value=599)


def record(status: int, path: str, request_id: str | None) -> dict[str, Any]:
    return {
        "@timestamp": "2026-11-26T10:00:00+00:00",
        "http": {
            "request": {"method": "GET", **({"id": request_id} if request_id else {})},
            "response": {"status_code": status},
        },
        "url": {"path": path},
    }


def writers(document: dict[str, Any]) -> list[str]:
    return [json.dumps(document), orjson.dumps(document).decode(), json.dumps(document, indent=1)]


@settings(max_examples=300, deadline=None)
@given(
    status=STATUSES,
    path=PATHS,
    request_id=st.one_of(st.none(), st.sampled_from(["abc", "r-1", 'q"1'])),
    wanted_status=st.one_of(st.none(), st.sampled_from(["200", "422", "4xx", "5xx", "201"])),
    wanted_path=st.one_of(st.none(), PATHS),
    wanted_id=st.one_of(st.none(), st.sampled_from(["abc", "r-1", 'q"1'])),
)
def test_the_text_check_never_drops_a_record_the_filter_keeps(
    status: int,
    path: str,
    request_id: str | None,
    wanted_status: str | None,
    wanted_path: str | None,
    wanted_id: str | None,
) -> None:
    keep = LogFilter(status=wanted_status, path=wanted_path, request_id=wanted_id)
    document = record(status, path, request_id)
    if keep.keeps(document):
        assert all(keep.may_keep(text) for text in writers(document))


def test_the_text_check_skips_records_of_another_status_or_path() -> None:
    text = orjson.dumps(record(200, "/predict", "abc")).decode()
    assert not LogFilter(status="422").may_keep(text)
    assert not LogFilter(status="4xx").may_keep(text)
    assert not LogFilter(status="201").may_keep(text)
    assert not LogFilter(path="/predict/batch").may_keep(text)
    assert LogFilter(status="2xx", path="/predict", request_id="abc").may_keep(text)
