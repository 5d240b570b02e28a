"""The Monitoring tab: the live window's statistics (`GET /logs/stats`), refreshed every 3 s
while the tab is open."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from inferlog.ui.client import ApiClient, ApiError
from inferlog.ui.common import error_box, notice, window_phrase

REFRESH_SECONDS = 3.0


def stats_frames(stats: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    # Points only for minutes with predictions, drawn unjoined: a minute without traffic is a
    # gap, never a line drawn across it.
    points = [
        {"minute": minute["minute"], "latency ms": minute[name], "percentile": name}
        for minute in stats["throughput"]
        for name in ("p50", "p95", "p99")
        if minute.get(name) is not None
    ]
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
    top = float(frame[column].max()) if len(frame) else 0.0
    return gr.update(value=frame, y_lim=[0, max(top, 1.0) * 1.1])


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def shipper_line(shipper: dict[str, Any] | None) -> str:
    shipper = shipper or {}
    return (
        f"**Shipper:** shipped {shipper.get('shipped', 0)}, waiting {shipper.get('backlog', 0)}, "
        f"spooled during outages {shipper.get('spooled', 0)}, "
        f"dropped {shipper.get('dropped', 0)}, "
        f"Redis {'up' if shipper.get('redis_available') else 'down'}"
        f"{' · ' + shipper['problem'] if shipper.get('problem') else ''}"
    )


def health_markdown(stats: dict[str, Any]) -> str:
    latency = stats["latency_ms"]
    stream = stats["stream"]
    stale = stream.get("stale_consumers")
    return (
        f"**Requests in the window:** <span id='request-count'>{stats['requests']}</span> · "
        f"errors {stats['error_rate'] * 100:.1f} %  \n"
        f"**Prediction requests:** <span id='prediction-count'>{stats['predictions']}</span> · "
        f"{stats['throughput_per_minute']:.1f} per minute over the window · "
        f"{stats['last_minute_requests'] or 0} in the last full minute · "
        f"errors {stats['prediction_error_rate'] * 100:.1f} %  \n"
        f"**Prediction latency:** p50 {_ms(latency['p50'])} ms · "
        f"p95 {_ms(latency['p95'])} ms · p99 {_ms(latency['p99'])} ms ({stats['estimator']})  \n"
        f"**Inference:** mean {_ms(stats['mean_inference_ms'])} ms, "
        f"CPU {_ms(stats['mean_cpu_ms'])} ms, "
        f"{stats['profiled']} of {stats['inferences']} profiled  \n"
        f"{shipper_line(stats.get('shipper'))}  \n"
        f"**Pipeline:** stream length {stream['length']}, pending {stream['pending']}, "
        f"lag {stream['lag']}, consumers {stream['consumers']}"
        f"{f' (and {stale} stale)' if stale else ''}"
        f"{' · **' + stream['sink_problem'] + '**' if stream.get('sink_problem') else ''}  \n"
        f"**Redis memory:** {memory_line(stream.get('redis_memory'))}"
    )


def memory_line(memory: dict[str, Any] | None) -> str:
    if memory is None:
        return "not reported by this Redis"
    used = f"{memory['used_bytes'] / 2**20:.0f} MiB"
    if memory["max_bytes"] is None:
        return f"{used}, no budget set (maxmemory 0)"
    return (
        f"{used} of {memory['max_bytes'] / 2**20:.0f} MiB "
        f"({memory['used_share'] * 100:.0f} %, policy {memory['policy']})"
    )


def build(client: ApiClient, timer: gr.Timer) -> gr.Tab:
    """The tab; `timer` (placed outside the tabs, so it can be stopped) drives the refresh."""
    tab = gr.Tab("Monitoring", id="monitoring")
    with tab:
        gr.Markdown(
            f"Live statistics of the API's recent requests (refreshed every "
            f"{REFRESH_SECONDS:.0f} s while this tab is open)."
        )
        monitoring_error = gr.HTML(elem_id="monitoring-error")
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
        unchanged = tuple(gr.update() for _ in range(5))
        try:
            stats = client.stats()
        except ApiError as exc:
            return (error_box(str(exc)), *unchanged)
        if not stats["redis_available"]:
            return (error_box(stats["problem"]), shipper_line(stats["shipper"]), *unchanged[1:])
        latency, throughput, labels = stats_frames(stats)
        empty = ""
        if stats["predictions"] == 0:  # the UI's own reads are requests too
            empty = notice(
                f"No predictions in {window_phrase(stats['window_seconds'])}: "
                "send some with `make simulate`."
            )
        return (
            empty,
            health_markdown(stats),
            latency,
            _from_zero(throughput, "requests"),
            _from_zero(labels, "count"),
            pd.DataFrame(stats["hottest_functions"]),
        )

    outputs = [monitoring_error, health, latency_plot, throughput_plot, labels_plot, hottest]
    timer.tick(refresh, outputs=outputs)
    tab.select(refresh, outputs=outputs)
    return tab
