"""Who may read the records: read routes need a key once keys are configured."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from inferlog.api.app import create_app
from inferlog.config import Settings
from inferlog.ml.predictor import Predictor
from tests.integration.test_telemetry import MALIGNANT, make_settings, wait_shipped
from tests.servers import RedisServer

ADMIN, READER = "admin-key", "read-key"
READ_ROUTES = ["/logs", "/logs/stats", "/drift", "/logs/some-transaction", "/logs?transaction_id=x"]
OPEN_ROUTES = ["/health", "/ready", "/model-info", "/docs", "/openapi.json", "/metrics"]


def app_client(
    redis_server: RedisServer, model_dir: Path, tmp_path: Path, predictor: Predictor, **keys: Any
) -> TestClient:
    settings = make_settings(model_dir, tmp_path, redis_server.url, **({"api_keys": []} | keys))
    return TestClient(create_app(settings, predictor), raise_server_exceptions=False)


@pytest.fixture
def keyed(
    redis_server: RedisServer, model_dir: Path, tmp_path: Path, predictor: Predictor
) -> Iterator[TestClient]:
    with app_client(
        redis_server, model_dir, tmp_path, predictor, api_keys=ADMIN, api_read_keys=READER
    ) as client:
        yield client


@pytest.mark.parametrize("route", READ_ROUTES)
def test_read_routes_answer_401_without_a_key_and_403_with_a_wrong_one(
    keyed: TestClient, route: str
) -> None:
    missing = keyed.get(route)
    assert missing.status_code == 401, missing.text
    assert missing.json()["message"] == "missing X-API-Key header"
    wrong = keyed.get(route, headers={"X-API-Key": "not-a-key"})
    assert wrong.status_code == 403
    assert "read or admin" in wrong.json()["message"]


@pytest.mark.parametrize("key", [READER, ADMIN])
def test_a_read_key_or_an_admin_key_reads_the_records(keyed: TestClient, key: str) -> None:
    sent = keyed.post("/predict", json=MALIGNANT)  # prediction routes stay open by default
    assert sent.status_code == 200
    wait_shipped(keyed.app)  # type: ignore[arg-type]
    tid = sent.headers["x-transaction-id"]
    headers = {"X-API-Key": key}
    assert keyed.get(f"/logs/{tid}", headers=headers).json()["transaction"]["id"] == tid
    assert keyed.get("/logs?path=/predict", headers=headers).json()["count"] == 1
    assert keyed.get("/logs/stats", headers=headers).json()["predictions"] == 1
    assert keyed.get("/drift", headers=headers).json()["cases"] == 1


def test_only_an_admin_key_deletes(keyed: TestClient) -> None:
    assert keyed.delete("/logs", headers={"X-API-Key": READER}).status_code == 403
    assert keyed.delete("/logs", headers={"X-API-Key": ADMIN}).status_code == 200


@pytest.mark.parametrize("route", OPEN_ROUTES)
def test_health_model_info_metrics_and_docs_stay_open(keyed: TestClient, route: str) -> None:
    assert keyed.get(route).status_code == 200


def test_with_no_key_configured_the_local_demo_reads_openly(
    redis_server: RedisServer, model_dir: Path, tmp_path: Path, predictor: Predictor
) -> None:
    with app_client(redis_server, model_dir, tmp_path, predictor) as client:
        for route in READ_ROUTES[:3]:
            assert client.get(route).status_code == 200, route
        refused = client.delete("/logs")  # no key could work: say so, not "missing header"
        assert refused.status_code == 403
        assert "API_KEYS" in refused.json()["message"]


def test_require_api_key_closes_predictions_and_reads_to_clients_without_a_key(
    redis_server: RedisServer, model_dir: Path, tmp_path: Path, predictor: Predictor
) -> None:
    with app_client(
        redis_server, model_dir, tmp_path, predictor, api_read_keys=READER, require_api_key=True
    ) as client:
        assert client.post("/predict", json=MALIGNANT).status_code == 401
        assert client.get("/logs").status_code == 401
        assert client.get("/drift").status_code == 401
        reader = {"X-API-Key": READER}
        assert client.post("/predict", json=MALIGNANT, headers=reader).status_code == 200
        assert client.get("/logs", headers=reader).status_code == 200


def test_require_api_key_without_any_key_is_a_configuration_error(
    model_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError, match="REQUIRE_API_KEY=true needs a key"):
        Settings(model_dir=model_dir, data_dir=tmp_path, require_api_key=True)
