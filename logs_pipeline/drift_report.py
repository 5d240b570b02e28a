"""`python -m logs_pipeline drift-report`: drift over a period, from `ml-api-message`, as HTML.

The cases come from Elasticsearch (when ELASTICSEARCH_URL is set) or from the NDJSON files;
the statistics are `inferlog.ml.drift`'s, the same as `GET /drift`. The report is one
self-contained HTML file: the per-feature table (drifted rows highlighted) and, per feature,
a plot of the reference and current distributions (matplotlib, embedded as PNG).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from elasticsearch import Elasticsearch, helpers
from matplotlib.figure import Figure  # the object API: no GUI backend, no global state

from inferlog.features import FEATURE_NAMES, FEATURES_BY_NAME, matrix_of
from inferlog.ml.drift import drift_report
from logs_pipeline.sinks.ndjson import read_actions

Document = dict[str, Any]


def _in_period(timestamp: str, since: dt.datetime | None, until: dt.datetime | None) -> bool:
    moment = dt.datetime.fromisoformat(timestamp)
    return (since is None or moment >= since) and (until is None or moment <= until)


def documents_from_ndjson(
    path: Path, since: dt.datetime | None, until: dt.datetime | None
) -> list[Document]:
    """The last version of each document (a redelivery rewrites the same `_id`)."""
    if not path.exists():
        return []
    latest = {action["_id"]: action["_source"] for action in read_actions(path)}
    return [d for d in latest.values() if _in_period(d["@timestamp"], since, until)]


def documents_from_elasticsearch(
    client: Elasticsearch, index: str, since: dt.datetime | None, until: dt.datetime | None
) -> list[Document]:
    bounds = {k: v.isoformat() for k, v in (("gte", since), ("lte", until)) if v is not None}
    query = {"range": {"@timestamp": bounds}} if bounds else {"match_all": {}}
    return [hit["_source"] for hit in helpers.scan(client, index=index, query={"query": query})]


def _plot(name: str, histogram: dict[str, list[float]], drifted: bool) -> str:
    edges = np.asarray(histogram["edges"])
    widths = np.diff(edges)
    figure = Figure(figsize=(4.2, 2.6), dpi=90)
    axis = figure.subplots()
    axis.bar(
        edges[:-1], histogram["reference"], widths, align="edge", alpha=0.55, label="reference"
    )
    axis.bar(edges[:-1], histogram["current"], widths, align="edge", alpha=0.55, label="current")
    spec = FEATURES_BY_NAME.get(name)
    axis.set_title(f"{spec.label if spec else name}{' (drifted)' if drifted else ''}", fontsize=9)
    axis.set_ylabel("share of cases", fontsize=8)
    axis.tick_params(labelsize=7)
    axis.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode()


def render(report: dict[str, Any], period: str, source: str) -> str:
    head = (
        "<!doctype html><html><head><meta charset='utf-8'><title>inferlog drift report</title>"
        "<style>body{font-family:sans-serif;margin:24px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}"
        "tr.drifted{background:#fde2e2}.plots{display:flex;flex-wrap:wrap;gap:8px}"
        "figure{margin:0}</style></head><body>"
        f"<h1>Data drift</h1><p>{html.escape(period)} &middot; source: {html.escape(source)}"
        f" &middot; {report['cases']} cases</p>"
        f"<p>{html.escape(report['method']['drifted_when'])}; "
        f"{html.escape(report['method']['test'])}; {html.escape(report['method']['distance'])}.</p>"
    )
    if not report["enough_data"]:
        return head + f"<p id='verdict'>{html.escape(report['message'])}</p></body></html>"
    rows = "".join(
        f"<tr class='{'drifted' if f['drifted'] else ''}'><td>{f['name']}</td>"
        f"<td>{f['ks_statistic']:.3f}</td><td>{f['p_value']:.2e}</td>"
        f"<td>{f['distance_std']:.2f}</td><td>{'yes' if f['drifted'] else 'no'}</td></tr>"
        for f in [*report["features"], report["probability"]]
    )
    drifted = ", ".join(report["drifted_features"]) or "none"
    figures = []
    for name in [*FEATURE_NAMES, "probability_malignant"]:
        png = _plot(name, report["histograms"][name], name in report["drifted_features"])
        figures.append(
            f"<figure class='plot' data-feature='{name}'>"
            f"<img alt='{name}' src='data:image/png;base64,{png}'></figure>"
        )
    plots = "".join(figures)
    return (
        head + f"<p id='verdict'>Drifted: {html.escape(drifted)} "
        f"({report['drifted_share'] * 100:.0f} % of the features)</p>"
        "<table><tr><th>feature</th><th>KS statistic</th><th>p-value</th>"
        "<th>distance (std)</th><th>drifted</th></tr>"
        + rows
        + "</table><h2>Distributions</h2><div class='plots'>"
        + plots
        + "</div></body></html>"
    )


def build(
    reference: dict[str, Any], documents: Iterable[Document], min_cases: int
) -> dict[str, Any]:
    docs = list(documents)
    inputs = matrix_of(d["input"] for d in docs)
    probabilities = np.array([d["prediction"]["probability"] for d in docs])
    return drift_report(reference, inputs, probabilities, min_cases)
