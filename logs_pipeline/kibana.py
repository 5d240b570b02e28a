"""Kibana saved objects: data views, dashboards and saved searches, for Kibana 8.x.

`saved_objects()` builds them; `logs_pipeline/kibana/saved_objects.ndjson` is that output,
committed (a test keeps the two equal) and imported by `python -m logs_pipeline setup` through
Kibana's import API (`POST /api/saved_objects/_import?overwrite=true`, multipart, `kbn-xsrf`).

Shapes follow Kibana's own 8.x exports: data views are `index-pattern` objects; dashboards hold
Lens panels by value (`panelsJSON`, `embeddableConfig.attributes` with a `formBased` layer per
chart, each layer naming its data view in `references` as
`indexpattern-datasource-layer-<layer id>`); saved searches are `search` objects whose data view
is the reference `kibanaSavedObjectMeta.searchSourceJSON.index`.

A panel's KQL query (`state.query`) picks its documents: `ml-api-perfs` holds request and
function documents (`kind`), so every panel on it names the kind it charts, or counts would mix.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx

from inferlog.kibana_links import data_view_id
from logs_pipeline.filter import PREDICTION_ROUTES
from logs_pipeline.indexer import IndexNames

log = logging.getLogger(__name__)

SAVED_OBJECTS_FILE = Path(__file__).parent / "kibana" / "saved_objects.ndjson"
CORE_MIGRATION_VERSION = "8.8.0"
PANEL_VERSION = "8.11.0"
DOCUMENTED_TYPES = {"index-pattern", "dashboard", "search"}

# Which documents a panel charts (KQL). `NOT kind : "function"` rather than `kind : "request"`:
# request documents indexed before `kind` existed still count.
REQUESTS = 'NOT kind : "function"'
FUNCTIONS = 'kind : "function"'
INFERENCES = "ml.profile.profiled : *"  # records of requests that reached the model
UNPROFILED = "ml.profile.profiled : false"


def route_query(route: str) -> str:
    return f'url.path : "{route}"'


def data_view(index: str) -> dict[str, Any]:
    return {
        "id": data_view_id(index),
        "type": "index-pattern",
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "typeMigrationVersion": "7.11.0",
        "attributes": {
            "title": f"{index}*",
            "name": index,
            "timeFieldName": "@timestamp",
            "fields": "[]",
            "fieldAttrs": "{}",
            "runtimeFieldMap": "{}",
            "typeMeta": "{}",
        },
        "references": [],
    }


# -- Lens columns ---------------------------------------------------------------------------


def date_histogram() -> dict[str, Any]:
    return {
        "label": "@timestamp",
        "dataType": "date",
        "operationType": "date_histogram",
        "sourceField": "@timestamp",
        "isBucketed": True,
        "scale": "interval",
        "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False},
    }


def metric(operation: str, field: str | None, label: str, **params: Any) -> dict[str, Any]:
    column: dict[str, Any] = {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": operation,
        "isBucketed": False,
        "scale": "ratio",
        "sourceField": field or "___records___",
        "params": params,
    }
    return column


def terms(
    field: str, size: int, order_by: str, data_type: str = "string", label: str | None = None
) -> dict[str, Any]:
    """Top values; `data_type` is Kibana's type of the field (keyword: string, boolean...)."""
    column: dict[str, Any] = {
        "label": label or f"Top {size} values of {field}",
        "dataType": data_type,
        "operationType": "terms",
        "sourceField": field,
        "isBucketed": True,
        "scale": "ordinal",
        "params": {
            "size": size,
            "orderBy": {"type": "column", "columnId": order_by},
            "orderDirection": "desc",
            "otherBucket": True,
            "missingBucket": False,
        },
    }
    if label:
        column["customLabel"] = True
    return column


def histogram(field: str) -> dict[str, Any]:
    return {
        "label": field,
        "dataType": "number",
        "operationType": "range",
        "sourceField": field,
        "isBucketed": True,
        "scale": "interval",
        "params": {
            "type": "histogram",
            "maxBars": 20,
            "includeEmptyRows": True,
            "ranges": [{"from": 0, "to": 1000, "label": ""}],
        },
    }


# -- Lens panels ----------------------------------------------------------------------------


def layer_of(panel_id: str) -> str:
    return f"{panel_id}-layer"


def lens_panel(
    panel_id: str,
    title: str,
    grid: tuple[int, int, int, int],
    index: str,
    columns: dict[str, dict[str, Any]],
    visualization_type: str,
    visualization: dict[str, Any],
    query: str = "",
) -> dict[str, Any]:
    layer_id = layer_of(panel_id)
    x, y, w, h = grid
    return {
        "version": PANEL_VERSION,
        "type": "lens",
        "gridData": {"x": x, "y": y, "w": w, "h": h, "i": panel_id},
        "panelIndex": panel_id,
        "title": title,
        "embeddableConfig": {
            "attributes": {
                "title": title,
                "description": "",
                "visualizationType": visualization_type,
                "type": "lens",
                "references": [
                    {
                        "type": "index-pattern",
                        "id": data_view_id(index),
                        "name": f"indexpattern-datasource-layer-{layer_id}",
                    }
                ],
                "state": {
                    "visualization": visualization,
                    "query": {"query": query, "language": "kuery"},
                    "filters": [],
                    "datasourceStates": {
                        "formBased": {
                            "layers": {
                                layer_id: {
                                    "columns": columns,
                                    "columnOrder": list(columns),
                                    "incompleteColumns": {},
                                }
                            }
                        }
                    },
                    "internalReferences": [],
                    "adHocDataViews": {},
                },
            },
            "enhancements": {},
        },
    }


def pie(layer_id: str, groups: list[str], metric_id: str) -> dict[str, Any]:
    return {
        "shape": "donut",
        "layers": [
            {
                "layerId": layer_id,
                "layerType": "data",
                "primaryGroups": groups,
                "metrics": [metric_id],
                "numberDisplay": "percent",
                "categoryDisplay": "default",
                "legendDisplay": "default",
            }
        ],
    }


def xy(
    series: str, layer_id: str, x: str, accessors: list[str], split: str | None = None
) -> dict[str, Any]:
    layer: dict[str, Any] = {
        "layerId": layer_id,
        "layerType": "data",
        "seriesType": series,
        "xAccessor": x,
        "accessors": accessors,
    }
    if split:
        layer["splitAccessor"] = split
    return {
        "legend": {"isVisible": True, "position": "right"},
        "valueLabels": "hide",
        "preferredSeriesType": series,
        "fittingFunction": "None",
        "axisTitlesVisibilitySettings": {"x": True, "yLeft": True, "yRight": True},
        "layers": [layer],
    }


def xy_panel(
    panel_id: str,
    title: str,
    grid: tuple[int, int, int, int],
    index: str,
    series: str,
    columns: dict[str, dict[str, Any]],
    x: str,
    split: str | None = None,
    query: str = "",
) -> dict[str, Any]:
    accessors = [c for c, col in columns.items() if not col["isBucketed"]]
    layer_id = layer_of(panel_id)
    visualization = xy(series, layer_id, x, accessors, split)
    return lens_panel(panel_id, title, grid, index, columns, "lnsXY", visualization, query)


def dashboard(
    object_id: str, title: str, description: str, panels: list[dict[str, Any]]
) -> dict[str, Any]:
    references = [
        {**ref, "name": f"{panel['panelIndex']}:{ref['name']}"}
        for panel in panels
        for ref in panel["embeddableConfig"]["attributes"]["references"]
    ]
    return {
        "id": object_id,
        "type": "dashboard",
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "typeMigrationVersion": "8.9.0",
        "attributes": {
            "title": title,
            "description": description,
            "panelsJSON": json.dumps(panels),
            "optionsJSON": json.dumps(
                {
                    "useMargins": True,
                    "syncColors": False,
                    "syncCursor": True,
                    "syncTooltips": False,
                    "hidePanelTitles": False,
                }
            ),
            "timeRestore": True,
            "timeFrom": "now-1h",
            "timeTo": "now",
            "refreshInterval": {"pause": False, "value": 10_000},
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": json.dumps(
                    {"query": {"query": "", "language": "kuery"}, "filter": []}
                )
            },
        },
        "references": references,
    }


def saved_search(
    object_id: str, title: str, index: str, query: str, columns: list[str]
) -> dict[str, Any]:
    return {
        "id": object_id,
        "type": "search",
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "typeMigrationVersion": "7.9.3",
        "attributes": {
            "title": title,
            "description": "",
            "columns": columns,
            "sort": [["@timestamp", "desc"]],
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": json.dumps(
                    {
                        "query": {"query": query, "language": "kuery"},
                        "filter": [],
                        "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index",
                    }
                )
            },
        },
        "references": [
            {
                "name": "kibanaSavedObjectMeta.searchSourceJSON.index",
                "type": "index-pattern",
                "id": data_view_id(index),
            }
        ],
    }


def latency_columns(field: str) -> dict[str, dict[str, Any]]:
    return {
        "t": date_histogram(),
        **{
            f"p{n}": metric("percentile", field, f"p{n} latency (ms)", percentile=n)
            for n in (50, 95, 99)
        },
    }


def hot_functions(
    panel_id: str, title: str, grid: tuple[int, int, int, int], perfs: str, ranking: str
) -> dict[str, Any]:
    """Top 10 functions by the time they took over the period: a sum, over requests, of each
    request's top 5 (`by_self`: self time; `by_cumulative`: cumulative time of callees), so a
    function hot in every request weighs more than one hot once."""
    field, label = {
        "by_self": ("tottime_ms", "total self time (ms)"),
        "by_cumulative": ("cumtime_ms", "total cumulative time (ms)"),
    }[ranking]
    columns = {
        "fn": terms(f"function.{ranking}.name", 10, "time", label="function"),
        "time": metric("sum", f"function.{ranking}.{field}", label),
    }
    return xy_panel(panel_id, title, grid, perfs, "bar_horizontal", columns, "fn", query=FUNCTIONS)


def performance_dashboard(perfs: str, logs: str) -> dict[str, Any]:
    cpu = {
        "t": date_histogram(),
        "cpu": metric("average", "profile.cpu_ms", "mean CPU time (ms)"),
        "inference": metric("average", "profile.inference_ms", "mean inference (ms)"),
    }
    rss = {"t": date_histogram(), "rss": metric("max", "profile.rss_mb", "RSS (MB)")}
    calls = {
        "t": date_histogram(),
        "calls": metric("average", "profile.function_calls", "function calls per request"),
    }
    profiled = {
        "profiled": terms("ml.profile.profiled", 2, "n", "boolean", label="profiled"),
        "n": metric("count", None, "requests"),
    }
    reasons = {
        "reason": terms("ml.profile.reason", 5, "n", label="why not profiled"),
        "n": metric("count", None, "requests"),
    }
    panels = [
        xy_panel(
            "latency",
            "Latency p50 / p95 / p99 (profiled requests)",
            (0, 0, 48, 12),
            perfs,
            "line",
            latency_columns("profile.latency_ms"),
            "t",
            query=REQUESTS,
        ),
        # Every inference request, profiled or not, from ml-api-logs: profiling slows a request
        # down and may be sampled, so the profiled ones alone would misstate a route's latency.
        *(
            xy_panel(
                f"latency-{route.strip('/').replace('/', '-')}",
                f"Latency of {route} p50 / p95 / p99",
                (16 * n, 12, 16, 12),
                logs,
                "line",
                latency_columns("ml.profile.latency_ms"),
                "t",
                query=route_query(route),
            )
            for n, route in enumerate(PREDICTION_ROUTES)
        ),
        xy_panel(
            "cpu",
            "CPU time and inference time",
            (0, 24, 24, 12),
            perfs,
            "line",
            cpu,
            "t",
            query=REQUESTS,
        ),
        xy_panel(
            "rss", "Resident memory", (24, 24, 24, 12), perfs, "line", rss, "t", query=REQUESTS
        ),
        xy_panel(
            "calls",
            "Python function calls",
            (0, 36, 16, 12),
            perfs,
            "line",
            calls,
            "t",
            query=REQUESTS,
        ),
        lens_panel(
            "profiled",
            "Profiled share of inferences",
            (16, 36, 16, 12),
            logs,
            profiled,
            "lnsPie",
            pie(layer_of("profiled"), ["profiled"], "n"),
            query=INFERENCES,
        ),
        xy_panel(
            "unprofiled",
            "Why inferences were not profiled",
            (32, 36, 16, 12),
            logs,
            "bar_horizontal",
            reasons,
            "reason",
            query=UNPROFILED,
        ),
        hot_functions(
            "hottest-self",
            "Hottest functions by self time (tottime)",
            (0, 48, 24, 15),
            perfs,
            "by_self",
        ),
        hot_functions(
            "hottest-cumulative",
            "Hottest functions by cumulative time (profiled call excluded)",
            (24, 48, 24, 15),
            perfs,
            "by_cumulative",
        ),
    ]
    return dashboard(
        "inferlog-inference-performance",
        "Inference performance",
        "Latency percentiles per route, CPU, memory, call counts, profiled share and the "
        "hottest functions of profiled requests.",
        panels,
    )


def predictions_dashboard(message: str) -> dict[str, Any]:
    volume = {
        "t": date_histogram(),
        "label": terms("prediction.label", 2, "n"),
        "n": metric("count", None, "cases"),
    }
    labels = {"label": terms("prediction.label", 2, "n"), "n": metric("count", None, "cases")}
    probability = {
        "p": histogram("prediction.probability"),
        "n": metric("count", None, "cases"),
    }
    risk = {"risk": terms("prediction.risk_level", 3, "n"), "n": metric("count", None, "cases")}
    panels = [
        xy_panel(
            "volume",
            "Predictions over time",
            (0, 0, 32, 12),
            message,
            "bar_stacked",
            volume,
            "t",
            "label",
        ),
        lens_panel(
            "labels",
            "Label split",
            (32, 0, 16, 12),
            message,
            labels,
            "lnsPie",
            pie(layer_of("labels"), ["label"], "n"),
        ),
        xy_panel(
            "probability",
            "Probability of malignancy",
            (0, 12, 24, 12),
            message,
            "bar",
            probability,
            "p",
        ),
        xy_panel("risk", "Risk levels", (24, 12, 24, 12), message, "bar", risk, "risk"),
    ]
    for n, feature in enumerate(("radius_mean", "texture_mean", "concave_points_worst")):
        columns = {
            "v": histogram(f"input.{feature}"),
            "n": metric("count", None, "cases"),
        }
        panels.append(
            xy_panel(
                f"input-{feature}",
                f"Input distribution: {feature}",
                (16 * n, 24, 16, 12),
                message,
                "bar",
                columns,
                "v",
            )
        )
    return dashboard(
        "inferlog-predictions",
        "Predictions",
        "Volume, label split, probabilities, risk levels and input distributions of cases.",
        panels,
    )


def saved_objects(names: IndexNames | None = None) -> list[dict[str, Any]]:
    names = names or IndexNames.default()
    return [
        data_view(names.logs),
        data_view(names.message),
        data_view(names.perfs),
        saved_search(
            "inferlog-errors",
            "Errors",
            names.logs,
            "http.response.status_code >= 400",
            ["url.path", "http.response.status_code", "error.type", "error.message"],
        ),
        saved_search(
            "inferlog-slow-requests",
            "Slow requests",
            names.logs,
            "event.duration > 50000000",
            ["url.path", "http.response.status_code", "event.duration", "message"],
        ),
        performance_dashboard(names.perfs, names.logs),
        predictions_dashboard(names.message),
    ]


def to_ndjson(objects: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(o, sort_keys=True) + "\n" for o in objects)


def import_saved_objects(
    kibana_url: str, auth: tuple[str, str] | None, payload: str, wait_seconds: float = 300
) -> int:
    """Wait for Kibana, then import (overwriting); returns how many objects it took."""
    with httpx.Client(base_url=kibana_url, auth=auth, timeout=30) as client:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                if client.get("/api/status").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Kibana at {kibana_url} not available after {wait_seconds:.0f} s"
                )
            log.info("waiting for Kibana at %s", kibana_url)
            time.sleep(5)
        response = client.post(
            "/api/saved_objects/_import",
            params={"overwrite": "true"},
            headers={"kbn-xsrf": "true"},
            files={"file": ("saved_objects.ndjson", payload, "application/ndjson")},
        )
        response.raise_for_status()
        result = response.json()
        if not result.get("success"):
            raise RuntimeError(f"Kibana refused some saved objects: {result.get('errors')}")
        return int(result.get("successCount", 0))


if __name__ == "__main__":  # regenerate the committed file after changing this module
    SAVED_OBJECTS_FILE.write_text(to_ndjson(saved_objects()))
