"""Telemetry against a real redis-server: one record per request, shipping, outages, /logs."""

from __future__ import annotations

import errno
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from inferlog.api.app import create_app
from inferlog.config import Settings
from inferlog.ml import dataset
from inferlog.ml.predictor import Predictor
from inferlog.telemetry import spool as spool_module
from inferlog.telemetry.keys import sink_problem_key
from inferlog.telemetry.record import SCHEMA, RequestRecord
from tests.servers import TEST_CLIENT_HOSTS, RedisServer, wait_until

ADMIN_KEY = "admin-key-for-tests"
MALIGNANT = dataset.held_out_examples()["malignant"]
BENIGN = dataset.held_out_examples()["benign"]


def make_settings(model_dir: Path, data_dir: Path, redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "model_dir": model_dir,
        "data_dir": data_dir,
        "redis_url": redis_url,
        "redis_stream": f"test:{time.monotonic_ns()}",
        "api_keys": ADMIN_KEY,
        "max_batch_size": 50,
        "allowed_hosts": TEST_CLIENT_HOSTS,
    }
    return Settings(**(values | overrides))


def stream_records(server: RedisServer, stream: str) -> list[dict[str, Any]]:
    return [json.loads(fields["record"]) for _, fields in server.client().xrange(stream)]


def request_id(record: dict[str, Any]) -> str | None:
    """The client's X-Request-ID kept in the record (the transaction id is the server's)."""
    return record["http"]["request"].get("id")


def wait_shipped(app: FastAPI, timeout: float = 20) -> None:
    assert app.state.shipper.wait_idle(timeout), app.state.shipper.counters()


@pytest.fixture
def live(
    redis_server: RedisServer, model_dir: Path, tmp_path: Path, predictor: Predictor
) -> Iterator[tuple[TestClient, FastAPI]]:
    app = create_app(make_settings(model_dir, tmp_path, redis_server.url), predictor)
    # Keys are configured, so the read routes need one.
    with TestClient(app, raise_server_exceptions=False, headers={"X-API-Key": ADMIN_KEY}) as client:
        yield client, app


def test_every_request_yields_exactly_one_valid_record(
    live: tuple[TestClient, FastAPI], redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, app = live
    calls = {
        "ok-predict": lambda h: client.post("/predict", json=MALIGNANT, headers=h),
        "ok-proba": lambda h: client.post("/predict_proba", json=BENIGN, headers=h),
        "ok-batch": lambda h: client.post("/predict/batch", json=[MALIGNANT, BENIGN], headers=h),
        "ok-health": lambda h: client.get("/health", headers=h),
        "bad-422": lambda h: client.post("/predict", json={"radius_mean": -1}, headers=h),
        "bad-404": lambda h: client.get("/nowhere", headers=h),
        "bad-405": lambda h: client.get("/predict", headers=h),
        "bad-415": lambda h: client.post(
            "/predict/batch", content=b"x", headers=h | {"content-type": "text/plain"}
        ),
    }
    statuses = {name: call({"X-Request-ID": name}).status_code for name, call in calls.items()}
    monkeypatch.setattr(app.state.predictor, "probabilities", lambda x: 1 / 0)
    statuses["err-500"] = client.post(
        "/predict_proba", json=BENIGN, headers={"X-Request-ID": "err-500"}
    ).status_code
    wait_shipped(app)

    records = stream_records(redis_server, app.state.settings.redis_stream)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        RequestRecord.model_validate(record)
        by_id.setdefault(request_id(record) or "", []).append(record)
    assert {tid: len(found) for tid, found in by_id.items()} == dict.fromkeys(statuses, 1)
    for tid, status in statuses.items():
        record = by_id[tid][0]
        assert record["schema"] == SCHEMA
        assert record["http"]["response"]["status_code"] == status
        assert record["log"]["level"] == {2: "INFO", 4: "WARNING", 5: "ERROR"}[status // 100]
        assert ("error" in record) == (status >= 400)
    assert by_id["err-500"][0]["error"]["type"] == "ZeroDivisionError"
    assert by_id["bad-422"][0]["error"]["type"] == "validation_error"
    predict = by_id["ok-predict"][0]
    assert predict["ml"]["input"] == MALIGNANT
    assert predict["ml"]["prediction"]["label"] == "malignant"
    assert predict["message"].startswith("POST /predict 200 ")
    assert predict["http"]["request"]["body"]["bytes"] > 0
    assert predict["http"]["response"]["body"]["bytes"] > 0
    batch = by_id["ok-batch"][0]["ml"]
    assert batch["batch_size"] == 2
    assert [p["label"] for p in batch["prediction"]] == ["malignant", "benign"]
    assert by_id["ok-proba"][0]["ml"]["probabilities"]["benign"] > 0.5


def test_a_profiled_record_holds_the_model_call_tree(
    live: tuple[TestClient, FastAPI], redis_server: RedisServer
) -> None:
    client, app = live
    client.post("/predict", json=MALIGNANT, headers={"X-Request-ID": "profiled-1"})
    wait_shipped(app)
    (record,) = stream_records(redis_server, app.state.settings.redis_stream)
    profile = record["ml"]["profile"]
    assert profile["profiled"] is True
    assert profile["function_calls"] >= profile["primitive_calls"] > 10
    top = profile["top_functions"]
    assert 10 < len(top) <= 20  # the top 10 by cumulative time, then by self time
    assert top[0]["function"] == "predict"
    assert top[0]["calls"] == 1
    assert top[0]["file"].endswith("inferlog/ml/predictor.py")
    cumulative = [f["cumtime_ms"] for f in top[:10]]
    assert cumulative == sorted(cumulative, reverse=True)
    assert min(cumulative) >= max(f["cumtime_ms"] for f in top[10:])
    assert 0 < profile["inference_ms"] <= profile["latency_ms"]
    assert profile["cpu_ms"] > 0
    assert profile["rss_mb"] > 10


def test_records_never_contain_api_keys_or_the_redis_url(
    redis_server: RedisServer, model_dir: Path, tmp_path: Path, predictor: Predictor
) -> None:
    settings = make_settings(model_dir, tmp_path, redis_server.url, require_api_key=True)
    app = create_app(settings, predictor)
    with TestClient(app) as client:
        ok = client.post("/predict", json=MALIGNANT, headers={"X-API-Key": ADMIN_KEY})
        assert ok.status_code == 200
        assert client.post("/predict", json=MALIGNANT).status_code == 401
        wait_shipped(app)
    raw = json.dumps(stream_records(redis_server, settings.redis_stream))
    assert ADMIN_KEY not in raw
    # The address as a client would write it: the bare port can occur among a float's digits.
    assert "redis://" not in raw
    assert f"127.0.0.1:{redis_server.port}" not in raw


def test_unsampled_and_disabled_profiling_say_so(
    redis_server: RedisServer, model_dir: Path, tmp_path: Path, predictor: Predictor
) -> None:
    for overrides, reason in (
        ({"profiling_sample_rate": 0.0}, "not sampled"),
        ({"profiling_enabled": False}, "profiling disabled"),
    ):
        settings = make_settings(model_dir, tmp_path, redis_server.url, **overrides)
        app = create_app(settings, predictor)
        with TestClient(app) as client:
            client.post("/predict", json=BENIGN)
            wait_shipped(app)
        (record,) = stream_records(redis_server, settings.redis_stream)
        assert record["ml"]["profile"]["profiled"] is False
        assert record["ml"]["profile"]["reason"] == reason
        assert record["ml"]["profile"]["inference_ms"] > 0


def test_telemetry_off_ships_nothing(
    redis_server: RedisServer, model_dir: Path, tmp_path: Path, predictor: Predictor
) -> None:
    settings = make_settings(model_dir, tmp_path, redis_server.url, telemetry_enabled=False)
    with TestClient(create_app(settings, predictor)) as client:
        assert client.post("/predict", json=BENIGN).status_code == 200
    assert redis_server.client().xlen(settings.redis_stream) == 0


def spool_lines(settings: Settings) -> int:
    return sum(p.read_bytes().count(b"\n") for p in settings.spool_dir.glob("records-*.ndjson"))


def test_redis_down_spools_then_every_record_arrives_in_order_once(
    model_dir: Path, tmp_path: Path, predictor: Predictor
) -> None:
    server = RedisServer(tmp_path / "redis-outage", persistent=True)
    (tmp_path / "redis-outage").mkdir()
    server.start()
    settings = make_settings(model_dir, tmp_path / "data", server.url, shipper_batch_size=7)
    app = create_app(settings, predictor)
    sent: list[str] = []

    def predict(n: int, prefix: str) -> None:
        for i in range(n):
            tid = f"{prefix}-{i:03d}"
            response = client.post("/predict", json=MALIGNANT, headers={"X-Request-ID": tid})
            assert response.status_code == 200
            sent.append(tid)

    try:
        with TestClient(app) as client:
            predict(10, "before")
            wait_shipped(app)
            server.stop()
            predict(1, "noticed")
            wait_until(lambda: not app.state.shipper.counters().redis_available, 10)
            predict(39, "during")
            counters = app.state.shipper.counters()
            assert counters.spooled == 40  # the one waiting when the outage was noticed, too
            assert counters.spool_pending == counters.backlog == 40
            assert counters.in_memory == counters.dropped == 0
            assert spool_lines(settings) == 50  # the 10 shipped ones wait for the segment's end
            ready = client.get("/ready").json()
            assert ready["status"] == "degraded"
            assert ready["telemetry"]["problem"].startswith("Redis unreachable")
            stats = client.get("/logs/stats", headers={"X-API-Key": ADMIN_KEY})
            assert stats.status_code == 200
            assert stats.json()["redis_available"] is False
            assert "Redis is unreachable" in stats.json()["problem"]
            shipper = stats.json()["shipper"]
            assert shipper["spooled"] == shipper["backlog"] == 41  # and the /ready record
            server.start()
            predict(10, "after")
            wait_shipped(app)
            assert app.state.shipper.counters().spool_pending == 0
            assert client.get("/ready").json()["status"] == "ready"
        records = stream_records(server, settings.redis_stream)
        assert [request_id(r) for r in records if request_id(r)] == sent
        assert len(records) == len(sent) + 3  # and the two /ready calls and the /logs/stats
    finally:
        server.stop()


def test_an_api_restart_while_spooled_loses_nothing(
    model_dir: Path, tmp_path: Path, predictor: Predictor
) -> None:
    server = RedisServer(tmp_path / "redis-restart", persistent=True)
    (tmp_path / "redis-restart").mkdir()
    settings = make_settings(model_dir, tmp_path / "data", server.url)
    sent = []
    # Redis never started: everything stays in the spool.
    with TestClient(create_app(settings, predictor)) as client:
        for i in range(12):
            tid = f"spooled-{i:02d}"
            assert client.post("/predict", json=BENIGN, headers={"X-Request-ID": tid}).is_success
            sent.append(tid)
    # Shut down: the spool stays. The next API process takes it over once Redis is up.
    assert spool_lines(settings) == 12
    server.start()
    try:
        app = create_app(settings, predictor)
        with TestClient(app) as client:
            client.get("/health", headers={"X-Request-ID": "after-restart"})
            wait_shipped(app)
            assert app.state.shipper.counters().taken_over == 12
        ids = [request_id(r) for r in stream_records(server, settings.redis_stream)]
        assert ids == [*sent, "after-restart"]
        assert spool_lines(settings) == 0
    finally:
        server.stop()


def test_delete_logs_needs_an_admin_key(live: tuple[TestClient, FastAPI]) -> None:
    client, _ = live
    del client.headers["X-API-Key"]
    missing = client.delete("/logs")
    assert missing.status_code == 401
    assert missing.json()["error"] == "unauthorized"
    assert client.delete("/logs", headers={"X-API-Key": "wrong"}).status_code == 403
    assert client.delete("/logs", headers={"X-API-Key": ADMIN_KEY}).status_code == 200


def test_delete_logs_never_removes_an_unacknowledged_entry(
    live: tuple[TestClient, FastAPI], redis_server: RedisServer
) -> None:
    client, app = live
    settings = app.state.settings
    for i in range(10):
        client.post("/predict", json=BENIGN, headers={"X-Request-ID": f"del-{i}"})
    wait_shipped(app)
    r = redis_server.client()
    r.xgroup_create(settings.redis_stream, settings.redis_group, id="0")
    delivered = r.xreadgroup(settings.redis_group, "c1", {settings.redis_stream: ">"}, count=6)
    delivered_ids = [entry_id for entry_id, _ in delivered[0][1]]
    r.xack(settings.redis_stream, settings.redis_group, *delivered_ids[:4])  # 2 stay pending
    before = [entry_id for entry_id, _ in r.xrange(settings.redis_stream)]

    answer = client.delete("/logs", headers={"X-API-Key": ADMIN_KEY}).json()

    after = [entry_id for entry_id, _ in r.xrange(settings.redis_stream)]
    assert answer == {"removed": 4, "kept": 6}
    # (The DELETE request's own record may have arrived meanwhile: compare the older entries.)
    assert [i for i in after if i in before] == [i for i in before if i not in delivered_ids[:4]]
    assert set(delivered_ids[4:6]) <= set(after)  # pending: delivered, not acknowledged


def test_logs_filters_and_lookup(live: tuple[TestClient, FastAPI]) -> None:
    client, app = live
    found = client.post("/predict", json=MALIGNANT, headers={"X-Request-ID": "find-me"})
    client.post("/predict", json={"radius_mean": -1}, headers={"X-Request-ID": "bad-one"})
    client.get("/health", headers={"X-Request-ID": "health-1"})
    wait_shipped(app)
    newest_first = client.get("/logs").json()["records"]
    assert [request_id(r) for r in newest_first] == ["health-1", "bad-one", "find-me"]
    assert [request_id(r) for r in client.get("/logs?status=4xx").json()["records"]] == ["bad-one"]
    by_path = client.get("/logs", params={"path": "/predict", "status": "200"}).json()
    assert [request_id(r) for r in by_path["records"]] == ["find-me"]
    by_request_id = client.get("/logs", params={"request_id": "find-me"}).json()["records"]
    assert [r["transaction"]["id"] for r in by_request_id] == [found.json()["transaction_id"]]
    assert client.get("/logs?limit=1").json()["count"] == 1
    tid = found.headers["x-transaction-id"]
    assert client.get(f"/logs/{tid}").json()["ml"]["prediction"]["label"] == "malignant"
    assert client.get("/logs/find-me").status_code == 404  # a client's id is not a transaction id
    assert client.get("/logs/never-seen").status_code == 404
    assert client.get("/logs?status=99").status_code == 422


def test_logs_stats_summarise_the_window(live: tuple[TestClient, FastAPI]) -> None:
    client, app = live
    for _ in range(3):
        client.post("/predict", json=MALIGNANT)
    client.post("/predict", json=BENIGN)
    client.post("/predict", json={"radius_mean": -1})
    wait_shipped(app)
    stats = client.get("/logs/stats").json()
    assert stats["requests"] == 5
    assert stats["errors"] == 1
    assert stats["error_rate"] == pytest.approx(0.2)
    assert stats["labels"] == {"malignant": 3, "benign": 1}
    assert stats["inferences"] == stats["profiled"] == 4
    assert stats["latency_ms"]["p50"] <= stats["latency_ms"]["p99"]
    assert stats["latency_ms_by_route"]["POST /predict"]["requests"] == 5
    assert stats["predictions"] == sum(m["requests"] for m in stats["throughput"]) == 5
    assert stats["hottest_functions"][0]["function"] == "predict"
    assert stats["hottest_functions"][0]["requests"] == 4
    assert stats["shipper"]["shipped"] == 5
    assert stats["shipper"]["dropped"] == 0
    assert stats["stream"]["length"] == 5
    assert stats["stream"]["lag"] == 5  # no pipeline consumer yet
    assert stats["stream"]["sink_problem"] is None


def test_logs_stats_say_when_the_pipeline_s_sink_refuses_writes(
    live: tuple[TestClient, FastAPI], redis_server: RedisServer
) -> None:
    client, app = live
    settings = app.state.settings
    problem = "sink refusing: 403 security_exception: action [indices:data/write/bulk] ..."
    key = sink_problem_key(settings.redis_stream, settings.redis_group)
    redis_server.client().set(key, problem, ex=60)  # what a pipeline in that state keeps
    stream = client.get("/logs/stats").json()["stream"]
    assert stream["sink_problem"] == problem
    assert stream["redis_memory"]["used_bytes"] > 0


CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def test_control_characters_never_reach_a_record_and_long_fields_are_capped(
    live: tuple[TestClient, FastAPI], redis_server: RedisServer
) -> None:
    client, app = live
    client.get("/logs%0A2026-11-25 INFO forged line", headers={"X-Request-ID": "inject-1"})
    client.post(
        "/predict",
        json={**MALIGNANT, "evil\nkey\x1b[31m": 1.0},
        headers={"X-Request-ID": "inject-2", "User-Agent": "agent\r\n" + "u" * 15_000},
    )
    wait_shipped(app)
    records = {
        request_id(r): r
        for r in stream_records(redis_server, app.state.settings.redis_stream)
        if (request_id(r) or "").startswith("inject")
    }
    assert set(records) == {"inject-1", "inject-2"}
    forged, unknown_key = records["inject-1"], records["inject-2"]
    assert forged["url"]["path"] == "/logs\\n2026-11-25 INFO forged line"  # escaped, kept
    assert "evil\\nkey\\x1b[31m" in unknown_key["error"]["message"]
    agent = unknown_key["user_agent"]["original"]
    assert agent.startswith("agent\\r\\nuuu")
    assert agent.endswith("more characters)")
    assert len(agent) < 600
    for record in records.values():
        fields = [
            record["message"],
            record["url"]["path"],
            record.get("user_agent", {}).get("original", ""),
            record.get("error", {}).get("message", ""),
        ]
        assert [f for f in fields if CONTROL.search(f)] == []
        assert len(record["message"]) < 1100


def test_a_batch_at_the_size_limit_makes_a_small_record_that_still_counts_every_label(
    live: tuple[TestClient, FastAPI], redis_server: RedisServer
) -> None:
    client, app = live
    settings = app.state.settings
    held_out = dataset.held_out_cases()
    cases = [held_out[n % len(held_out)] for n in range(settings.max_batch_size)]  # the limit
    answer = client.post("/predict/batch", json=cases, headers={"X-Request-ID": "big-batch"})
    assert answer.status_code == 200
    labels = [p["label"] for p in answer.json()["predictions"]]
    wait_shipped(app)
    stream = redis_server.client().xrange(settings.redis_stream)
    (text,) = [fields["record"] for _, fields in stream if '"big-batch"' in fields["record"]]
    assert len(text) < 30_000  # ~880 bytes a case when every case was kept
    ml = RequestRecord.model_validate_json(text).ml
    assert ml is not None
    assert ml.omitted is not None
    kept = settings.record_max_cases
    assert isinstance(ml.input, list)
    assert isinstance(ml.prediction, list)
    assert ml.batch_size == len(cases)
    assert len(ml.input) == len(ml.prediction) == kept
    assert [p.label for p in ml.prediction] == labels[:kept]
    assert ml.omitted.cases == len(cases) - kept
    assert ml.omitted.labels == {
        "malignant": labels[kept:].count("malignant"),
        "benign": labels[kept:].count("benign"),
    }
    stats = client.get("/logs/stats").json()
    assert stats["labels"] == {
        "malignant": labels.count("malignant"),
        "benign": labels.count("benign"),
    }


def test_a_request_for_an_unknown_host_is_refused_and_recorded(
    live: tuple[TestClient, FastAPI], redis_server: RedisServer
) -> None:
    client, app = live
    rebound = client.post(
        "/predict",
        json=MALIGNANT,
        headers={"Host": "attacker.example", "X-Request-ID": "rebinding"},
    )
    assert rebound.status_code == 400  # DNS rebinding: a page of another site, on loopback
    assert client.get("/health", headers={"Host": "localhost:8000"}).status_code == 200
    wait_shipped(app)
    records = stream_records(redis_server, app.state.settings.redis_stream)
    refused = [r for r in records if request_id(r) == "rebinding"]
    assert [r["http"]["response"]["status_code"] for r in refused] == [400]
    assert "ml" not in refused[0]  # the model never saw it


def test_answers_while_redis_is_down_name_no_host_port_or_server_message(
    settings: Settings, predictor: Predictor
) -> None:
    port = settings.redis_url.get_secret_value().rsplit(":", 1)[1].split("/")[0]
    with TestClient(create_app(settings, predictor), raise_server_exceptions=False) as client:
        client.post("/predict", json=MALIGNANT)  # a record that waits for Redis
        answers = [client.get(path) for path in ("/logs", "/logs/stats", "/drift", "/ready")]
        answers.append(client.get("/logs/0b7f5a0e-3d55-4a43-9a57-0a4c3a2c7c11"))
    assert [a.status_code for a in answers] == [503, 200, 503, 200, 503]
    for answer in answers:
        body = answer.text
        for detail in (f"127.0.0.1:{port}", f", {port})", "connecting to", "Errno"):
            assert detail not in body, body


def test_logs_answer_503_when_redis_is_down_and_the_outage_is_logged_once(
    settings: Settings, predictor: Predictor, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(create_app(settings, predictor)) as client:  # Redis on a closed port
        responses = [client.get("/logs") for _ in range(3)]  # as the UI's live toggle polls
    assert [r.status_code for r in responses] == [503] * 3
    assert "Redis is unreachable" in responses[0].json()["message"]
    failures = [r for r in caplog.records if "reading the live window failed" in r.message]
    assert len(failures) == 1


def test_metrics_expose_requests_inference_and_shipper(live: tuple[TestClient, FastAPI]) -> None:
    client, app = live
    client.post("/predict", json=MALIGNANT)
    client.post("/predict", json={})
    wait_shipped(app)
    text = client.get("/metrics").text
    assert 'inferlog_http_requests_total{method="POST",route="/predict",status="200"} 1.0' in text
    assert 'inferlog_http_requests_total{method="POST",route="/predict",status="422"} 1.0' in text
    assert 'inferlog_inferences_total{profiled="true"} 1.0' in text
    assert "inferlog_inference_duration_seconds_bucket" in text
    assert "inferlog_shipper_shipped_total 2.0" in text
    version = app.state.predictor.version
    assert f'inferlog_model_info{{name="breast-cancer-malignancy",version="{version}"}} 1.0' in text


def test_drift_finds_exactly_the_shifted_feature_in_the_live_window(
    live: tuple[TestClient, FastAPI],
) -> None:
    from tests.traffic import offline_traffic

    client, app = live
    assert client.get("/drift").json()["enough_data"] is False
    traffic = offline_traffic(seed=5, drift={"concavity_mean": 2.0})
    cases = [traffic.case() for _ in range(300)]
    kept = app.state.settings.record_max_cases
    for start in range(0, 250, kept):  # batches whose records keep every case
        batch = cases[start : min(start + kept, 250)]
        assert client.post("/predict/batch", json=batch).status_code == 200
    assert client.post("/predict/batch", json=cases[250:]).status_code == 200  # 50 cases
    client.post("/predict", json={"radius_mean": -1})  # errors carry no cases
    wait_shipped(app)
    report = client.get("/drift").json()
    assert report["cases"] == 250 + kept
    assert report["cases_not_recorded"] == 50 - kept
    assert report["drifted_features"] == ["concavity_mean"]
    assert report["histograms"]["concavity_mean"]["current"]
    feature = next(f for f in report["features"] if f["name"] == "concavity_mean")
    assert feature["current_mean"] > feature["reference_mean"]
    future = client.get("/drift", params={"since": "2100-01-01T00:00:00"}).json()
    assert future["cases"] == 0
    assert future["enough_data"] is False
    # Ranges outside the window, of any year, are empty ranges, not Redis errors.
    for until in ("1258-04-23T20:06:14+11:14", "9999-12-31T23:59:59"):
        answer = client.get("/drift", params={"until": until})
        assert answer.status_code == 200, answer.text
    for since in ("0387-03-23T04:04:07-11:32", "9999-12-31T23:59:59"):
        assert client.get("/logs", params={"since": since}).status_code == 200
    assert client.get("/drift", params={"until": "1258-01-01"}).json()["cases"] == 0
    assert client.get("/drift", params={"until": "9999-12-31"}).json()["cases"] == 250 + kept
    # Times are ISO 8601 text: a number is not taken as a Unix time.
    refused = client.get("/drift", params={"since": "0.5"})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "since"


def test_drift_compares_the_newest_cases_up_to_its_limit_and_says_it_left_older_ones_out(
    redis_server: RedisServer, model_dir: Path, tmp_path: Path, predictor: Predictor
) -> None:
    from tests.traffic import offline_traffic

    settings = make_settings(model_dir, tmp_path, redis_server.url, drift_max_cases=100)
    app = create_app(settings, predictor)
    steady = offline_traffic(seed=7)
    shifted = offline_traffic(seed=8, drift={"concavity_mean": 2.0})
    with TestClient(app, headers={"X-API-Key": ADMIN_KEY}) as client:
        for traffic in (shifted, steady):  # the steady cases are the newest
            for _ in range(5):
                batch = [traffic.case() for _ in range(20)]
                assert client.post("/predict/batch", json=batch).status_code == 200
        wait_shipped(app)
        report = client.get("/drift").json()
        assert report["cases"] == 100
        assert report["truncated"] is True
        assert report["records_read"] == 5  # the scan stopped there
        assert report["drifted_features"] == []  # only the steady, newest cases compared


def test_a_filtered_scan_stops_at_its_byte_budget_and_says_it_was_cut_short(
    redis_server: RedisServer, model_dir: Path, tmp_path: Path, predictor: Predictor
) -> None:
    settings = make_settings(model_dir, tmp_path, redis_server.url, scan_max_bytes=20_000)
    app = create_app(settings, predictor)
    with TestClient(app, headers={"X-API-Key": ADMIN_KEY}) as client:
        for _ in range(10):
            assert client.post("/predict", json=MALIGNANT).status_code == 200
        wait_shipped(app)
        page = client.get("/logs", params={"status": "599"}).json()  # nothing matches
        # Each record is ~4 KB: the scan stops at the record that passes 20,000 bytes.
        assert 4 <= page["scanned"] <= 6
        assert page["truncated"] is True
        everything = client.get("/logs", params={"status": "2xx", "limit": 3}).json()
        assert everything["count"] == 3
        assert everything["truncated"] is False


def test_two_requests_with_one_client_request_id_are_two_records(
    live: tuple[TestClient, FastAPI], redis_server: RedisServer
) -> None:
    client, app = live
    answers = [
        client.post("/predict", json=MALIGNANT, headers={"X-Request-ID": "reused"})
        for _ in range(2)
    ]
    wait_shipped(app)
    records = stream_records(redis_server, app.state.settings.redis_stream)
    assert [request_id(r) for r in records] == ["reused", "reused"]
    assert [r["transaction"]["id"] for r in records] == [
        a.json()["transaction_id"] for a in answers
    ]
    assert records[0]["transaction"]["id"] != records[1]["transaction"]["id"]
    found = client.get("/logs", params={"request_id": "reused"}).json()
    assert found["count"] == 2


def test_a_failing_shipper_pass_is_logged_reported_and_retried_without_loss(
    live: tuple[TestClient, FastAPI],
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, app = live
    shipper = app.state.shipper
    real_xadd = shipper._xadd
    failures = {"left": 3}

    async def broken_then_fixed(records: list[str], offset: Any) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("injected fault")
        await real_xadd(records, offset)

    monkeypatch.setattr(shipper, "_xadd", broken_then_fixed)
    sent = []
    for i in range(5):
        client.post("/predict", json=BENIGN, headers={"X-Request-ID": f"fault-{i}"})
        sent.append(f"fault-{i}")
    wait_until(lambda: shipper.counters().problem is not None, 10)
    problem = shipper.counters().problem
    # The answer names the kind of failure; its message (hosts, ports, server replies) is
    # for the log only.
    assert problem == "shipper pass failed (RuntimeError): see the API's log"
    ready = client.get("/ready").json()
    stats = client.get("/logs/stats").json()
    assert (ready["status"], ready["telemetry"]["problem"]) == ("degraded", problem)
    assert stats["shipper"]["healthy"] is False
    wait_shipped(app)
    assert shipper.counters().healthy
    assert "injected fault" in caplog.text
    assert "Traceback" in caplog.text
    records = stream_records(redis_server, app.state.settings.redis_stream)
    assert [request_id(r) for r in records if request_id(r)] == sent


def test_a_full_disk_keeps_records_in_memory_until_they_are_shipped(
    live: tuple[TestClient, FastAPI], redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, app = live
    shipper = app.state.shipper

    def disk_full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module.os, "write", disk_full)
    for i in range(5):
        response = client.post("/predict", json=BENIGN, headers={"X-Request-ID": f"full-{i}"})
        assert response.status_code == 200  # the answer never depends on the disk
    counters = shipper.counters()
    assert counters.problem is not None
    assert "No space left" in counters.problem
    assert client.get("/ready").json()["status"] == "degraded"
    wait_shipped(app)  # from memory: nothing was lost
    monkeypatch.undo()
    client.post("/predict", json=BENIGN, headers={"X-Request-ID": "disk-back"})
    wait_shipped(app)
    assert shipper.counters().healthy
    assert shipper.counters().dropped == 0
    records = stream_records(redis_server, app.state.settings.redis_stream)
    ids = [request_id(r) for r in records if request_id(r)]
    assert ids == [*(f"full-{i}" for i in range(5)), "disk-back"]


def test_beyond_spool_and_memory_records_are_dropped_counted_and_logged(
    settings: Settings,
    predictor: Predictor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Redis on a closed port and a full disk: only memory is left, and it holds 3 records.
    update = {"shipper_queue_size": 3, "data_dir": tmp_path}
    app = create_app(settings.model_copy(update=update), predictor)

    def disk_full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module.os, "write", disk_full)
    with TestClient(app) as client:
        for _ in range(5):
            assert client.post("/predict", json=BENIGN).status_code == 200
        counters = app.state.shipper.counters()
        metrics = client.get("/metrics").text
    assert (counters.in_memory, counters.dropped) == (3, 2)
    assert "inferlog_shipper_dropped_total 2.0" in metrics
    assert "spool and memory full: a record was dropped (1 so far)" in caplog.text


def test_a_corrupt_line_in_a_spool_left_behind_is_set_aside_and_the_rest_shipped(
    redis_server: RedisServer, model_dir: Path, tmp_path: Path, predictor: Predictor
) -> None:
    settings = make_settings(model_dir, tmp_path, redis_server.url)
    settings.spool_dir.mkdir(parents=True)
    good = '{"@timestamp": "2026-11-25T10:00:00Z", "left": "behind"}'
    (settings.spool_dir / "records-gone-1-abc.ndjson").write_bytes(
        good.encode() + b"\n\xff\xfe not a record\n" + good.encode() + b"\n"
    )
    app = create_app(settings, predictor)
    with TestClient(app):
        wait_shipped(app)
        counters = app.state.shipper.counters()
    assert (counters.taken_over, counters.corrupt, counters.shipped) == (3, 1, 2)
    assert (settings.spool_dir / "corrupt.ndjson").read_bytes() == b"\xff\xfe not a record\n"
    entries = redis_server.client().xrange(settings.redis_stream)
    assert [fields["record"] for _, fields in entries] == [good, good]


def test_a_spool_taken_over_ships_only_what_its_owner_had_not(
    model_dir: Path, tmp_path: Path, predictor: Predictor
) -> None:
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis", persistent=True)
    server.start()
    settings = make_settings(model_dir, tmp_path / "data", server.url)
    sent = [f"owner-{i}" for i in range(12)]
    try:
        first = create_app(settings, predictor)
        with TestClient(first) as client:
            for rid in sent[:5]:
                client.post("/predict", json=BENIGN, headers={"X-Request-ID": rid})
            wait_shipped(first)  # 5 in Redis, with the spool's offset after them
            server.stop()
            for rid in sent[5:]:
                client.post("/predict", json=BENIGN, headers={"X-Request-ID": rid})
        assert spool_lines(settings) == 12  # the owner stopped with 7 not shipped
        server.start()
        second = create_app(settings, predictor)
        with TestClient(second):
            wait_shipped(second)
            counters = second.state.shipper.counters()
        assert (counters.taken_over, counters.shipped) == (7, 7)
        records = stream_records(server, settings.redis_stream)
        assert [request_id(r) for r in records] == sent
    finally:
        server.stop()


def test_a_streamed_body_over_the_limit_is_recorded_as_the_413_it_got(
    redis_server: RedisServer, model_dir: Path, tmp_path: Path, predictor: Predictor
) -> None:
    settings = make_settings(model_dir, tmp_path, redis_server.url, max_body_bytes=2048)
    app = create_app(settings, predictor)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the body is streamed
        for _ in range(10):
            yield b" " * 1000

    with TestClient(app) as client:
        response = client.post(
            "/predict",
            content=chunks(),
            headers={"content-type": "application/json", "X-Request-ID": "too-big"},
        )
        wait_shipped(app)
    assert response.status_code == 413
    (record,) = stream_records(redis_server, settings.redis_stream)
    assert record["http"]["response"]["status_code"] == 413
    assert record["error"]["type"] == "body_too_large"


def test_a_stream_key_of_the_wrong_type_neither_loses_records_nor_inflates_statistics(
    live: tuple[TestClient, FastAPI], redis_server: RedisServer
) -> None:
    client, app = live
    stream = app.state.settings.redis_stream
    r = redis_server.client()
    r.set(stream, "not a stream")  # every XADD of the transaction fails; the rest applies
    for _ in range(4):
        assert client.post("/predict", json=MALIGNANT).status_code == 200
    wait_until(lambda: app.state.shipper.counters().failed_passes >= 3, 10)  # each undone
    r.delete(stream)
    wait_shipped(app)
    stats = client.get("/logs/stats").json()
    # The 4 predictions once each, whatever the failed passes did; this stats read not yet.
    assert stats["predictions"] == 4
    assert stats["requests"] == 4
    assert len(stream_records(redis_server, stream)) == 4


def test_statistics_reread_a_late_record_in_a_closed_minute_within_a_dozen_calls(
    redis_server: RedisServer,
) -> None:
    import asyncio
    import concurrent.futures
    import datetime as dt

    from inferlog.telemetry.keys import stats_key
    from inferlog.telemetry.live_log import LiveLog, connect

    stream = f"test:{time.monotonic_ns()}"
    now = dt.datetime.now(dt.UTC)
    old = now.replace(second=0, microsecond=0) - dt.timedelta(minutes=30)
    r = redis_server.client()
    r.hset(stats_key(stream, old), mapping={"requests": 1, "route|POST /predict": 1})

    async def calls() -> list[int]:
        live = LiveLog(connect(redis_server.url), stream, "g", 3600, 60_000)
        seen = [(await live.statistics(now))["predictions"]]
        # A spool taken over ships a record of that minute, half an hour late.
        r.hincrby(stats_key(stream, old), "route|POST /predict", 1)
        seen += [(await live.statistics(now))["predictions"] for _ in range(12)]
        await live.client.aclose()
        return seen

    # Its own thread: a browser test's session may hold this thread's event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        seen = thread.submit(asyncio.run, calls()).result(timeout=60)
    assert seen[0] == 1
    assert seen[-1] == 2
    assert seen[1] == 1  # a closed minute is not re-read on every call


def test_a_redis_at_its_memory_budget_makes_records_spool_then_every_one_arrives(
    model_dir: Path, tmp_path: Path, predictor: Predictor
) -> None:
    server = RedisServer(tmp_path / "redis-full")
    server.workdir.mkdir()
    server.start()
    r = server.client()
    settings = make_settings(model_dir, tmp_path, server.url)
    app = create_app(settings, predictor)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            for _ in range(3):
                assert client.post("/predict", json=MALIGNANT).status_code == 200
            wait_shipped(app)
            r.config_set("maxmemory-policy", "noeviction")
            r.config_set("maxmemory", 1)  # the budget is used up: XADD answers OOM
            for _ in range(20):
                assert client.post("/predict", json=BENIGN).status_code == 200
            shipper = app.state.shipper
            wait_until(lambda: "Redis is full" in (shipper.counters().problem or ""), 20)
            assert r.xlen(settings.redis_stream) == 3
            assert shipper.counters().backlog == 20
            assert client.get("/ready").json()["status"] == "degraded"
            r.config_set("maxmemory", 0)  # memory freed (the pipeline trimmed, say)
            wait_shipped(app)
        records = stream_records(server, settings.redis_stream)
        paths = [record["url"]["path"] for record in records]
        assert paths.count("/predict") == 23
        assert paths.count("/ready") == 1
        assert len({record["transaction"]["id"] for record in records}) == 24
    finally:
        server.stop()
