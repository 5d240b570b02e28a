"""The Kibana saved objects (Kibana cannot run here): structure, references, and what Kibana
itself would check before drawing a panel, on the committed ndjson file:
- each Lens column's operation is one Lens offers for the field's type, on an aggregatable
  field, as Kibana derives both from the mappings (field capabilities);
- each panel's documents exist: the indexer, given records like the API's, produces documents
  that the panel's query selects and that hold every field the panel charts."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, NamedTuple

import pytest

from inferlog.kibana_links import data_view_id
from inferlog.ml.predictor import Predictor
from logs_pipeline.filter import PREDICTION_ROUTES, RecordFilter
from logs_pipeline.indexer import Indexer, IndexNames
from logs_pipeline.kibana import (
    DOCUMENTED_TYPES,
    SAVED_OBJECTS_FILE,
    import_saved_objects,
    saved_objects,
    to_ndjson,
)
from logs_pipeline.sinks import source_json
from logs_pipeline.templates import index_templates
from tests.records import record

OBJECTS = [json.loads(line) for line in SAVED_OBJECTS_FILE.read_text().splitlines()]
BY_ID = {(o["type"], o["id"]): o for o in OBJECTS}
NAMES = IndexNames.default()


class Field(NamedTuple):
    type: str  # Kibana's field type: string, number, date, boolean, ip
    aggregatable: bool


# Elasticsearch field type -> Kibana field type (the kbn-field-types table, for what we map).
KIBANA_TYPES = {
    **dict.fromkeys(["keyword", "text", "match_only_text", "wildcard"], "string"),
    **dict.fromkeys(
        ["long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float"],
        "number",
    ),
    **dict.fromkeys(["date", "date_nanos"], "date"),
    "boolean": "boolean",
    "ip": "ip",
}


def kibana_fields(properties: dict[str, Any], prefix: str = "") -> dict[str, Field]:
    """The fields a data view lists for a mapping, as field capabilities report them: an object
    with `enabled: false` has no fields; `text` is not aggregatable (no fielddata); a field
    without doc values is not aggregatable. Fields that only a dynamic template would create do
    not exist until a document has them, so a panel must not chart them."""
    fields: dict[str, Field] = {}
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            fields |= kibana_fields(spec["properties"], f"{path}.")
        elif spec.get("type", "object") == "object":
            continue  # `enabled: false`, or a dynamic object: nothing to chart
        else:
            aggregatable = spec["type"] != "text" and spec.get("doc_values", True)
            fields[path] = Field(KIBANA_TYPES[spec["type"]], aggregatable)
    return fields


TEMPLATES = index_templates(NAMES)
FIELDS = {
    data_view_id(index): kibana_fields(body["template"]["mappings"]["properties"])
    for index, body in TEMPLATES.items()
}

# Lens operation -> the field types it offers (x-pack/plugins/lens/.../operations/definitions),
# and the column's data type Kibana would store for it (None: the field's own type).
OPERATIONS: dict[str, tuple[set[str], str | None]] = {
    "date_histogram": ({"date"}, "date"),
    "terms": ({"string", "boolean", "number", "ip"}, None),
    "range": ({"number"}, "number"),
    "percentile": ({"number"}, "number"),
    "median": ({"number"}, "number"),
    "average": ({"number"}, "number"),
    "sum": ({"number"}, "number"),
    "standard_deviation": ({"number"}, "number"),
    "min": ({"number", "date"}, None),
    "max": ({"number", "date"}, None),
    "unique_count": ({"string", "boolean", "number", "ip", "date"}, "number"),
    "count": ({"string", "boolean", "number", "ip", "date"}, "number"),
}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return json.loads(dashboard["attributes"]["panelsJSON"])


def lens_panels() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{o['id']}:{p['panelIndex']}", p)
        for o in OBJECTS
        if o["type"] == "dashboard"
        for p in panels(o)
    ]


def layers(panel: dict[str, Any]) -> dict[str, Any]:
    return panel["embeddableConfig"]["attributes"]["state"]["datasourceStates"]["formBased"][
        "layers"
    ]


def data_view_of(panel: dict[str, Any]) -> str:
    (reference,) = panel["embeddableConfig"]["attributes"]["references"]
    return reference["id"]


def query_of(panel: dict[str, Any]) -> str:
    query = panel["embeddableConfig"]["attributes"]["state"]["query"]
    assert query["language"] == "kuery"
    return query["query"]


def charted_fields(panel: dict[str, Any]) -> set[str]:
    return {
        column["sourceField"]
        for layer in layers(panel).values()
        for column in layer["columns"].values()
        if column["sourceField"] != "___records___"
    }


def test_the_committed_file_is_what_the_builder_makes() -> None:
    # After changing logs_pipeline/kibana.py: uv run python -m logs_pipeline.kibana
    assert SAVED_OBJECTS_FILE.read_text() == to_ndjson(saved_objects())


def test_every_line_is_a_saved_object_of_a_documented_type() -> None:
    assert OBJECTS
    for obj in OBJECTS:
        assert obj["type"] in DOCUMENTED_TYPES
        assert obj["id"]
        assert obj["attributes"]["title"]
        assert isinstance(obj["references"], list)
    assert len(BY_ID) == len(OBJECTS)


def test_data_views_name_the_three_indices_with_their_time_field() -> None:
    views = {o["attributes"]["title"]: o for o in OBJECTS if o["type"] == "index-pattern"}
    assert set(views) == {"ml-api-logs*", "ml-api-message*", "ml-api-perfs*"}
    assert {v["attributes"]["timeFieldName"] for v in views.values()} == {"@timestamp"}


def test_dashboards_and_saved_searches_are_there() -> None:
    titles = {(o["type"], o["attributes"]["title"]) for o in OBJECTS}
    assert {
        ("dashboard", "Inference performance"),
        ("dashboard", "Predictions"),
        ("search", "Errors"),
        ("search", "Slow requests"),
    } <= titles


def all_references(obj: dict[str, Any]) -> list[dict[str, Any]]:
    references = list(obj["references"])
    if obj["type"] == "dashboard":
        for panel in panels(obj):
            references += panel["embeddableConfig"]["attributes"]["references"]
    return references


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: o["id"])
def test_every_reference_resolves_within_the_set(obj: dict[str, Any]) -> None:
    for reference in all_references(obj):
        assert (reference["type"], reference["id"]) in BY_ID, reference


@pytest.mark.parametrize(
    "dashboard", [o for o in OBJECTS if o["type"] == "dashboard"], ids=lambda o: o["id"]
)
def test_lens_panels_are_wired_to_their_layers(dashboard: dict[str, Any]) -> None:
    top_level = {r["name"] for r in dashboard["references"]}
    for panel in panels(dashboard):
        attributes = panel["embeddableConfig"]["attributes"]
        assert panel["type"] == "lens"
        assert attributes["visualizationType"] in {"lnsXY", "lnsPie"}
        (reference,) = attributes["references"]
        assert f"{panel['panelIndex']}:{reference['name']}" in top_level
        for layer_id, layer in layers(panel).items():
            assert reference["name"] == f"indexpattern-datasource-layer-{layer_id}"
            assert layer["columnOrder"] == list(layer["columns"])
        for vis_layer in attributes["state"]["visualization"]["layers"]:
            used = [vis_layer.get("xAccessor"), vis_layer.get("splitAccessor")]
            used += vis_layer.get("accessors", []) + vis_layer.get("metrics", [])
            used += vis_layer.get("primaryGroups", [])
            assert {c for c in used if c} <= set(layers(panel)[vis_layer["layerId"]]["columns"])


@pytest.mark.parametrize(
    ("name", "panel"), lens_panels(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_each_column_is_an_operation_kibana_offers_for_its_field(
    name: str, panel: dict[str, Any]
) -> None:
    fields = FIELDS[data_view_of(panel)]
    for layer in layers(panel).values():
        for column_id, column in layer["columns"].items():
            where = f"{name}/{column_id}"
            operation = column["operationType"]
            assert operation in OPERATIONS, f"{where}: {operation} is not checked here"
            types, data_type = OPERATIONS[operation]
            if column["sourceField"] == "___records___":
                assert operation == "count", where
                continue
            field = fields.get(column["sourceField"])
            assert field is not None, f"{where}: {column['sourceField']} is not a mapped field"
            assert field.aggregatable, f"{where}: {column['sourceField']} is not aggregatable"
            assert field.type in types, f"{where}: {operation} on a {field.type} field"
            assert column["dataType"] == (data_type or field.type), where
            assert column["isBucketed"] == (operation in {"date_histogram", "terms", "range"})
            if operation == "percentile":
                percentile = column["params"]["percentile"]
                assert isinstance(percentile, int), where
                assert 1 <= percentile <= 99, where
            if operation == "terms":
                order = column["params"]["orderBy"]
                if order["type"] == "column":
                    assert not layer["columns"][order["columnId"]]["isBucketed"], where


def test_every_panel_on_the_perfs_index_says_which_kind_of_document_it_charts() -> None:
    """Request and function documents share ml-api-perfs: a panel over both would count a
    profiled request eleven times."""
    perfs = data_view_id(NAMES.perfs)
    on_perfs = [(n, p) for n, p in lens_panels() if data_view_of(p) == perfs]
    assert on_perfs
    for name, panel in on_perfs:
        assert re.search(r'\bkind : "(function|request)"', query_of(panel)), name


# -- the panels' documents, from records built like the API builds them -----------------------


@pytest.fixture(scope="module")
def documents(predictor: Predictor) -> dict[str, list[dict[str, Any]]]:
    """Data view id -> the `_source`s the indexer makes of a little of every kind of traffic,
    as the sink writes them."""
    records = [
        record(predictor, route, cases=3 if "batch" in route else 1) for route in PREDICTION_ROUTES
    ]
    records += [
        record(predictor, "/predict", profiled=False),
        record(predictor, "/predict", status=422),
    ]
    indexer = Indexer(NAMES, RecordFilter())
    by_view: dict[str, list[dict[str, Any]]] = {}
    for one in records:
        for action in indexer.documents(one):
            source = json.loads(source_json(action))
            by_view.setdefault(data_view_id(action["_index"]), []).append(source)
    return by_view


def values(document: Any, path: str) -> list[Any]:
    """The values at a dotted path; lists of objects flatten, as Elasticsearch indexes them."""
    if isinstance(document, list):
        return [v for item in document for v in values(item, path)]
    if not path:
        return [] if document is None else [document]
    if not isinstance(document, dict):
        return []
    head, _, rest = path.partition(".")
    if head in document:
        return values(document[head], rest)
    # `@timestamp`-like names or dotted keys kept whole.
    return [] if path not in document else values(document[path], "")


_CLAUSE = re.compile(r'^(not\s+)?([\w.@]+)\s*:\s*(\*|"[^"]*"|true|false|-?\d+(?:\.\d+)?)$', re.I)


def kql_matches(query: str, document: dict[str, Any]) -> bool:
    """The KQL the dashboards use: `field : value` / `field : *` clauses, `not`, `and`."""
    if not query.strip():
        return True
    for clause in re.split(r"\s+and\s+", query.strip(), flags=re.I):
        match = _CLAUSE.match(clause.strip())
        assert match, f"KQL this test cannot evaluate: {clause!r}"
        negated, field, raw = match.groups()
        found = values(document, field)
        hit = bool(found) if raw == "*" else json.loads(raw) in found
        if hit == bool(negated):
            return False
    return True


@pytest.mark.parametrize(
    ("name", "panel"), lens_panels(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_each_panel_has_documents_holding_every_field_it_charts(
    name: str, panel: dict[str, Any], documents: dict[str, list[dict[str, Any]]]
) -> None:
    query = query_of(panel)
    chosen = [d for d in documents[data_view_of(panel)] if kql_matches(query, d)]
    assert chosen, f"{name}: no document matches {query!r}"
    for field in charted_fields(panel):
        assert any(values(d, field) for d in chosen), f"{name}: no {field} in its documents"


def test_the_cumulative_time_panel_leaves_the_profiled_call_out(
    documents: dict[str, list[dict[str, Any]]],
) -> None:
    logs = documents[data_view_id(NAMES.logs)]
    profiles = [
        d["ml"]["profile"] for d in logs if d.get("ml", {}).get("profile", {}).get("profiled")
    ]
    roots = {p["top_functions"][0]["function"] for p in profiles}
    assert roots == {"predict"}  # each profile's first function: the model call, all of it
    by_title = {p["title"]: p for _, p in lens_panels()}
    panel = by_title["Hottest functions by cumulative time (profiled call excluded)"]
    (field,) = [f for f in charted_fields(panel) if f.endswith(".name")]
    perfs = documents[data_view_id(NAMES.perfs)]
    charted = {v for d in perfs if kql_matches(query_of(panel), d) for v in values(d, field)}
    assert len(charted) >= 5
    assert "inferlog.ml.predictor:predict" not in charted


def test_saved_searches_query_fields_the_templates_map() -> None:
    for obj in (o for o in OBJECTS if o["type"] == "search"):
        (reference,) = obj["references"]
        for column in obj["attributes"]["columns"]:
            assert column in FIELDS[reference["id"]], column
        source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        assert source["indexRefName"] == reference["name"]
        field = source["query"]["query"].split()[0]
        assert field in FIELDS[reference["id"]]


def test_setup_imports_through_the_documented_api() -> None:
    """A stand-in for Kibana's import endpoint: the request must carry what the API asks for."""
    seen: dict[str, Any] = {}

    class Kibana(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return

        def _reply(self, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._reply({"status": {"overall": {"level": "available"}}})

        def do_POST(self) -> None:
            seen["path"] = self.path
            seen["xsrf"] = self.headers.get("kbn-xsrf")
            seen["type"] = self.headers.get("Content-Type")
            seen["body"] = self.rfile.read(int(self.headers["Content-Length"])).decode()
            self._reply({"success": True, "successCount": len(OBJECTS)})

    server = HTTPServer(("127.0.0.1", 0), Kibana)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        count = import_saved_objects(url, ("elastic", "pw"), SAVED_OBJECTS_FILE.read_text(), 5)
    finally:
        server.shutdown()
        server.server_close()
    assert count == len(OBJECTS)
    assert seen["path"] == "/api/saved_objects/_import?overwrite=true"
    assert seen["xsrf"] == "true"
    assert seen["type"].startswith("multipart/form-data")
    assert 'name="file"; filename="saved_objects.ndjson"' in seen["body"]
    assert '"inferlog-predictions"' in seen["body"]
