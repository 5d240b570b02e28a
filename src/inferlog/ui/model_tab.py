"""The Model tab: the model card (`GET /model-info`), read again each time the tab opens."""

from __future__ import annotations

from typing import Any

import gradio as gr

from inferlog.ui.client import ApiClient, ApiError
from inferlog.ui.common import error_box


def card_markdown(info: dict[str, Any]) -> str:
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


def build(client: ApiClient) -> gr.Tab:
    tab = gr.Tab("Model", id="model")
    with tab:
        model_error = gr.HTML(elem_id="model-error")
        model_card = gr.Markdown(elem_id="model-card")

    def load_model() -> tuple[str, Any]:
        try:
            return "", card_markdown(client.model_info())
        except ApiError as exc:
            return error_box(str(exc)), gr.update()

    tab.select(load_model, outputs=[model_error, model_card])
    return tab
