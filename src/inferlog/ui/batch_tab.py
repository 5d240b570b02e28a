"""The Batch tab: a CSV of cases in, the results as a table and as a CSV to download."""

from __future__ import annotations

import html
import io
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from inferlog.features import FEATURE_NAMES
from inferlog.ui.client import ApiClient, ApiError
from inferlog.ui.common import error_box


def build(client: ApiClient) -> gr.Tab:
    tab = gr.Tab("Batch", id="batch")
    with tab:
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

        def template() -> Any:
            try:
                text = client.examples(n=5, fmt="csv")
            except ApiError as exc:
                gr.Warning(str(exc))
                return gr.update()
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
                box = error_box(str(exc)) + f"<ul class='row-errors'>{items}</ul>"
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
            answers = [c for c in frame.columns if c not in FEATURE_NAMES]
            frame = frame[[*answers, *FEATURE_NAMES]]
            return "", summary, frame, gr.update(value=str(out), visible=True)

        template_button.click(template, outputs=template_button)
        upload.change(
            run_batch, inputs=upload, outputs=[batch_error, batch_summary, results, download]
        )
    return tab
