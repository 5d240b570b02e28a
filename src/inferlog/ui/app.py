"""The Gradio UI: Predict, Batch, Monitoring, Logs, Drift and Model tabs, all over the API's HTTP.

Each tab is built by its own module. A tab shows its data when opened, and every API failure
becomes a readable message in the page; nothing raises into Gradio's error toast with a
traceback. Timers (Monitoring, the Logs live toggle) run only while their tab is open.
"""

from __future__ import annotations

import gradio as gr

from inferlog.ui import (
    batch_tab,
    drift_tab,
    logs_tab,
    model_tab,
    monitoring_tab,
    predict_tab,
)
from inferlog.ui.client import ApiClient

DISCLAIMER = (
    "**A demonstration of an observable ML service, not a medical device.** "
    "Predictions come from a model trained on the public Wisconsin breast-cancer data set."
)


def build_app(client: ApiClient, kibana_url: str | None, logs_index: str) -> gr.Blocks:
    """`kibana_url`: Kibana as a browser reaches it; a request's view then links to Discover
    (`logs_index`: INDEX_LOGS)."""
    app = gr.Blocks(title="inferlog")
    with app:
        gr.Markdown("# inferlog: breast-cancer prediction, observed")
        gr.Markdown(DISCLAIMER, elem_id="disclaimer")
        # Outside the tabs: a timer inside one cannot be stopped before that tab has opened.
        monitoring_timer = gr.Timer(monitoring_tab.REFRESH_SECONDS, active=False)
        with gr.Tabs() as tabs:
            predict = predict_tab.build(client)
            batch = batch_tab.build(client)
            monitoring = monitoring_tab.build(client, monitoring_timer)
            logs = logs_tab.build(client, kibana_url, logs_index)
            drift = drift_tab.build(client)
            model = model_tab.build(client)

        # Each timer runs only while its tab is open: Monitoring's from opening to leaving,
        # the Logs live toggle until the tab is left (it is then unticked).
        monitoring.select(lambda: gr.Timer(active=True), outputs=monitoring_timer)
        for other in (predict.tab, batch, logs.tab, drift, model):
            other.select(lambda: gr.Timer(active=False), outputs=monitoring_timer)
        for other in (predict.tab, batch, monitoring, drift, model):
            other.select(
                lambda: (gr.Timer(active=False), False), outputs=[logs.live_timer, logs.live]
            )
        # The answer's own record: open Logs with its id, then show it once it has arrived.
        predict.show_request.click(
            lambda tid: (gr.Tabs(selected="logs"), tid),
            inputs=predict.transaction_id,
            outputs=[tabs, logs.request_tid],
        ).then(logs.show_arriving, inputs=logs.request_tid, outputs=logs.request_view)
    return app
