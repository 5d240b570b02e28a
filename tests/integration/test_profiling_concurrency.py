"""400 requests from 16 concurrent clients against a real server process and a real Redis.

Run under 3.11 by `make test` and again under 3.12+ (`make test-newer-python`), where cProfile
allows one active profiler per process and records every thread's calls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from inferlog.ml import dataset
from inferlog.telemetry.record import RequestRecord
from tests.servers import RedisServer, answers, free_port, wait_until

CLIENTS = 16
REQUESTS = 400
STREAM = "concurrency:requests"
CASES = dataset.held_out_cases()
ROUTES: dict[str, tuple[str, str]] = {
    # kind -> (path, the model call at the root of its profile)
    "single": ("/predict", "predict"),
    "proba": ("/predict_proba", "probabilities"),
    "batch": ("/predict/batch", "predict"),
}


def body(kind: str, i: int) -> Any:
    if kind == "batch":
        return CASES[i % 100 : i % 100 + 3]
    return CASES[i % len(CASES)]


@pytest.fixture(scope="module")
def server(redis_server: RedisServer, model_dir: Path, tmp_path_factory) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "API_PORT": str(port),
        "MODEL_DIR": str(model_dir),
        "DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "REDIS_URL": redis_server.url,
        "REDIS_STREAM": STREAM,
        "PROFILING_TOP_N": "200",  # whole profiles, so a mismatch can be shown function by function
        "PROFILING_ENABLED": "true",
        "PROFILING_SAMPLE_RATE": "1.0",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, "-m", "inferlog", "api"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{base}/ready"), 60, process)
    except AssertionError:
        process.kill()
        raise
    yield base
    process.terminate()
    process.wait(timeout=20)


def send(base: str, kind: str, tid: str, i: int) -> int:
    path = ROUTES[kind][0]
    with httpx.Client(base_url=base, timeout=30) as client:
        return client.post(path, json=body(kind, i), headers={"X-Request-ID": tid}).status_code


def wait_for_records(redis_server: RedisServer, count: int) -> list[dict[str, Any]]:
    client = redis_server.client()
    wait_until(lambda: client.xlen(STREAM) >= count, 60)
    return [json.loads(f["record"]) for _, f in client.xrange(STREAM)]


def test_concurrent_requests_are_each_recorded_and_profiled_alone(
    server: str, redis_server: RedisServer
) -> None:
    kinds = list(ROUTES)
    # Sequential reference profiles first (after a warm-up call per route).
    for kind in kinds:
        for n in range(3):
            assert send(server, kind, f"ref-{kind}-{n}", n) == 200

    def client_run(client_no: int) -> list[int]:
        statuses = []
        with httpx.Client(base_url=server, timeout=30) as client:
            for n in range(REQUESTS // CLIENTS):
                i = client_no * 100 + n
                kind = kinds[i % len(kinds)]
                response = client.post(
                    ROUTES[kind][0],
                    json=body(kind, i),
                    headers={"X-Request-ID": f"c-{kind}-{client_no}-{n}"},
                )
                statuses.append(response.status_code)
        return statuses

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = [s for batch in pool.map(client_run, range(CLIENTS)) for s in batch]
    assert Counter(statuses) == {200: REQUESTS}

    records = [
        r
        for r in wait_for_records(redis_server, REQUESTS + 3 * len(kinds) + 1)
        if r["url"]["path"] != "/ready"  # the readiness polls
    ]
    by_id = {r["http"]["request"]["id"]: r for r in records}  # the clients' X-Request-IDs
    assert len(by_id) == len(records) == REQUESTS + 3 * len(kinds)
    concurrent = [r for tid, r in by_id.items() if tid.startswith("c-")]
    assert len(concurrent) == REQUESTS
    for record in concurrent:
        RequestRecord.model_validate(record)
        assert record["http"]["response"]["status_code"] == 200

    # The reference call count of each route: the last sequential, profiled request.
    reference = {kind: by_id[f"ref-{kind}-2"]["ml"]["profile"]["function_calls"] for kind in kinds}
    profiled = 0
    for record in concurrent:
        profile = record["ml"]["profile"]
        kind = record["http"]["request"]["id"].split("-")[1]
        if not profile["profiled"]:
            assert profile["reason"] in ("profiler busy", "another profiler is active")
            continue
        profiled += 1
        root = profile["top_functions"][0]
        # The model call of this request, once: no other request's call tree inside.
        assert (root["function"], root["calls"]) == (ROUTES[kind][1], 1), record["message"]
        if profile["function_calls"] != reference[kind]:
            expected = by_id[f"ref-{kind}-2"]["ml"]["profile"]["top_functions"]
            calls = {(f["file"], f["function"]): f["calls"] for f in expected}
            found = {(f["file"], f["function"]): f["calls"] for f in profile["top_functions"]}
            differences = {
                key: (calls.get(key), found.get(key))
                for key in calls.keys() | found.keys()
                if calls.get(key) != found.get(key)
            }
            pytest.fail(
                f"{kind}: {record['message']}: calls differ from the reference: {differences}"
            )
    # Model calls run one at a time on the event loop: none finds the profiler busy, and a
    # profile lost to another request's would show here.
    assert profiled == REQUESTS
