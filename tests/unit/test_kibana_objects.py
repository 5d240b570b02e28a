"""The Kibana saved objects (Kibana cannot run here): structure, references, and fields that
exist in the index templates, checked on the committed ndjson file."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from logs_pipeline.indexer import IndexNames
from logs_pipeline.kibana import (
    DOCUMENTED_TYPES,
    SAVED_OBJECTS_FILE,
    import_saved_objects,
    saved_objects,
    to_ndjson,
)
from logs_pipeline.templates import index_templates

OBJECTS = [json.loads(line) for line in SAVED_OBJECTS_FILE.read_text().splitlines()]
BY_ID = {(o["type"], o["id"]): o for o in OBJECTS}


def mapped_fields(properties: dict[str, Any], prefix: str = "") -> set[str]:
    fields = set()
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            fields |= mapped_fields(spec["properties"], f"{path}.")
        else:
            fields.add(path)
    return fields


TEMPLATES = index_templates(IndexNames())
FIELDS = {
    f"inferlog-{index}": mapped_fields(body["template"]["mappings"]["properties"])
    for index, body in TEMPLATES.items()
}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return json.loads(dashboard["attributes"]["panelsJSON"])


def test_the_committed_file_is_what_the_builder_makes() -> None:
    # After changing logs_pipeline/kibana.py: uv run python -m logs_pipeline.kibana
    assert SAVED_OBJECTS_FILE.read_text() == to_ndjson(saved_objects())


def test_every_line_is_a_saved_object_of_a_documented_type() -> None:
    assert OBJECTS
    for obj in OBJECTS:
        assert obj["type"] in DOCUMENTED_TYPES
        assert obj["id"] and obj["attributes"]["title"]
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
def test_lens_panels_chart_fields_the_templates_map(dashboard: dict[str, Any]) -> None:
    top_level = {r["name"] for r in dashboard["references"]}
    for panel in panels(dashboard):
        attributes = panel["embeddableConfig"]["attributes"]
        assert panel["type"] == "lens" and attributes["visualizationType"] in {"lnsXY", "lnsPie"}
        layers = attributes["state"]["datasourceStates"]["formBased"]["layers"]
        (reference,) = attributes["references"]
        assert f"{panel['panelIndex']}:{reference['name']}" in top_level
        for layer_id, layer in layers.items():
            assert reference["name"] == f"indexpattern-datasource-layer-{layer_id}"
            assert layer["columnOrder"] == list(layer["columns"])
            for column in layer["columns"].values():
                field = column["sourceField"]
                assert field == "___records___" or field in FIELDS[reference["id"]], field
        visualization = attributes["state"]["visualization"]
        for vis_layer in visualization["layers"]:
            used = [vis_layer.get("xAccessor"), vis_layer.get("splitAccessor")]
            used += vis_layer.get("accessors", []) + vis_layer.get("metrics", [])
            used += vis_layer.get("primaryGroups", [])
            assert {c for c in used if c} <= set(layers[vis_layer["layerId"]]["columns"])


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
