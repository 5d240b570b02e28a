"""The Logs tab: the live window's records, and one request explained (its summary, inputs
against the training range and profile), chosen from the table or by transaction id."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from inferlog.ui import request_view
from inferlog.ui.client import ApiClient, ApiError
from inferlog.ui.common import error_box, notice, window_phrase

LOG_COLUMNS = ["time", "transaction id", "route", "status", "latency ms", "label"]
LIVE_SECONDS = 3.0
# A record reaches the live window within ~50 ms of its answer (the shipper's flush): a request
# shown straight from the Predict tab may need that long.
ARRIVAL_SECONDS = 3.0


# Transaction ids are the API's UUIDs: anything else is refused here, before a request (a word
# such as "stats" would otherwise reach another route).
TRANSACTION_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass
class LogsTab:
    tab: gr.Tab
    request_tid: gr.Textbox
    request_view: list[Any]  # what `show_arriving` fills
    show_arriving: Callable[[str], tuple[Any, ...]]  # a request just answered: waits for it
    live: gr.Checkbox
    live_timer: gr.Timer


def _row(record: dict[str, Any]) -> list[Any]:
    prediction = (record.get("ml") or {}).get("prediction")
    if isinstance(prediction, dict):
        label = prediction.get("label")
    else:
        label = f"{len(prediction)} cases" if prediction else ""
    return [
        record["@timestamp"],
        record["transaction"]["id"],
        record["url"]["path"],
        record["http"]["response"]["status_code"],
        round(record["event"]["duration"] / 1e6, 2),
        label,
    ]


def build(client: ApiClient, kibana_url: str | None, logs_index: str) -> LogsTab:
    features: list[dict[str, Any]] = []  # the feature spec with training ranges, asked once

    tab = gr.Tab("Logs", id="logs")
    with tab:
        with gr.Row():
            tid_filter = gr.Textbox(label="Transaction id", elem_id="logs-tid")
            status_filter = gr.Textbox(label="Status (e.g. 200, 4xx)", elem_id="logs-status")
            with gr.Column(min_width=160):
                refresh_logs = gr.Button("Refresh", elem_id="logs-refresh")
                live = gr.Checkbox(
                    label=f"Live (every {LIVE_SECONDS:.0f} s)", value=False, elem_id="logs-live"
                )
        logs_error = gr.HTML(elem_id="logs-error")
        table = gr.Dataframe(headers=LOG_COLUMNS, interactive=False, elem_id="logs-table")
        records_state = gr.State([])
        live_timer = gr.Timer(LIVE_SECONDS, active=False)

        gr.Markdown("### One request\nSelect a row above, or enter a transaction id.")
        with gr.Row():
            request_tid = gr.Textbox(label="Transaction id", elem_id="request-tid-input", scale=4)
            show_button = gr.Button("Show", elem_id="request-show", scale=1)
        request_error = gr.HTML(elem_id="request-error")
        summary = gr.Markdown(elem_id="request-summary")
        gr.Markdown("**Profile: the top functions of the model call**")
        profile_chart = gr.HTML(elem_id="profile-chart")
        profile_table = gr.Dataframe(
            headers=request_view.PROFILE_COLUMNS,
            interactive=False,
            label="Top functions",
            elem_id="profile-table",
        )
        inputs_note = gr.Markdown(elem_id="request-inputs-note")
        inputs_table = gr.Dataframe(
            headers=request_view.INPUT_COLUMNS,
            interactive=False,
            label="Inputs",
            elem_id="request-inputs",
        )
        with gr.Accordion("The whole record (JSON)", open=False):
            record_view = gr.JSON(elem_id="request-json")

    view = [request_error, summary, profile_chart, profile_table, inputs_note, inputs_table]
    view_and_json = [*view, record_view]

    def load_logs(tid: str, status: str) -> tuple[str, pd.DataFrame, list[dict[str, Any]]]:
        try:
            page = client.logs(limit=100, transaction_id=tid.strip(), status=status.strip())
        except ApiError as exc:
            return error_box(str(exc)), pd.DataFrame(columns=LOG_COLUMNS), []
        records = page["records"]
        message = ""
        if not records:
            window = window_phrase(page["window_seconds"])
            message = notice(
                f"No request matches these filters in {window}."
                if tid.strip() or status.strip()
                else f"No requests in {window}: send some with `make simulate`."
            )
        return message, pd.DataFrame([_row(r) for r in records], columns=LOG_COLUMNS), records

    def explained(record: dict[str, Any]) -> tuple[Any, ...]:
        if not features:
            features[:] = client.model_info()["features"]
        note, inputs = request_view.inputs_frame(record, features)
        return (
            "",
            request_view.summary_markdown(record, kibana_url, logs_index),
            request_view.profile_chart(record),
            request_view.profile_frame(record),
            note,
            inputs,
            record,
        )

    def cleared(message: str) -> tuple[Any, ...]:
        return (message, "", "", None, "", None, None)

    def show(transaction_id: str, wait: float = 0.0) -> tuple[Any, ...]:
        wanted = transaction_id.strip()
        if not wanted:
            return tuple(gr.update() for _ in view_and_json)
        if not TRANSACTION_ID.match(wanted):
            return cleared(
                error_box(f"Not a transaction id: {wanted!r} (expected a UUID, as in the table)")
            )
        deadline = time.monotonic() + wait
        while True:
            try:
                return explained(client.log(wanted))
            except ApiError as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    return cleared(error_box(str(exc)))
            time.sleep(0.2)

    def show_arriving(transaction_id: str) -> tuple[Any, ...]:
        return show(transaction_id, ARRIVAL_SECONDS)

    def select_record(records: list[dict[str, Any]], event: gr.SelectData) -> tuple[Any, ...]:
        # By the row's transaction id, not its position: a live refresh may have moved it.
        row = event.row_value or []
        tid = row[1] if len(row) > 1 else None
        record = next((r for r in records if r["transaction"]["id"] == tid), None)
        if record is None:
            return (gr.update(), *(gr.update() for _ in view_and_json))
        try:
            return (tid, *explained(record))
        except ApiError as exc:
            return (gr.update(), *cleared(error_box(str(exc))))

    table_outputs = [logs_error, table, records_state]
    filters = [tid_filter, status_filter]
    refresh_logs.click(load_logs, inputs=filters, outputs=table_outputs)
    live_timer.tick(load_logs, inputs=filters, outputs=table_outputs)
    live.change(lambda on: gr.Timer(active=on), inputs=live, outputs=live_timer)
    tab.select(load_logs, inputs=filters, outputs=table_outputs)
    table.select(select_record, inputs=records_state, outputs=[request_tid, *view_and_json])
    show_button.click(show, inputs=request_tid, outputs=view_and_json)
    request_tid.submit(show, inputs=request_tid, outputs=view_and_json)
    return LogsTab(tab, request_tid, view_and_json, show_arriving, live, live_timer)
