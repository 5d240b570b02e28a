"""The Gradio UI: Predict, Batch, Monitoring, Logs and Model tabs, all over the API's HTTP.

The form is generated from the feature spec (three groups in accordions, each field with its
label, unit, bounds and training median); a value outside the bounds is refused by the form
itself (Gradio checks `minimum`/`maximum` before calling anything). Every API failure becomes a
readable message in the page; nothing here raises into Gradio's error toast with a traceback.
"""

from __future__ import annotations

import html
import io
import math
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from inferlog.api.csv_codec import RESULT_COLUMNS
from inferlog.features import FEATURE_NAMES, FEATURES, GROUP_LABELS, GROUPS, FeatureSpec
from inferlog.ui.client import ApiClient, ApiError

DISCLAIMER = (
    "**A demonstration of an observable ML service, not a medical device.** "
    "Predictions come from a model trained on the public Wisconsin breast-cancer data set."
)
LOG_COLUMNS = ["time", "transaction id", "route", "status", "latency ms", "label"]


def _step(spec: FeatureSpec) -> float:
    magnitude = math.floor(math.log10(spec.default)) if spec.default > 0 else 0
    return 10.0 ** (magnitude - 2)


def _error_box(message: str) -> str:
    return f"<div class='inferlog-error' role='alert'>⚠️ {html.escape(message)}</div>"


def _probability_bar(p: float, threshold: float) -> str:
    colour = "#c0392b" if p >= threshold else "#27ae60"
    return (
        "<div class='inferlog-bar' title='probability of malignancy'>"
        f"<div style='width:{p * 100:.1f}%;background:{colour};height:100%'></div>"
        f"<div class='inferlog-threshold' style='left:{threshold * 100:.1f}%'></div></div>"
        f"<div>P(malignant) = {p:.3f} · threshold {threshold:.3f}</div>"
    )


def _answer_markdown(result: dict[str, Any]) -> str:
    flagged = ", ".join(result["out_of_range_features"]) or "none"
    return (
        f"## {result['label'].upper()}\n"
        f"**Risk level:** {result['risk_level']}  \n"
        f"**Model version:** `{result['model_version']}`  \n"
        f"**Transaction id:** <code id='transaction-id'>{result['transaction_id']}</code>  \n"
        f"**Latency in the API:** {result['latency_ms']:.1f} ms  \n"
        f"**Outside the training range:** {flagged}"
    )


TOWARDS_MALIGNANT, TOWARDS_BENIGN = "towards malignant", "towards benign"
DIRECTION_COLOURS = {TOWARDS_MALIGNANT: "#c0392b", TOWARDS_BENIGN: "#27ae60"}


def _contributions(result: dict[str, Any]) -> pd.DataFrame:
    """Signed log-odds contributions, each with the direction it pushes the answer."""
    return pd.DataFrame(
        [
            {
                "feature": f["name"],
                "contribution": f["contribution"],
                "direction": TOWARDS_MALIGNANT if f["contribution"] > 0 else TOWARDS_BENIGN,
            }
            for f in result["top_features"]
        ],
        columns=["feature", "contribution", "direction"],
    )


def _stats_frames(stats: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    # Points only for minutes with predictions, drawn unjoined: a minute without traffic is a
    # gap, never a line drawn across it.
    points = []
    for minute in stats["throughput"]:
        for name in ("p50", "p95", "p99"):
            if minute.get(name) is not None:
                points.append(
                    {"minute": minute["minute"], "latency ms": minute[name], "percentile": name}
                )
    latency = pd.DataFrame(points, columns=["minute", "latency ms", "percentile"])
    latency["minute"] = pd.to_datetime(latency["minute"])
    throughput = pd.DataFrame(
        [{"minute": m["minute"], "requests": m["requests"]} for m in stats["throughput"]],
        columns=["minute", "requests"],
    )
    # A time axis (readable ticks), ending a minute after the current one: a bar covers its
    # whole minute, and the current minute's would otherwise fall off the axis.
    throughput["minute"] = pd.to_datetime(throughput["minute"])
    if len(throughput):
        end = throughput["minute"].iloc[-1] + pd.Timedelta(minutes=1)
        throughput.loc[len(throughput)] = [end, 0]
    labels = pd.DataFrame(
        [{"label": k, "count": v} for k, v in stats["labels"].items()], columns=["label", "count"]
    )
    return latency, throughput, labels


def _from_zero(frame: pd.DataFrame, column: str) -> Any:
    """Bar charts whose axis starts at 0, so bar heights compare."""
    top = float(frame[column].max()) if len(frame) else 1.0
    return gr.update(value=frame, y_lim=[0, top * 1.1])


def _health_markdown(stats: dict[str, Any]) -> str:
    latency = stats["latency_ms"]
    shipper = stats.get("shipper") or {}
    stream = stats["stream"]

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    return (
        f"**Requests in the window:** <span id='request-count'>{stats['requests']}</span> · "
        f"errors {stats['error_rate'] * 100:.1f} %  \n"
        f"**Prediction requests:** <span id='prediction-count'>{stats['predictions']}</span> · "
        f"{stats['throughput_per_minute']:.1f} per minute over the window · "
        f"{stats['last_minute_requests'] or 0} in the last full minute · "
        f"errors {stats['prediction_error_rate'] * 100:.1f} %  \n"
        f"**Prediction latency:** p50 {ms(latency['p50'])} ms · p95 {ms(latency['p95'])} ms · "
        f"p99 {ms(latency['p99'])} ms ({stats['estimator']})  \n"
        f"**Inference:** mean {ms(stats['mean_inference_ms'])} ms, "
        f"CPU {ms(stats['mean_cpu_ms'])} ms, "
        f"{stats['profiled']} of {stats['inferences']} profiled  \n"
        f"**Shipper:** shipped {shipper.get('shipped', 0)}, waiting {shipper.get('backlog', 0)}, "
        f"spooled during outages {shipper.get('spooled', 0)}, "
        f"dropped {shipper.get('dropped', 0)}, "
        f"Redis {'up' if shipper.get('redis_available') else 'down'}"
        f"{' · ' + shipper['problem'] if shipper.get('problem') else ''}  \n"
        f"**Pipeline:** stream length {stream['length']}, pending {stream['pending']}, "
        f"lag {stream['lag']}, consumers {stream['consumers']}"
        f"{' · **' + stream['sink_problem'] + '**' if stream.get('sink_problem') else ''}  \n"
        f"**Redis memory:** {_memory_line(stream.get('redis_memory'))}"
    )


def _memory_line(memory: dict[str, Any] | None) -> str:
    if memory is None:
        return "not reported by this Redis"
    used = f"{memory['used_bytes'] / 2**20:.0f} MiB"
    if memory["max_bytes"] is None:
        return f"{used}, no budget set (maxmemory 0)"
    return (
        f"{used} of {memory['max_bytes'] / 2**20:.0f} MiB "
        f"({memory['used_share'] * 100:.0f} %, policy {memory['policy']})"
    )


def _drift_summary(report: dict[str, Any]) -> str:
    drifted = ", ".join(report["drifted_features"]) or "none"
    return (
        f"**{report['cases']} cases** in the window · drifted: **{drifted}** "
        f"({report['drifted_share'] * 100:.0f} % of the features) · predicted probability "
        f"{'drifted' if report['probability']['drifted'] else 'stable'}"
    )


def _drift_table(report: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr class='{'drifted' if f['drifted'] else 'stable'}'><td>{f['name']}</td>"
        f"<td>{f['ks_statistic']:.3f}</td><td>{f['p_value']:.1e}</td>"
        f"<td>{f['distance_std']:.2f}</td><td>{'yes' if f['drifted'] else 'no'}</td></tr>"
        for f in report["features"]
    )
    return (
        "<table class='inferlog-drift'><tr><th>feature</th><th>KS statistic</th>"
        f"<th>p-value</th><th>distance (std)</th><th>drifted</th></tr>{rows}</table>"
    )


def _drift_frame(report: dict[str, Any], feature: str) -> pd.DataFrame:
    histogram = report["histograms"][feature]
    edges = histogram["edges"]
    rows = []
    for i in range(len(edges) - 1):
        centre = (edges[i] + edges[i + 1]) / 2
        rows.append({"value": centre, "share": histogram["reference"][i], "data": "reference"})
        rows.append({"value": centre, "share": histogram["current"][i], "data": "current"})
    return pd.DataFrame(rows)


def _model_markdown(info: dict[str, Any]) -> str:
    card = info["model_card"]
    metrics = card["metrics_held_out"]
    cm = metrics["confusion_matrix"]
    bands = " · ".join(
        f"{name} from {band['from']:.3f}" for name, band in card["risk_bands"].items()
    )
    scores = " | ".join(
        f"{metrics[key]:.4f}"
        for key in ("roc_auc", "accuracy", "recall_malignant", "precision_malignant")
    )
    candidates = "\n".join(
        f"| {c['name']} | {c['cv_roc_auc_mean']:.4f} ± {c['cv_roc_auc_std']:.4f} | "
        f"{c['single_row_latency_ms_p50']:.3f} |"
        for c in card["selection"]["candidates"]
    )
    return f"""## {card["name"]} · version `{card["version"]}`

{card["selection"]["reason"]}.

### Held-out metrics ({metrics["n_cases"]} cases never seen in training)

| ROC AUC | accuracy | malignant recall | malignant precision |
| --- | --- | --- | --- |
| {scores} |

### Confusion matrix (rows: true label, columns: predicted)

| | benign | malignant |
| --- | --- | --- |
| **benign** | {cm["true_negatives"]} | {cm["false_positives"]} |
| **malignant** | {cm["false_negatives"]} | {cm["true_positives"]} |

### Decision threshold: {card["threshold"]["value"]:.4f}

{card["threshold"]["method"]}. Risk bands: {bands}.

### Candidates compared

| model | cross-validated ROC AUC | single-row latency (ms) |
| --- | --- | --- |
{candidates}

Data: {card["data"]["source"]}; scikit-learn {card["training"]["scikit_learn_version"]};
trained {card["training"]["date"]}.
"""


def build_app(client: ApiClient) -> gr.Blocks:
    with gr.Blocks(title="inferlog") as app:
        gr.Markdown("# inferlog: breast-cancer prediction, observed")
        gr.Markdown(DISCLAIMER, elem_id="disclaimer")

        with gr.Tab("Predict", id="predict"):
            inputs: list[gr.Number] = []
            with gr.Row():
                benign_button = gr.Button("Load a benign case")
                malignant_button = gr.Button("Load a malignant case")
                reset_button = gr.Button("Reset")
            for group in GROUPS:
                accordion = gr.Accordion(GROUP_LABELS[group].capitalize(), open=group == "mean")
                with accordion, gr.Row():
                    for spec in (f for f in FEATURES if f.group == group):
                        inputs.append(
                            gr.Number(
                                value=spec.default,
                                label=f"{spec.label} ({spec.unit})",
                                info=f"{spec.lower:g} to {spec.upper:g}",
                                minimum=spec.lower,
                                maximum=spec.upper,
                                step=_step(spec),
                                elem_id=f"field-{spec.name}",
                                min_width=180,
                            )
                        )
            predict_button = gr.Button("Predict", variant="primary", elem_id="predict-button")
            predict_error = gr.HTML(elem_id="predict-error")
            with gr.Row():
                with gr.Column():
                    answer = gr.Markdown(elem_id="answer")
                    probability = gr.HTML(elem_id="probability")
                contributions = gr.BarPlot(
                    x="feature",
                    y="contribution",
                    color="direction",
                    color_map=DIRECTION_COLOURS,
                    title="Top contributing features (log-odds; positive = towards malignant)",
                    sort="-y",
                    elem_id="contributions",
                )

            def load_case(label: str) -> list[Any]:
                try:
                    case = client.examples(label=label, n=1)[0]
                except ApiError as exc:
                    return [gr.update() for _ in inputs] + [_error_box(str(exc))]
                return [case[f.name] for f in FEATURES] + [""]

            benign_button.click(lambda: load_case("benign"), outputs=[*inputs, predict_error])
            malignant_button.click(lambda: load_case("malignant"), outputs=[*inputs, predict_error])
            reset_button.click(
                lambda: [f.default for f in FEATURES] + [""], outputs=[*inputs, predict_error]
            )

            def predict(*values: float) -> tuple[str, str, str, Any]:
                case = {f.name: v for f, v in zip(FEATURES, values, strict=True)}
                missing = [f.label for f, v in zip(FEATURES, values, strict=True) if v is None]
                if missing:
                    return _error_box(f"Missing values: {', '.join(missing)}"), "", "", None
                try:
                    result = client.predict(case)
                except ApiError as exc:
                    return _error_box(str(exc)), "", "", None
                return (
                    "",
                    _answer_markdown(result),
                    _probability_bar(result["probability_malignant"], result["threshold"]),
                    _contributions(result),
                )

            predict_button.click(
                predict, inputs=inputs, outputs=[predict_error, answer, probability, contributions]
            )

        with gr.Tab("Batch", id="batch"):
            gr.Markdown(
                "Upload a CSV whose header row names the 30 features; the results come back "
                "as a table and as a CSV with the prediction columns appended."
            )
            with gr.Row():
                template_button = gr.DownloadButton("Download a template CSV (5 real cases)")
                upload = gr.File(label="CSV of cases", file_types=[".csv"], elem_id="batch-upload")
            batch_error = gr.HTML(elem_id="batch-error")
            batch_summary = gr.Markdown(elem_id="batch-summary")
            results = gr.Dataframe(label="Results", interactive=False, elem_id="batch-results")
            download = gr.DownloadButton(
                "Download the results", visible=False, elem_id="batch-download"
            )

            def template() -> str:
                text = client.examples(n=5, fmt="csv")
                path = Path(tempfile.mkdtemp()) / "inferlog-template.csv"
                path.write_text(text)
                return str(path)

            def run_batch(path: str | None) -> tuple[str, str, pd.DataFrame | None, Any]:
                if not path:
                    return "", "", None, gr.update(visible=False)
                try:
                    text = client.predict_csv(Path(path).read_bytes())
                except ApiError as exc:
                    rows = [
                        f"row {e['row']}, {e['field']}: {e['reason']}"
                        if e.get("row")
                        else f"{e['field']}: {e['reason']}"
                        for e in exc.errors
                    ]
                    items = "".join(f"<li>{html.escape(r)}</li>" for r in rows)
                    box = _error_box(str(exc)) + f"<ul class='row-errors'>{items}</ul>"
                    return box, "", None, gr.update(visible=False)
                out = Path(tempfile.mkdtemp()) / "inferlog-results.csv"
                out.write_text(text)
                frame = pd.read_csv(io.StringIO(text))
                labels = frame["label"].value_counts()
                summary = (
                    f"**{len(frame)} cases predicted**: {labels.get('malignant', 0)} malignant, "
                    f"{labels.get('benign', 0)} benign"
                )
                # Answers first, then the inputs they came from.
                frame = frame[[*RESULT_COLUMNS, *FEATURE_NAMES]]
                return "", summary, frame, gr.update(value=str(out), visible=True)

            template_button.click(template, outputs=template_button)
            upload.change(
                run_batch, inputs=upload, outputs=[batch_error, batch_summary, results, download]
            )

        with gr.Tab("Monitoring", id="monitoring"):
            gr.Markdown("Live statistics of the API's recent requests (refreshed every 3 s).")
            monitoring_error = gr.HTML()
            health = gr.Markdown(elem_id="health")
            with gr.Row():
                latency_plot = gr.ScatterPlot(
                    x="minute",
                    y="latency ms",
                    color="percentile",
                    title="Prediction latency per minute (ms)",
                    elem_id="latency-plot",
                )
                throughput_plot = gr.BarPlot(
                    x="minute",
                    y="requests",
                    x_bin="1m",  # one bar per minute on a time axis
                    y_aggregate="sum",
                    title="Predictions per minute",
                    elem_id="throughput-plot",
                )
            with gr.Row():
                labels_plot = gr.BarPlot(
                    x="label", y="count", title="Label split (cases)", elem_id="labels-plot"
                )
                hottest = gr.Dataframe(
                    label="Hottest functions (summed over requests)", interactive=False
                )

            def refresh() -> tuple[Any, ...]:
                try:
                    stats = client.stats()
                except ApiError as exc:
                    return (_error_box(str(exc)), *(gr.update() for _ in range(5)))
                latency, throughput, labels = _stats_frames(stats)
                functions = pd.DataFrame(stats["hottest_functions"])
                return (
                    "",
                    _health_markdown(stats),
                    latency,
                    _from_zero(throughput, "requests"),
                    _from_zero(labels, "count"),
                    functions,
                )

            timer = gr.Timer(3.0)
            monitoring_outputs = [
                monitoring_error,
                health,
                latency_plot,
                throughput_plot,
                labels_plot,
                hottest,
            ]
            timer.tick(refresh, outputs=monitoring_outputs)
            app.load(refresh, outputs=monitoring_outputs)

        with gr.Tab("Logs", id="logs"):
            with gr.Row():
                tid_filter = gr.Textbox(label="Transaction id", elem_id="logs-tid")
                status_filter = gr.Textbox(label="Status (e.g. 200, 4xx)", elem_id="logs-status")
                refresh_logs = gr.Button("Refresh", elem_id="logs-refresh")
            logs_error = gr.HTML()
            table = gr.Dataframe(headers=LOG_COLUMNS, interactive=False, elem_id="logs-table")
            record_view = gr.JSON(label="Selected record")
            records_state = gr.State([])

            def load_logs(tid: str, status: str) -> tuple[str, pd.DataFrame, list[dict[str, Any]]]:
                try:
                    records = client.logs(
                        limit=100, transaction_id=tid.strip(), status=status.strip()
                    )
                except ApiError as exc:
                    return _error_box(str(exc)), pd.DataFrame(columns=LOG_COLUMNS), []
                rows = []
                for r in records:
                    prediction = (r.get("ml") or {}).get("prediction")
                    label = (
                        prediction.get("label")
                        if isinstance(prediction, dict)
                        else (f"{len(prediction)} cases" if prediction else "")
                    )
                    rows.append(
                        [
                            r["@timestamp"],
                            r["transaction"]["id"],
                            r["url"]["path"],
                            r["http"]["response"]["status_code"],
                            round(r["event"]["duration"] / 1e6, 2),
                            label,
                        ]
                    )
                return "", pd.DataFrame(rows, columns=LOG_COLUMNS), records

            def select_record(records: list[dict[str, Any]], event: gr.SelectData) -> Any:
                row = event.index[0] if isinstance(event.index, list | tuple) else event.index
                return records[row] if 0 <= row < len(records) else None

            refresh_logs.click(
                load_logs,
                inputs=[tid_filter, status_filter],
                outputs=[logs_error, table, records_state],
            )
            table.select(select_record, inputs=records_state, outputs=record_view)

        with gr.Tab("Drift", id="drift"):
            gr.Markdown(
                "Inputs of the live window against the training data: a two-sample "
                "Kolmogorov-Smirnov test and a distance per feature (see `GET /drift`)."
            )
            drift_refresh = gr.Button("Refresh", elem_id="drift-refresh")
            drift_error = gr.HTML()
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
                    return _error_box(str(exc)), "", "", None, None
                if not report["enough_data"]:
                    return "", report["message"], "", None, report
                return (
                    "",
                    _drift_summary(report),
                    _drift_table(report),
                    _drift_frame(report, feature),
                    report,
                )

            drift_refresh.click(
                load_drift,
                inputs=drift_feature,
                outputs=[drift_error, drift_summary, drift_table, drift_plot, drift_state],
            )
            drift_feature.change(
                lambda report, feature: _drift_frame(report, feature) if report else None,
                inputs=[drift_state, drift_feature],
                outputs=drift_plot,
            )

        with gr.Tab("Model", id="model"):
            model_error = gr.HTML()
            model_card = gr.Markdown(elem_id="model-card")

            def load_model() -> tuple[str, str]:
                try:
                    return "", _model_markdown(client.model_info())
                except ApiError as exc:
                    return _error_box(str(exc)), ""

            app.load(load_model, outputs=[model_error, model_card])
    return app


CSS = """
.inferlog-error { background:#fdecea; color:#8a1c12; padding:10px 14px; border-radius:6px; }
.inferlog-bar { position:relative; height:22px; background:#eee; border-radius:4px;
                overflow:hidden; }
.inferlog-threshold { position:absolute; top:0; bottom:0; width:2px; background:#222; }
.inferlog-drift td, .inferlog-drift th { padding:2px 8px; }
.inferlog-drift tr.drifted { background:#fde2e2; font-weight:bold; }
"""
