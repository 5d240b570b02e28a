"""The API as a process under sustained load, with real Redis: every request's record, once.

Saturating load for a while, then the drain: as many records as requests, none twice, nothing
waited out an outage. With one worker and with two. Then the failures a process manager sees:
a worker killed while Redis is down (its spool goes to its successor, exactly once), and a
client that leaves in the middle of its request.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections import Counter
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import psutil

from inferlog.ml import dataset
from inferlog.telemetry.record import RequestRecord
from tests.servers import Api, RedisServer, api_process, wait_until

CASES = dataset.held_out_cases()
CLIENTS = 8
LOAD_SECONDS = 20
NO_KEEP_ALIVE = httpx.Limits(max_keepalive_connections=0)


def workers_of(api: Api) -> list[psutil.Process]:
    """The uvicorn worker processes (the parent also runs multiprocessing's resource tracker)."""
    workers = []
    for child in psutil.Process(api.process.pid).children():
        with suppress(psutil.NoSuchProcess):  # a killed one, not yet reaped, included
            if "spawn_main" in " ".join(child.cmdline()):
                workers.append(child)
    return workers


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def saturate(base: str, prefix: str, seconds: float, keep_alive: bool = True) -> list[str]:
    """CLIENTS clients sending /predict back to back; the request ids answered.

    Several workers share one listening socket: a keep-alive connection stays with the worker
    that accepted it, so without keep-alive the requests spread over the workers."""
    answered: list[list[str]] = [[] for _ in range(CLIENTS)]
    stop = time.monotonic() + seconds

    def client(n: int) -> None:
        limits = httpx.Limits() if keep_alive else NO_KEEP_ALIVE
        with httpx.Client(base_url=base, timeout=30, limits=limits) as http:
            i = 0
            while time.monotonic() < stop:
                request_id = f"{prefix}-{n}-{i}"
                response = http.post(
                    "/predict", json=CASES[i % len(CASES)], headers={"X-Request-ID": request_id}
                )
                assert response.status_code == 200
                answered[n].append(request_id)
                i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [request_id for ids in answered for request_id in ids]


def records_of(server: RedisServer, stream: str) -> list[dict[str, Any]]:
    return [json.loads(f["record"]) for _, f in server.client().xrange(stream)]


def settled_records(server: RedisServer, stream: str, at_least: int) -> list[dict[str, Any]]:
    """The stream once it holds `at_least` entries and has stopped growing for a second."""
    client = server.client()
    wait_until(lambda: client.xlen(stream) >= at_least, 60)
    length, since = client.xlen(stream), time.monotonic()
    while time.monotonic() - since < 1.0:
        time.sleep(0.1)
        if client.xlen(stream) != length:
            length, since = client.xlen(stream), time.monotonic()
    return records_of(server, stream)


def request_ids(records: list[dict[str, Any]], prefix: str) -> Counter[str]:
    ids = (r["http"]["request"].get("id") for r in records)
    return Counter(i for i in ids if i is not None and i.startswith(prefix))


def test_saturating_load_then_drain_one_record_per_request_none_spooled(
    redis_server: RedisServer, model_dir: Path, tmp_path: Path
) -> None:
    stream = "sustained:one-worker"
    with api_process(model_dir, tmp_path / "data", redis_server.url, stream) as api:
        sent = saturate(api.base, "load", LOAD_SECONDS)
        records = settled_records(redis_server, stream, len(sent))
        assert api.metric("inferlog_shipper_backlog") == 0
        assert api.metric("inferlog_shipper_spooled_total") == 0  # Redis was never unreachable
        assert api.metric("inferlog_shipper_in_memory") == 0
        assert api.metric("inferlog_shipper_dropped_total") == 0
        assert api.metric("inferlog_shipper_failed_total") == 0
        # A few batches at most ever waited: the work kept pace with the requests.
        assert api.metric("inferlog_shipper_backlog_peak") < 2_000
    assert len(sent) > 1_000
    counts = request_ids(records, "load-")
    assert set(counts) == set(sent)
    assert set(counts.values()) == {1}
    load = [r for r in records if r["http"]["request"].get("id", "").startswith("load-")]
    for record in load[:: max(1, len(load) // 50)]:
        RequestRecord.model_validate(record)
    assert all(r["ml"]["profile"]["profiled"] for r in load)  # every inference profiled


def test_two_workers_under_saturating_load_record_each_request_once(
    redis_server: RedisServer, model_dir: Path, tmp_path: Path
) -> None:
    stream = "sustained:two-workers"
    data = tmp_path / "data"
    with api_process(model_dir, data, redis_server.url, stream, workers=2) as api:
        sent = saturate(api.base, "pair", LOAD_SECONDS, keep_alive=False)
        records = settled_records(redis_server, stream, len(sent))
        pids = {p.pid for p in workers_of(api)}
        assert len(pids) == 2
        spool_files = {p.name.split("-")[-2] for p in (data / "spool").glob("records-*.ndjson")}
        assert spool_files == {str(pid) for pid in pids}  # one spool per worker process
    counts = request_ids(records, "pair-")
    assert set(counts) == set(sent)
    assert set(counts.values()) == {1}
    problems = [line for line in api.log.read_text().splitlines() if " WARNING " in line]
    problems += [line for line in api.log.read_text().splitlines() if " ERROR " in line]
    assert problems == []  # no outage, no spool refusal, no drop, no failed pass


def test_a_killed_workers_spool_is_shipped_once_by_its_successor(
    model_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis", persistent=True)
    server.start()
    stream = "sustained:takeover"
    data = tmp_path / "data"
    try:
        with api_process(model_dir, data, server.url, stream, workers=2) as api:
            # No keep-alive: the requests spread over both workers (see `saturate`).
            with httpx.Client(base_url=api.base, timeout=30, limits=NO_KEEP_ALIVE) as http:
                before = [f"before-{i}" for i in range(20)]
                for request_id in before:
                    http.post("/predict", json=CASES[0], headers={"X-Request-ID": request_id})
                settled_records(server, stream, 20)  # shipped, offsets committed
                server.stop()
                during = [f"during-{i}" for i in range(40)]
                for request_id in during:
                    response = http.post(
                        "/predict", json=CASES[1], headers={"X-Request-ID": request_id}
                    )
                    assert response.status_code == 200  # Redis down: answers regardless
            # The victim: a worker whose spool holds records (both do, almost surely).
            spooled_by = {p.name.split("-")[-2] for p in (data / "spool").glob("records-*.ndjson")}
            victim = next(w for w in workers_of(api) if str(w.pid) in spooled_by)
            victim.send_signal(signal.SIGKILL)  # as the OOM killer would
            wait_until(lambda: gone(victim), 10)
            wait_until(lambda: victim.pid not in {w.pid for w in workers_of(api)}, 30)
            wait_until(lambda: len(workers_of(api)) == 2, 60)
            server.start()
            records = settled_records(server, stream, 60)
            counts = request_ids(records, "")
            assert {k: v for k, v in counts.items() if v != 1} == {}
            assert set(counts) == set(before) | set(during)
            # The successor said what it took over (the survivor may have, too: either way, once).
            wait_until(lambda: "left by a process that is gone" in api.log.read_text(), 10)
            assert f"-{victim.pid}-" in api.log.read_text()
    finally:
        server.stop()


def test_a_client_that_leaves_mid_request_is_recorded_as_499(
    redis_server: RedisServer, model_dir: Path, tmp_path: Path
) -> None:
    stream = "sustained:disconnect"
    with api_process(model_dir, tmp_path / "data", redis_server.url, stream) as api:
        host, port = api.base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as raw:
            raw.sendall(
                b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 5000\r\nX-Request-ID: gone-1\r\n\r\n"
                b'{"radius_mean": 17.9'
            )
            time.sleep(0.3)
        wait_until(lambda: request_ids(records_of(redis_server, stream), "gone-") != {}, 20)
        (record,) = [r for r in records_of(redis_server, stream) if r["http"]["request"].get("id")]
        assert record["http"]["response"]["status_code"] == 499
        assert record["event"]["outcome"] == "unknown"
        assert record["error"]["type"] == "client_closed_request"
        RequestRecord.model_validate(record)
        assert "Traceback" not in api.log.read_text()
