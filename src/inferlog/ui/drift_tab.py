"""The Drift tab: the live window's inputs against the training data (`GET /drift`), loaded
when the tab opens."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr
import pandas as pd

from inferlog.features import FEATURE_NAMES
from inferlog.ui.client import ApiClient, ApiError
from inferlog.ui.common import error_box, notice


def summary_markdown(report: dict[str, Any]) -> str:
    drifted = ", ".join(report["drifted_features"]) or "none"
    # At DRIFT_MAX_CASES (or a scan bound) the window holds older cases that were left out.
    scope = "the newest in the window" if report.get("truncated") else "in the window"
    return (
        f"**{report['cases']} cases** {scope} · drifted: **{drifted}** "
        f"({report['drifted_share'] * 100:.0f} % of the features) · predicted probability "
        f"{'drifted' if report['probability']['drifted'] else 'stable'}"
    )


def table_html(report: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr class='{'drifted' if f['drifted'] else 'stable'}'><td>{html.escape(f['name'])}</td>"
        f"<td>{f['ks_statistic']:.3f}</td><td>{f['p_value']:.1e}</td>"
        f"<td>{f['distance_std']:.2f}</td><td>{'yes' if f['drifted'] else 'no'}</td></tr>"
        for f in report["features"]
    )
    return (
        "<table class='inferlog-drift'><tr><th>feature</th><th>KS statistic</th>"
        f"<th>p-value</th><th>distance (std)</th><th>drifted</th></tr>{rows}</table>"
    )


def distribution_frame(report: dict[str, Any], feature: str) -> pd.DataFrame:
    histogram = report["histograms"][feature]
    edges = histogram["edges"]
    rows = []
    for i in range(len(edges) - 1):
        centre = (edges[i] + edges[i + 1]) / 2
        rows.append({"value": centre, "share": histogram["reference"][i], "data": "reference"})
        rows.append({"value": centre, "share": histogram["current"][i], "data": "current"})
    return pd.DataFrame(rows)


def build(client: ApiClient) -> gr.Tab:
    tab = gr.Tab("Drift", id="drift")
    with tab:
        gr.Markdown(
            "Inputs of the live window against the training data: a two-sample "
            "Kolmogorov-Smirnov test and a distance per feature (see `GET /drift`)."
        )
        drift_refresh = gr.Button("Refresh", elem_id="drift-refresh")
        drift_error = gr.HTML(elem_id="drift-error")
        drift_summary = gr.Markdown(elem_id="drift-summary")
        drift_table = gr.HTML(elem_id="drift-table")
        drift_feature = gr.Dropdown(
            choices=[*FEATURE_NAMES, "probability_malignant"],
            value=FEATURE_NAMES[0],
            label="Feature to plot",
            elem_id="drift-feature",
        )
        drift_plot = gr.LinePlot(
            x="value",
            y="share",
            color="data",
            title="Reference (training) vs current distribution",
            elem_id="drift-plot",
        )
        drift_state = gr.State(None)

    def load_drift(feature: str) -> tuple[Any, ...]:
        try:
            report = client.drift()
        except ApiError as exc:
            return error_box(str(exc)), "", "", None, None
        if not report["enough_data"]:
            message = f"{report['message'].capitalize()}; send more with `make simulate`."
            return notice(message), "", "", None, report
        return (
            "",
            summary_markdown(report),
            table_html(report),
            distribution_frame(report, feature),
            report,
        )

    outputs = [drift_error, drift_summary, drift_table, drift_plot, drift_state]
    drift_refresh.click(load_drift, inputs=drift_feature, outputs=outputs)
    tab.select(load_drift, inputs=drift_feature, outputs=outputs)
    drift_feature.change(
        lambda report, feature: (
            distribution_frame(report, feature) if report and report["enough_data"] else None
        ),
        inputs=[drift_state, drift_feature],
        outputs=drift_plot,
    )
    return tab
