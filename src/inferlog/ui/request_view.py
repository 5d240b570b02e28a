"""One request, explained: a record of the live window (`GET /logs/{id}`) as a person reads it.

Its summary, its inputs against the training range (from `GET /model-info`), and its profile:
the top functions as a table and as horizontal bars of self and cumulative time.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from inferlog.kibana_links import discover_url

INPUT_COLUMNS = ["feature", "value", "training min", "training max", "in the training range"]
PROFILE_COLUMNS = ["function", "where", "calls", "self ms", "cumulative ms"]


def _label(record: dict[str, Any]) -> str:
    prediction = (record.get("ml") or {}).get("prediction")
    if isinstance(prediction, dict):
        return f"{prediction['label']} (P(malignant) {prediction['probability']:.3f})"
    if isinstance(prediction, list):
        malignant = sum(p["label"] == "malignant" for p in prediction)
        return (
            f"{len(prediction)} cases: {malignant} malignant, {len(prediction) - malignant} benign"
        )
    return "none (no prediction)"


def summary_markdown(record: dict[str, Any], kibana_url: str | None, logs_index: str) -> str:
    ml = record.get("ml") or {}
    profile = ml.get("profile") or {}
    transaction_id = record["transaction"]["id"]
    lines = [
        f"### Request <code id='request-tid'>{html.escape(transaction_id)}</code>",
        f"**{record['http']['request']['method']} {html.escape(record['url']['path'])}** · "
        f"status <span id='request-status'>{record['http']['response']['status_code']}</span> · "
        f"latency {record['event']['duration'] / 1e6:.1f} ms · at {record['@timestamp']}",
        f"**Label:** <span id='request-label'>{html.escape(_label(record))}</span>",
    ]
    if ml:
        model = ml["model"]
        lines.append(f"**Model:** {model['name']} version `{model['version']}`")
        if profile.get("profiled"):
            profiled = (
                f"profiled: {profile['function_calls']} function calls "
                f"({profile['primitive_calls']} primitive)"
            )
        else:
            profiled = f"not profiled: {profile.get('reason') or 'no reason recorded'}"
        lines.append(
            f"**Inference:** {profile['inference_ms']:.2f} ms, CPU {profile['cpu_ms']:.2f} ms, "
            f"RSS {profile['rss_mb']:.1f} MB ({profile['rss_delta_mb']:+.2f} MB) · {profiled}"
        )
    if record.get("error"):
        error = record["error"]
        lines.append(f"**Error:** {html.escape(error['type'])}: {html.escape(error['message'])}")
    if kibana_url:
        link = discover_url(kibana_url, logs_index, transaction_id, record["@timestamp"])
        lines.append(
            f"<a id='kibana-link' href='{html.escape(link)}' target='_blank'>"
            "Open this transaction in Kibana Discover</a>"
        )
    return "  \n".join(lines)


def inputs_frame(
    record: dict[str, Any], features: list[dict[str, Any]]
) -> tuple[str, pd.DataFrame]:
    """The case's inputs (a batch: its first case) beside the training range of each feature."""
    ml = record.get("ml") or {}
    given = ml.get("input")
    if not given:
        return "No model inputs: the request did not reach the model.", pd.DataFrame(
            columns=INPUT_COLUMNS
        )
    note = "Inputs against the training range."
    if isinstance(given, list):
        size = ml.get("batch_size", len(given))
        note = f"A batch of {size} cases: the inputs of the first against the training range."
        if size > len(given):
            note += f" The record keeps the first {len(given)} (RECORD_MAX_CASES)."
        given = given[0]
    rows = []
    for feature in features:
        value = given.get(feature["name"])
        low, high = feature["training_min"], feature["training_max"]
        if value is None:
            where = "missing"
        elif value < low:
            where = "below"
        elif value > high:
            where = "above"
        else:
            where = "yes"
        rows.append([feature["name"], value, low, high, where])
    return note, pd.DataFrame(rows, columns=INPUT_COLUMNS)


def _top_functions(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The profile's top functions; none for a request that never reached the model."""
    profile = (record.get("ml") or {}).get("profile") or {}
    functions: list[dict[str, Any]] = profile.get("top_functions") or []
    return functions


def profile_frame(record: dict[str, Any]) -> pd.DataFrame:
    functions = _top_functions(record)
    return pd.DataFrame(
        [
            [
                f["function"],
                f"{f['file']}:{f['line']}",
                f["calls"],
                round(f["tottime_ms"], 3),
                round(f["cumtime_ms"], 3),
            ]
            for f in functions
        ],
        columns=PROFILE_COLUMNS,
    )


def profile_chart(record: dict[str, Any]) -> str:
    """Horizontal bars, one pair per function: self time over cumulative time, on one scale."""
    functions = _top_functions(record)
    if not functions:
        return "<p class='inferlog-empty'>No profile: this request was not profiled.</p>"
    longest = max(max(f["cumtime_ms"], f["tottime_ms"]) for f in functions) or 1.0
    rows = []
    for f in functions:
        bars = "".join(
            f"<div class='inferlog-hbar {kind}' title='{kind} time'>"
            f"<span style='width:{value / longest * 100:.1f}%'></span>"
            f"<em>{value:.3f} ms</em></div>"
            for kind, value in (("self", f["tottime_ms"]), ("cumulative", f["cumtime_ms"]))
        )
        rows.append(
            f"<div class='inferlog-profile-row' data-function='{html.escape(f['function'])}' "
            f"data-self-ms='{f['tottime_ms']:.3f}' data-cumulative-ms='{f['cumtime_ms']:.3f}'>"
            f"<code>{html.escape(f['function'])}</code><div>{bars}</div></div>"
        )
    legend = (
        "<div class='inferlog-legend'><span class='self'></span> self time "
        "<span class='cumulative'></span> cumulative time (with the functions it calls)</div>"
    )
    return f"<div class='inferlog-profile'>{legend}{''.join(rows)}</div>"
