"""The Predict tab: a form generated from the feature spec, the answer, why, and a link to the
request's own record (`show_request`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from inferlog.features import FEATURES, GROUP_LABELS, GROUPS, FeatureSpec
from inferlog.ui.client import ApiClient, ApiError
from inferlog.ui.common import error_box

TOWARDS_MALIGNANT, TOWARDS_BENIGN = "towards malignant", "towards benign"
DIRECTION_COLOURS = {TOWARDS_MALIGNANT: "#c0392b", TOWARDS_BENIGN: "#27ae60"}
# Returned by the browser itself the moment a load button is clicked: Predict is disabled
# before any server round trip, so it cannot send the form's previous values meanwhile.
DISABLE_PREDICT_JS = "() => ({__type__: 'update', interactive: false})"


@dataclass
class PredictTab:
    tab: gr.Tab
    show_request: gr.Button  # opens the answer's record in the Logs tab
    transaction_id: gr.State


def _step(spec: FeatureSpec) -> float:
    magnitude = math.floor(math.log10(spec.default)) if spec.default > 0 else 0
    return 10.0 ** (magnitude - 2)


def probability_bar(p: float, threshold: float) -> str:
    colour = "#c0392b" if p >= threshold else "#27ae60"
    return (
        "<div class='inferlog-bar' title='probability of malignancy'>"
        f"<div style='width:{p * 100:.1f}%;background:{colour};height:100%'></div>"
        f"<div class='inferlog-threshold' style='left:{threshold * 100:.1f}%'></div></div>"
        f"<div>P(malignant) = {p:.3f} · threshold {threshold:.3f}</div>"
    )


def answer_markdown(result: dict[str, Any]) -> str:
    flagged = ", ".join(result["out_of_range_features"]) or "none"
    return (
        f"## <span id='answer-label'>{result['label'].upper()}</span>\n"
        f"**Risk level:** {result['risk_level']}  \n"
        f"**Model version:** `{result['model_version']}`  \n"
        f"**Transaction id:** <code id='transaction-id'>{result['transaction_id']}</code>  \n"
        f"**Latency in the API:** {result['latency_ms']:.1f} ms  \n"
        f"**Outside the training range:** {flagged}"
    )


def contributions_frame(result: dict[str, Any]) -> pd.DataFrame:
    """Signed log-odds contributions as bars, largest first (a rank before each name: the chart
    orders its categories by name), each coloured by the direction it pushes the answer.

    A zero-height bar of each direction comes first: the chart's colour scale is fixed by the
    first data it draws, so both directions must always be in it (else a later answer's bars
    of the missing direction are drawn without colour or legend)."""
    features = result["top_features"]
    digits = len(str(len(features)))
    rows = [
        {
            "feature": f"{rank:0{digits}d}. {f['name']}",
            "contribution": f["contribution"],
            "direction": TOWARDS_MALIGNANT if f["contribution"] > 0 else TOWARDS_BENIGN,
        }
        for rank, f in enumerate(features, 1)
    ]
    anchor = rows[0]["feature"] if rows else ""
    anchors = [{"feature": anchor, "contribution": 0.0, "direction": d} for d in DIRECTION_COLOURS]
    return pd.DataFrame(anchors + rows, columns=["feature", "contribution", "direction"])


def build(client: ApiClient) -> PredictTab:
    tab = gr.Tab("Predict", id="predict")
    with tab:
        inputs: list[gr.Number] = []
        with gr.Row():
            benign_button = gr.Button("Load a benign case")
            malignant_button = gr.Button("Load a malignant case")
            reset_button = gr.Button("Reset")
        for group in GROUPS:
            accordion = gr.Accordion(GROUP_LABELS[group].capitalize(), open=group == "mean")
            with accordion, gr.Row():
                inputs.extend(
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
                    for spec in FEATURES
                    if spec.group == group
                )
        predict_button = gr.Button("Predict", variant="primary", elem_id="predict-button")
        predict_error = gr.HTML(elem_id="predict-error")
        transaction_id = gr.State("")
        with gr.Row():
            with gr.Column():
                answer = gr.Markdown(elem_id="answer")
                probability = gr.HTML(elem_id="probability")
                show_request = gr.Button(
                    "Show this request's record and profile",
                    visible=False,
                    size="sm",
                    elem_id="show-request",
                )
            contributions = gr.BarPlot(
                x="feature",
                y="contribution",
                color="direction",
                color_map=DIRECTION_COLOURS,
                x_label_angle=-30,
                sort="x",
                y_title="log-odds contribution",
                title="Top contributing features",
                elem_id="contributions",
            )

        def load_case(label: str) -> list[Any]:
            try:
                case = client.examples(label=label, n=1)[0]
            except ApiError as exc:
                return [gr.update() for _ in inputs] + [error_box(str(exc))]
            return [case[f.name] for f in FEATURES] + [""]

        def enable() -> Any:
            return gr.update(interactive=True)

        loads = [
            (benign_button, lambda: load_case("benign")),
            (malignant_button, lambda: load_case("malignant")),
            (reset_button, lambda: [f.default for f in FEATURES] + [""]),
        ]
        for button, fill in loads:
            load = button.click(None, outputs=predict_button, js=DISABLE_PREDICT_JS).then(
                fill, outputs=[*inputs, predict_error]
            )
            load.then(enable, outputs=predict_button)
            load.failure(enable, outputs=predict_button)

        def predict(*values: float) -> tuple[Any, ...]:
            nothing = ("", "", None, "", gr.update(visible=False))
            missing = [f.label for f, v in zip(FEATURES, values, strict=True) if v is None]
            if missing:
                return (error_box(f"Missing values: {', '.join(missing)}"), *nothing)
            case = {f.name: v for f, v in zip(FEATURES, values, strict=True)}
            try:
                result = client.predict(case)
            except ApiError as exc:
                return (error_box(str(exc)), *nothing)
            return (
                "",
                answer_markdown(result),
                probability_bar(result["probability_malignant"], result["threshold"]),
                contributions_frame(result),
                result["transaction_id"],
                gr.update(visible=True),
            )

        predict_button.click(
            predict,
            inputs=inputs,
            outputs=[
                predict_error,
                answer,
                probability,
                contributions,
                transaction_id,
                show_request,
            ],
        )
    return PredictTab(tab, show_request, transaction_id)
