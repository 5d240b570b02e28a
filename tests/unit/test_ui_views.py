"""What the UI's views make of API answers, without a browser (the browser tests check what
is drawn)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import unquote

from inferlog.kibana_links import discover_url
from inferlog.ui.drift_tab import summary_markdown
from inferlog.ui.predict_tab import DIRECTION_COLOURS, contributions_frame
from inferlog.ui.request_view import inputs_frame, profile_chart

FEATURES = [
    {"name": "radius_mean", "training_min": 7.0, "training_max": 28.0},
    {"name": "texture_mean", "training_min": 9.7, "training_max": 39.3},
]


def record(given: Any) -> dict[str, Any]:
    return {"ml": {"input": given}}


def test_each_input_is_placed_against_its_training_range() -> None:
    _, frame = inputs_frame(record({"radius_mean": 6.0, "texture_mean": 40.0}), FEATURES)
    assert list(frame["in the training range"]) == ["below", "above"]
    _, frame = inputs_frame(record({"radius_mean": 7.0, "texture_mean": 39.3}), FEATURES)
    assert list(frame["in the training range"]) == ["yes", "yes"]  # the edges are in range


def test_a_batch_shows_its_first_case_and_says_so() -> None:
    cases = [{"radius_mean": 10.0, "texture_mean": 10.0}, {"radius_mean": 99.0}]
    note, frame = inputs_frame(record(cases), FEATURES)
    assert "batch of 2 cases" in note
    assert "keeps the first" not in note
    assert list(frame["value"]) == [10.0, 10.0]


def test_a_batch_larger_than_its_record_says_how_many_cases_the_record_kept() -> None:
    kept = [{"radius_mean": 10.0, "texture_mean": 10.0}] * 20
    note, _ = inputs_frame({"ml": {"input": kept, "batch_size": 1000}}, FEATURES)
    assert "batch of 1000 cases" in note
    assert "keeps the first 20" in note


def test_a_request_that_never_reached_the_model_has_no_inputs_and_no_profile() -> None:
    note, frame = inputs_frame({"ml": None}, FEATURES)
    assert frame.empty
    assert "did not reach the model" in note
    assert "not profiled" in profile_chart({"ml": None})


def test_both_directions_lead_the_contributions_so_the_legend_always_names_both() -> None:
    only_malignant = {
        "top_features": [
            {"name": "radius_se", "contribution": 2.5},
            {"name": "area_se", "contribution": 1.8},
        ]
    }
    frame = contributions_frame(only_malignant)
    assert list(frame["direction"][:2]) == list(DIRECTION_COLOURS)
    assert list(frame["contribution"][:2]) == [0.0, 0.0]
    assert list(frame["feature"][2:]) == ["1. radius_se", "2. area_se"]  # ranked, in order
    assert set(frame["direction"][2:]) == {"towards malignant"}


def test_the_discover_link_shows_the_transaction_around_its_time() -> None:
    url = discover_url("http://kibana:5601/", "ml-api-logs", "a'b!c", "2026-11-25T10:00:00+00:00")
    assert url.startswith("http://kibana:5601/app/discover#/?_g=")
    state = unquote(url)
    assert "index:'inferlog-ml-api-logs'" in state
    assert "query:'transaction.id : \"a!'b!!c\"'" in state  # Rison escapes ' and !
    start = (dt.datetime(2026, 11, 25, 9, 45, tzinfo=dt.UTC)).isoformat()
    assert f"from:'{start}'" in state
    assert "to:'2026-11-25T10:15:00+00:00'" in state


def test_the_drift_summary_says_when_older_cases_of_the_window_were_left_out() -> None:
    report = {
        "cases": 2000,
        "drifted_features": ["radius_mean"],
        "drifted_share": 1 / 30,
        "probability": {"drifted": False},
        "truncated": True,
    }
    assert summary_markdown(report).startswith("**2000 cases** the newest in the window · ")
    whole = summary_markdown({**report, "cases": 120, "truncated": False})
    assert whole.startswith("**120 cases** in the window · drifted: **radius_mean** (3 % ")
