"""The HTTP API, in process: answers, errors, batches and CSV."""

from __future__ import annotations

import csv
import io
import math
import re
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from inferlog.features import FEATURE_NAMES, FEATURES
from inferlog.ml import dataset
from inferlog.ml.predictor import Predictor


def case_from(row: list[float]) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, row, strict=True))


@pytest.fixture(scope="module")
def held_out_cases() -> list[dict[str, float]]:
    return [case_from(row) for row in dataset.split().x_test.tolist()]


def to_csv(cases: list[dict[str, object]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(cases[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(cases)
    return buffer.getvalue()


def test_predict_answers_a_real_malignant_case(client: TestClient, predictor: Predictor) -> None:
    case = dataset.held_out_examples()["malignant"]
    response = client.post("/predict", json=case)
    assert response.status_code == 200
    body = response.json()
    assert body["label"] == "malignant"
    assert body["probability_malignant"] >= body["threshold"] == predictor.threshold
    assert body["risk_level"] in ("MEDIUM", "HIGH")
    assert body["model_version"] == predictor.version
    assert len(body["top_features"]) == 5
    assert body["out_of_range_features"] == []
    assert body["latency_ms"] > 0
    assert body["transaction_id"] == response.headers["x-transaction-id"]


def test_predict_matches_the_model_on_every_held_out_case(
    client: TestClient, held_out_cases: list[dict[str, float]], predictor: Predictor
) -> None:
    expected = predictor.probabilities(dataset.split().x_test)
    for case, p in zip(held_out_cases, expected, strict=True):
        body = client.post("/predict", json=case).json()
        assert body["probability_malignant"] == pytest.approx(p, rel=1e-12)


def test_predict_proba_gives_both_classes_summing_to_one(client: TestClient) -> None:
    body = client.post("/predict_proba", json=dataset.held_out_examples()["benign"]).json()
    probabilities = body["probabilities"]
    assert set(probabilities) == {"malignant", "benign"}
    assert math.isclose(sum(probabilities.values()), 1.0)
    assert probabilities["benign"] > probabilities["malignant"]


def test_a_client_request_id_is_echoed_but_the_transaction_id_is_always_the_servers(
    client: TestClient,
) -> None:
    case = dataset.held_out_examples()["benign"]
    headers = {"X-Request-ID": "client-abc.123"}
    first, second = (client.post("/predict", json=case, headers=headers) for _ in range(2))
    for response in (first, second):
        assert response.headers["x-request-id"] == "client-abc.123"
        assert response.json()["transaction_id"] == response.headers["x-transaction-id"]
        assert (
            str(uuid.UUID(response.headers["x-transaction-id"]))
            == (response.headers["x-transaction-id"])
        )
    assert first.headers["x-transaction-id"] != second.headers["x-transaction-id"]


def test_a_malformed_client_request_id_is_not_echoed(client: TestClient) -> None:
    response = client.get("/health", headers={"X-Request-ID": "bad id; drop table"})
    assert response.headers["x-request-id"] == response.headers["x-transaction-id"]
    assert len(response.headers["x-request-id"]) == 36


def test_missing_unknown_and_impossible_fields_are_each_named(client: TestClient) -> None:
    case: dict[str, object] = dict(dataset.held_out_examples()["malignant"])
    del case["texture_mean"]
    case["radius_mean"] = -1.0
    case["area_worst"] = "big"
    case["shoe_size"] = 42
    response = client.post("/predict", json=case)
    assert response.status_code == 422
    reasons = {e["field"]: e["reason"] for e in response.json()["errors"]}
    assert reasons == {
        "texture_mean": "missing field",
        "radius_mean": "impossible value: must be at least 0.0",
        "area_worst": "not a number",
        "shoe_size": "unknown field",
    }


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused(client: TestClient, token: str) -> None:
    case = dict(dataset.held_out_examples()["malignant"])
    body = ", ".join(f'"{k}": {v!r}' for k, v in case.items() if k != "smoothness_mean")
    raw = "{" + body + f', "smoothness_mean": {token}' + "}"
    response = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "smoothness_mean", "reason": "not a finite number", "index": None, "row": None}
    ]


def test_plausible_values_outside_the_training_range_are_accepted_and_flagged(
    client: TestClient,
) -> None:
    case = {f.name: f.default for f in FEATURES}
    spec = next(f for f in FEATURES if f.name == "area_mean")
    case["area_mean"] = spec.upper * 0.9
    response = client.post("/predict", json=case)
    assert response.status_code == 200
    assert response.json()["out_of_range_features"] == ["area_mean"]


def test_invalid_json_is_a_422_naming_the_body(client: TestClient) -> None:
    response = client.post(
        "/predict", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body"


def test_batch_results_equal_the_same_cases_one_by_one(
    client: TestClient, held_out_cases: list[dict[str, float]]
) -> None:
    cases = held_out_cases[:40]
    batch = client.post("/predict/batch", json=cases)
    assert batch.status_code == 200
    body = batch.json()
    assert body["count"] == 40
    for case, from_batch in zip(cases, body["predictions"], strict=True):
        single = client.post("/predict", json=case).json()
        for key in ("label", "risk_level", "out_of_range_features", "threshold"):
            assert from_batch[key] == single[key]
        assert from_batch["probability_malignant"] == pytest.approx(
            single["probability_malignant"], rel=1e-12
        )
        assert [f["name"] for f in from_batch["top_features"]] == [
            f["name"] for f in single["top_features"]
        ]


def test_batch_errors_give_the_index_and_field_of_each_bad_case(
    client: TestClient, held_out_cases: list[dict[str, float]]
) -> None:
    cases: list[dict[str, object]] = [dict(c) for c in held_out_cases[:5]]
    cases[1]["radius_worst"] = -3
    cases[4]["texture_se"] = None
    response = client.post("/predict/batch", json=cases)
    assert response.status_code == 422
    errors = [(e["index"], e["field"]) for e in response.json()["errors"]]
    assert errors == [(1, "radius_worst"), (4, "texture_se")]


def test_batch_above_the_size_limit_is_refused(
    client: TestClient, held_out_cases: list[dict[str, float]]
) -> None:
    response = client.post("/predict/batch", json=held_out_cases[:51])  # limit is 50 here
    assert response.status_code == 422
    assert "at most 50" in response.json()["errors"][0]["reason"]


def test_empty_batch_is_refused(client: TestClient) -> None:
    response = client.post("/predict/batch", json=[])
    assert response.status_code == 422


def test_csv_batch_answers_csv_with_prediction_columns_appended(
    client: TestClient, held_out_cases: list[dict[str, float]], predictor: Predictor
) -> None:
    cases = held_out_cases[:20]
    response = client.post(
        "/predict/batch", content=to_csv(cases), headers={"content-type": "text/csv"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 20
    json_batch = client.post("/predict/batch", json=cases).json()["predictions"]
    for row, expected in zip(rows, json_batch, strict=True):
        assert row["label"] == expected["label"]
        assert float(row["probability_malignant"]) == pytest.approx(
            expected["probability_malignant"], rel=1e-12
        )
        assert row["risk_level"] == expected["risk_level"]
    assert list(rows[0])[:30] == list(FEATURE_NAMES)


def test_csv_with_bad_rows_lists_each_row_and_column(
    client: TestClient, held_out_cases: list[dict[str, float]]
) -> None:
    cases: list[dict[str, object]] = [dict(c) for c in held_out_cases[:6]]
    cases[0]["radius_mean"] = "abc"
    cases[2]["area_mean"] = -5
    cases[2]["symmetry_se"] = "nan"
    cases[5]["texture_worst"] = ""
    response = client.post(
        "/predict/batch", content=to_csv(cases), headers={"content-type": "text/csv"}
    )
    assert response.status_code == 422
    found = [(e["row"], e["field"]) for e in response.json()["errors"]]
    assert found == [
        (2, "radius_mean"),
        (4, "area_mean"),
        (4, "symmetry_se"),
        (7, "texture_worst"),
    ]


def test_csv_header_problems_are_named(client: TestClient) -> None:
    header = [n for n in FEATURE_NAMES if n != "radius_mean"] + ["patient_name"]
    response = client.post(
        "/predict/batch",
        content=",".join(header) + "\n" + ",".join(["1"] * len(header)) + "\n",
        headers={"content-type": "text/csv"},
    )
    assert response.status_code == 422
    reasons = {(e["field"], e["reason"]) for e in response.json()["errors"]}
    assert reasons == {("patient_name", "unknown column"), ("radius_mean", "missing column")}


def test_unsupported_content_type_is_415(client: TestClient) -> None:
    response = client.post(
        "/predict/batch", content=b"a=1", headers={"content-type": "application/xml"}
    )
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


@pytest.mark.parametrize("route", ["/predict", "/predict_proba", "/predict/batch"])
def test_a_body_above_the_limit_is_413_declared_or_streamed(client: TestClient, route: str) -> None:
    big = b"[" + b" " * 250_000 + b"]"
    declared = client.post(route, content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413
    assert declared.json()["error"] == "body_too_large"
    assert declared.headers["x-transaction-id"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the body is streamed
        for _ in range(25):
            yield b" " * 10_000

    streamed = client.post(route, content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert streamed.json()["error"] == "body_too_large"


def test_unknown_route_and_wrong_method_answer_json(client: TestClient) -> None:
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = client.get("/predict")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"
    # Allow names every method of the path, from every router serving it.
    assert client.put("/logs").headers["allow"] == "DELETE, GET"
    assert client.post("/openapi.json").headers["allow"] == "GET"


def test_an_unexpected_error_is_a_json_500_without_internals(
    app, settings, predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inferlog.api.app import create_app

    broken = create_app(settings, predictor)
    monkeypatch.setattr(predictor, "probabilities", lambda x: 1 / 0)
    with TestClient(broken, raise_server_exceptions=False) as local:
        response = local.post("/predict_proba", json=dataset.held_out_examples()["benign"])
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal_error"
    assert "ZeroDivision" not in response.text
    assert body["transaction_id"] == response.headers["x-transaction-id"]


def test_health_ready_and_root_describe_the_service(
    client: TestClient, predictor: Predictor
) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200  # a telemetry problem never takes the API out of service
    body = ready.json()
    assert body["model_version"] == predictor.version
    # This app's Redis is a closed port: once the shipper has tried it, telemetry is degraded.
    expected = "ready" if body["telemetry"]["healthy"] else "degraded"
    assert body["status"] == expected
    root = client.get("/").json()
    assert root["model_version"] == predictor.version
    assert root["links"]["docs"] == "/docs"


def test_ready_is_503_without_a_model(settings) -> None:
    from inferlog.api.app import create_app

    app = create_app(settings, predictor=None)
    # No lifespan: the model is never loaded, as while a server is still starting.
    local = TestClient(app, raise_server_exceptions=False)
    assert local.get("/ready").status_code == 503
    assert local.post("/predict", json=dataset.held_out_examples()["benign"]).status_code == 503


def test_model_info_has_the_card_and_the_feature_schema(
    client: TestClient, predictor: Predictor
) -> None:
    body = client.get("/model-info").json()
    assert body["model_card"]["version"] == predictor.version
    assert [f["name"] for f in body["features"]] == list(FEATURE_NAMES)
    assert {"label", "unit", "group", "lower", "upper", "default"} <= set(body["features"][0])
    # The training range is what flags a case: its edges are in range, just beyond them not.
    radius = body["features"][0]
    case = dataset.held_out_examples()["benign"]
    for value, flagged in [
        (radius["training_min"], False),
        (radius["training_max"], False),
        (radius["training_max"] * 1.01, True),
    ]:
        answer = client.post("/predict", json={**case, "radius_mean": value}).json()
        assert ("radius_mean" in answer["out_of_range_features"]) is flagged, value


def test_openapi_carries_a_real_example_case(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    example = schema["components"]["schemas"]["Case"]["examples"][0]
    assert example == dataset.held_out_examples()["malignant"]
    batch_body = schema["paths"]["/predict/batch"]["post"]["requestBody"]["content"]
    assert {"application/json", "text/csv"} <= set(batch_body)


def test_examples_are_real_held_out_cases_of_the_asked_label(client: TestClient) -> None:
    malignant = client.get("/examples", params={"n": 3, "label": "malignant"}).json()
    assert malignant == dataset.held_out_cases("malignant")[:3]
    for case in malignant:
        assert client.post("/predict", json=case).status_code == 200


def test_examples_as_csv_feed_the_csv_batch_unchanged(client: TestClient) -> None:
    template = client.get("/examples", params={"n": 4, "format": "csv"})
    assert template.headers["content-type"].startswith("text/csv")
    response = client.post(
        "/predict/batch", content=template.content, headers={"content-type": "text/csv"}
    )
    assert response.status_code == 200
    assert len(response.text.strip().splitlines()) == 5


def test_the_docs_page_loads_only_pinned_scripts_checked_by_integrity(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    tags = re.findall(r"<(script|link)\b([^>]*)>", page.text)
    external = [attrs for _, attrs in tags if "https://" in attrs]
    assert len(external) == 2  # Swagger UI's script and stylesheet
    for attrs in external:
        assert re.search(r"@\d+\.\d+\.\d+/", attrs), attrs  # an exact release, not "@5"
        assert re.search(r'integrity="sha384-[A-Za-z0-9+/]{64}"', attrs), attrs
        assert 'crossorigin="anonymous"' in attrs
    assert "/openapi.json" in page.text
    assert client.get("/redoc").status_code == 404


def test_a_csv_header_of_twenty_thousand_columns_is_refused_in_one_short_answer(
    client: TestClient,
) -> None:
    header = ",".join(f"c{i}" for i in range(20_000))
    response = client.post(
        "/predict/batch", content=f"{header}\n", headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 422
    assert len(response.content) < 2_000  # not one error per column
    (error,) = response.json()["errors"]
    assert "the header has 20000 columns; at most 100" in error["reason"]


def test_a_huge_key_is_cut_in_the_answer_and_problems_beyond_fifty_are_counted(
    client: TestClient,
) -> None:
    case = dataset.held_out_examples()["benign"]
    assert client.post("/predict", json={**case, "k" * 150_000: 1.0}).status_code == 413
    huge = client.post("/predict/batch", json=[{**case, "k" * 150_000: 1.0}])
    assert huge.status_code == 422
    assert len(huge.content) < 4_000
    (unknown,) = [e for e in huge.json()["errors"] if e["reason"] == "unknown field"]
    assert unknown["field"].startswith("kkk")
    assert unknown["field"].endswith("more characters)")
    bad_case = {name: -1.0 for name in FEATURE_NAMES}  # 30 problems per case
    many = client.post("/predict/batch", json=[bad_case] * 10)
    body = many.json()
    assert many.status_code == 422
    assert len(body["errors"]) == 50
    assert body["omitted"] == 10 * 30 - 50
    assert [e["index"] for e in body["errors"]] == [0] * 30 + [1] * 20  # the first, in order
    assert body["message"].startswith("300 invalid field(s)")
    rows = "\n".join([",".join(FEATURE_NAMES), *[",".join(["-1"] * 30)] * 10]) + "\n"
    csv_answer = client.post("/predict/batch", content=rows, headers={"Content-Type": "text/csv"})
    body = csv_answer.json()
    assert csv_answer.status_code == 422
    assert len(body["errors"]) == 50
    assert body["omitted"] == 10 * 30 - 50
    assert [e["row"] for e in body["errors"]] == [2] * 30 + [3] * 20
