"""The logs pipeline against a real redis-server and an Elasticsearch-compatible server.

Records are produced by the real API (in process) into a real Redis Stream; the pipeline's
unmodified sink code talks HTTP, with the official client, to osmem-server through the test
proxy (tests/search_server.py: header shim and fault injection).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import redis
from elasticsearch import Elasticsearch
from fastapi.testclient import TestClient
from pydantic import SecretStr

from inferlog.api.app import create_app
from inferlog.config import Settings
from inferlog.ml import dataset
from inferlog.ml.predictor import Predictor
from inferlog.telemetry.keys import sink_problem_key
from logs_pipeline.__main__ import make_pipeline, replay, setup
from logs_pipeline.indexer import IndexNames
from logs_pipeline.pipeline import Pipeline
from logs_pipeline.status import stream_status
from logs_pipeline.templates import POLICY_NAME, index_templates
from tests.search_server import SearchProxy
from tests.servers import TEST_CLIENT_HOSTS, RedisServer, wait_until

CASES = dataset.held_out_cases()


@dataclass
class Expected:
    logs: int = 0
    message: int = 0
    perfs: int = 0


def wait_claimable(redis_server: RedisServer, settings: Settings) -> None:
    """Until every pending entry has been idle PIPELINE_CLAIM_IDLE_MS, by Redis's own clock."""
    r, idle = redis_server.client(), settings.pipeline_claim_idle_ms
    wait_until(
        lambda: all(
            p["time_since_delivered"] >= idle
            for p in r.xpending_range(settings.redis_stream, settings.redis_group, "-", "+", 1000)
        ),
        idle / 1000 + 10,
    )


def data_indices(settings: Settings) -> tuple[str, str, str]:
    names = IndexNames.of(settings)
    return names.logs, names.message, names.perfs


@pytest.fixture
def proxy(osmem_clone: Any) -> Iterator[SearchProxy]:
    search = SearchProxy(osmem_clone.url)
    yield search
    search.close()


@pytest.fixture
def settings(
    redis_server: RedisServer, proxy: SearchProxy, model_dir: Path, tmp_path: Path
) -> Settings:
    return Settings(
        model_dir=model_dir,
        data_dir=tmp_path,
        redis_url=redis_server.url,
        redis_stream=f"pipeline:{time.monotonic_ns()}",
        allowed_hosts=TEST_CLIENT_HOSTS,
        elasticsearch_url=proxy.url,
        pipeline_batch_size=20,
        pipeline_block_ms=100,
        pipeline_claim_idle_ms=1000,
        pipeline_progress_seconds=0.5,
        log_level="INFO",
    )


def es(settings: Settings) -> Elasticsearch:
    return Elasticsearch(str(settings.elasticsearch_url))


def produce(settings: Settings, predictor: Predictor, rounds: int = 3) -> Expected:
    """Mixed traffic through the real API: predictions, batches, probabilities, 4xx and 5xx."""
    expected = Expected()
    app = create_app(settings, predictor)
    with TestClient(app, raise_server_exceptions=False) as client:
        for i in range(rounds):
            assert client.post("/predict", json=CASES[i]).status_code == 200
            batch = CASES[10 + i * 4 : 14 + i * 4]
            assert client.post("/predict/batch", json=batch).status_code == 200
            assert client.post("/predict_proba", json=CASES[i]).status_code == 200
            assert client.post("/predict", json={"radius_mean": -1}).status_code == 422
            assert client.get("/nowhere").status_code == 404
            assert client.get("/health").status_code == 200
            expected.logs += 6
            expected.message += 1 + len(batch)
            expected.perfs += 3
        original = app.state.predictor.probabilities
        app.state.predictor.probabilities = lambda x: 1 / 0
        try:
            assert client.post("/predict_proba", json=CASES[0]).status_code == 500
        finally:
            app.state.predictor.probabilities = original
        expected.logs += 1
        assert app.state.shipper.wait_idle(20)
    return expected


def setup_templates(settings: Settings) -> None:
    assert setup(settings) == 0


def _env_value(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "get_secret_value"):
        return value.get_secret_value()
    if isinstance(value, list):
        return ",".join(_env_value(v) or "" for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def drain(pipeline: Pipeline) -> None:
    pipeline.collector.ensure_group()
    while pipeline.step(block=False):
        pass


def counts(settings: Settings) -> Expected:
    client = es(settings)
    index = IndexNames.of(settings)
    client.indices.refresh(index="*")

    def count(name: str) -> int:
        return client.count(index=name)["count"] if client.indices.exists(index=name) else 0

    def requests(name: str) -> int:  # request documents, not their hot functions
        query = {"bool": {"must_not": {"term": {"kind": "function"}}}}
        return (
            client.count(index=name, query=query)["count"]
            if client.indices.exists(index=name)
            else 0
        )

    return Expected(
        logs=count(index.logs), message=count(index.message), perfs=requests(index.perfs)
    )


def dead_letters(settings: Settings) -> list[dict[str, Any]]:
    client = es(settings)
    index = IndexNames.of(settings).dead_letters
    if not client.indices.exists(index=index):
        return []
    client.indices.refresh(index=index)
    return [h["_source"] for h in client.search(index=index, size=100)["hits"]["hits"]]


def numeric_first_generation(settings: Settings, alias: str, field: str) -> None:
    """The alias's first index, made before `setup`, with `field` mapped as a number: every
    document whose `field` is text is refused (a mapping error)."""
    es(settings).indices.create(
        index=f"{alias}-000001",
        aliases={alias: {"is_write_index": True}},
        mappings={"properties": {field: {"type": "long"}}},
    )


def pending(redis_server: RedisServer, settings: Settings) -> int:
    """Records delivered and not yet acknowledged: none before a new pipeline makes its group."""
    try:
        info = redis_server.client().xpending(settings.redis_stream, settings.redis_group)
    except redis.ResponseError as error:
        if str(error).startswith("NOGROUP"):
            return 0
        raise
    count: int = info["pending"]
    return count


def test_mixed_traffic_gives_exact_counts_and_documents_match_the_templates(
    settings: Settings, predictor: Predictor, redis_server: RedisServer
) -> None:
    setup_templates(settings)
    expected = produce(settings, predictor)
    drain(make_pipeline(settings))
    assert [d["error"] for d in dead_letters(settings)] == []
    assert counts(settings) == expected
    assert pending(redis_server, settings) == 0
    client = es(settings)
    templates = index_templates(IndexNames.of(settings))
    for index in data_indices(settings):
        declared = templates[index]["template"]["mappings"]["properties"]
        (generation,) = client.indices.get_mapping(index=index).values()  # behind the alias
        assert set(generation["mappings"]["properties"]) == set(declared), index
    message = client.search(index=IndexNames.of(settings).message, size=1)["hits"]["hits"][0][
        "_source"
    ]
    assert set(message["input"]) == set(dataset.load().feature_names)
    perf = client.search(
        index=IndexNames.of(settings).perfs,
        size=1,
        query={
            "bool": {"filter": [{"term": {"url.path": "/predict"}}, {"term": {"kind": "request"}}]}
        },
    )
    profile = perf["hits"]["hits"][0]["_source"]["profile"]
    assert profile["function_calls"] > 0
    assert ":" in profile["hottest_function"]
    functions = client.search(
        index=IndexNames.of(settings).perfs, size=1000, query={"term": {"kind": "function"}}
    )["hits"]["hits"]
    # Each profiled request's top 5 functions, named module:function.
    assert len(functions) == 5 * expected.perfs
    assert len({f["_source"]["transaction"]["id"] for f in functions}) == expected.perfs
    assert all(":" in f["_source"]["function"]["by_self"]["name"] for f in functions)


def test_records_delivered_twice_keep_the_same_counts(
    settings: Settings, predictor: Predictor, redis_server: RedisServer
) -> None:
    setup_templates(settings)
    expected = produce(settings, predictor, rounds=2)
    drain(make_pipeline(settings))
    redis_server.client().xgroup_setid(settings.redis_stream, settings.redis_group, id="0")
    drain(make_pipeline(settings))
    assert counts(settings) == expected


def test_a_failing_search_server_gets_nothing_acknowledged_then_exact_counts(
    settings: Settings, predictor: Predictor, redis_server: RedisServer, proxy: SearchProxy
) -> None:
    setup_templates(settings)
    expected = produce(settings, predictor, rounds=2)
    proxy.fail(4, 503)
    proxy.fail(3, 429)  # after the 503s; the bulk helper retries 429s itself too
    pipeline = make_pipeline(settings)
    pipeline.collector.ensure_group()
    worker = threading.Thread(target=drain, args=(pipeline,))
    worker.start()
    while proxy.refused_bulk_requests < 7 and worker.is_alive():
        acknowledged = pipeline.counters.acknowledged
        assert acknowledged == 0, "acknowledged while the search server was failing"
        time.sleep(0.05)
    worker.join(timeout=120)
    assert proxy.refused_bulk_requests == 7
    assert pipeline.counters.retries >= 1  # the client and the bulk helper retry some too
    assert counts(settings) == expected
    assert pending(redis_server, settings) == 0


def test_malformed_and_unknown_schema_entries_become_dead_letters(
    settings: Settings, predictor: Predictor, redis_server: RedisServer
) -> None:
    setup_templates(settings)
    r = redis_server.client()
    r.xadd(settings.redis_stream, {"record": "{not json"})
    r.xadd(settings.redis_stream, {"something": "else"})
    future = {"schema": "inferlog.request/2", "@timestamp": "2026-11-24T00:00:00Z"}
    r.xadd(settings.redis_stream, {"record": json.dumps(future)})
    expected = produce(settings, predictor, rounds=1)
    drain(make_pipeline(settings))
    assert counts(settings) == expected
    letters = sorted(dead_letters(settings), key=lambda d: d["stream_id"])
    assert [d["reason"] for d in letters] == [
        "malformed_entry",
        "malformed_entry",
        "unknown_schema",
    ]
    assert "inferlog.request/2" in letters[2]["original"]
    assert pending(redis_server, settings) == 0


def test_a_document_the_mapping_refuses_is_dead_lettered_and_acknowledged(
    settings: Settings, predictor: Predictor, redis_server: RedisServer
) -> None:
    # A logs index whose `message` is numeric: every record is refused (400, a mapping error).
    numeric_first_generation(settings, IndexNames.of(settings).logs, "message")
    setup_templates(settings)  # keeps the alias there is
    produce(settings, predictor, rounds=1)
    drain(make_pipeline(settings))
    letters = dead_letters(settings)
    assert len(letters) == 7
    assert {d["index"] for d in letters} == {IndexNames.of(settings).logs}
    assert {d["reason"] for d in letters} <= {
        "mapper_parsing_exception",
        "document_parsing_exception",
    }
    assert counts(settings).message > 0
    assert pending(redis_server, settings) == 0


def settings_env(settings: Settings, extra: dict[str, str]) -> dict[str, str]:
    """The environment that gives a child process these settings (plus `extra`)."""
    env = {**os.environ}
    for name in Settings.model_fields:
        value = _env_value(getattr(settings, name))
        if value is not None:
            env[name.upper()] = value
    return env | extra


def start_run(settings: Settings, extra: dict[str, str] | None = None) -> subprocess.Popen[str]:
    env = settings_env(settings, extra or {})
    return subprocess.Popen(
        [sys.executable, "-m", "logs_pipeline", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_pipeline_killed_mid_batch_loses_and_doubles_nothing(
    settings: Settings, predictor: Predictor, redis_server: RedisServer, proxy: SearchProxy
) -> None:
    setup_templates(settings)
    expected = produce(settings, predictor, rounds=4)
    proxy.fail(1000, 503, after=1)  # one batch goes through, then the cluster fails
    first = start_run(settings)
    wait_until(lambda: proxy.refused_bulk_requests >= 2)
    assert pending(redis_server, settings) > 0  # a batch read, not acknowledged
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)
    proxy.heal()
    second = start_run(settings)  # a new consumer: claims what the dead one left pending
    try:
        wait_until(lambda: counts(settings) == expected and pending(redis_server, settings) == 0)
    finally:
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=30)
    assert second.returncode == 0, out
    assert "claimed" in out


def test_two_consumers_share_the_stream_without_loss_or_duplicates(
    settings: Settings, predictor: Predictor, redis_server: RedisServer
) -> None:
    setup_templates(settings)
    runs = [start_run(settings, {"PIPELINE_BATCH_SIZE": "3"}) for _ in range(2)]
    try:
        expected = produce(settings, predictor, rounds=6)
        wait_until(lambda: counts(settings) == expected and pending(redis_server, settings) == 0)
        running = stream_status(
            redis_server.client(), settings.redis_stream, settings.redis_group, 60_000
        )
        assert len(running["consumers"]) == 2
        assert running["stale_consumers"] == []
    finally:
        outputs = []
        for run in runs:
            run.send_signal(signal.SIGTERM)
            outputs.append(run.communicate(timeout=30)[0])
    # A clean stop with nothing pending leaves the group: status lists no ghost consumer.
    assert redis_server.client().xinfo_consumers(settings.redis_stream, settings.redis_group) == []
    handled = [int(out.split("PipelineCounters(entries=")[1].split(",")[0]) for out in outputs]
    assert sum(handled) == expected.logs
    assert all(n > 0 for n in handled), handled


def test_the_ndjson_sink_replayed_gives_the_same_counts_as_the_direct_path(
    settings: Settings, predictor: Predictor, osmem_server: Any
) -> None:
    setup_templates(settings)
    expected = produce(settings, predictor, rounds=3)
    drain(make_pipeline(settings))
    assert counts(settings) == expected

    # Same stream, a second consumer group, no Elasticsearch: the embedded default.
    ndjson = settings.model_copy(update={"elasticsearch_url": None, "redis_group": "ndjson"})
    drain(make_pipeline(ndjson))
    drain(make_pipeline(ndjson))  # nothing new: the files do not grow
    files = sorted(p.name for p in ndjson.indices_dir.glob("*.ndjson"))
    assert files == ["ml-api-logs.ndjson", "ml-api-message.ndjson", "ml-api-perfs.ndjson"]

    with osmem_server.clone() as fresh:
        other = SearchProxy(fresh.url)
        try:
            replayed = ndjson.model_copy(update={"elasticsearch_url": other.url})
            assert replay(replayed) == 0
            assert replay(replayed) == 0  # idempotent
            assert counts(replayed) == expected
        finally:
            other.close()


def run_cli(settings: Settings, command: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = settings_env(settings, extra)
    return subprocess.run(
        [sys.executable, "-m", "logs_pipeline", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_once_drains_the_stream_and_status_reports_it(
    settings: Settings, predictor: Predictor
) -> None:
    setup_templates(settings)
    expected = produce(settings, predictor, rounds=2)
    done = run_cli(settings, "once")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["entries"] == expected.logs
    assert summary["indexed"][IndexNames.of(settings).logs] == expected.logs
    report = json.loads(run_cli(settings, "status").stdout)
    assert report["pending"] == 0
    assert report["lag"] == 0
    assert report["trimmed_before_delivery"] == 0
    assert report["documents"][IndexNames.of(settings).message] == expected.message
    assert report["sink"] == "elasticsearch"
    assert report["sink_problem"] is None
    assert report["redis_memory"]["used_bytes"] > 0


def test_unreachable_redis_or_elasticsearch_is_a_clear_message(settings: Settings) -> None:
    no_redis = run_cli(settings, "status", REDIS_URL="redis://127.0.0.1:1/0")
    assert no_redis.returncode == 2
    assert "cannot reach Redis" in no_redis.stderr
    assert "Traceback" not in no_redis.stderr
    no_search = run_cli(settings, "setup", ELASTICSEARCH_URL="http://127.0.0.1:1")
    assert no_search.returncode == 2
    assert "cannot reach Elasticsearch" in no_search.stderr
    assert "Traceback" not in no_search.stderr


def test_trim_removes_only_acknowledged_entries_older_than_the_window(
    settings: Settings, predictor: Predictor, redis_server: RedisServer
) -> None:
    r = redis_server.client()
    stream = settings.redis_stream
    old = [r.xadd(stream, {"record": "{}"}, id=f"{1_000 + i}-0") for i in range(6)]
    pipeline = make_pipeline(settings.model_copy(update={"pipeline_batch_size": 4}))
    pipeline.collector.ensure_group()
    first = pipeline.collector.read(block=False)  # 4 delivered
    pipeline.collector.ack([e.id for e in first[:3]])  # 3 acknowledged, 1 pending
    recent = r.xadd(stream, {"record": "{}"})  # inside the live window
    removed = pipeline.trim()
    left = [entry_id for entry_id, _ in r.xrange(stream)]
    assert removed == 3
    assert left == [*old[3:], recent]  # the pending one, the two undelivered, the recent one


def test_entries_trimmed_before_delivery_are_reported(
    settings: Settings, redis_server: RedisServer
) -> None:
    r = redis_server.client()
    pipeline = make_pipeline(settings)
    pipeline.collector.ensure_group()
    for _ in range(5):
        r.xadd(settings.redis_stream, {"record": "{}"})
    r.xtrim(settings.redis_stream, maxlen=2, approximate=False)  # the stream's hard cap at work
    report = run_cli(settings, "status")
    assert json.loads(report.stdout)["trimmed_before_delivery"] == 3


def test_entries_trimmed_while_another_consumer_held_them_are_counted(
    settings: Settings, redis_server: RedisServer
) -> None:
    r = redis_server.client()
    holder = make_pipeline(settings)
    holder.collector.consumer = "stopped-consumer"
    holder.collector.ensure_group()
    for _ in range(5):
        r.xadd(settings.redis_stream, {"record": "{}"})
    assert len(holder.collector.read(block=False)) == 5  # pending with it, never acknowledged
    r.xtrim(settings.redis_stream, maxlen=2, approximate=False)
    setup_templates(settings)
    taker = make_pipeline(settings)
    taker.collector.ensure_group()
    wait_claimable(redis_server, settings)
    assert taker.step(block=False) == 2  # the two left, claimed (and dead-lettered: not records)
    assert taker.counters.trimmed_while_pending == 3
    assert pending(redis_server, settings) == 0


BOUNDED_COMMANDS = {"xlen", "xinfo|stream", "xinfo|groups", "xinfo|consumers", "xpending", "get"}


def test_status_of_200000_undelivered_entries_sends_only_bounded_commands(
    settings: Settings, redis_server: RedisServer
) -> None:
    r = redis_server.client()
    stream = settings.redis_stream
    r.xgroup_create(stream, settings.redis_group, id="0", mkstream=True)
    for _ in range(20):
        with r.pipeline(transaction=False) as pipe:
            for _ in range(10_000):
                pipe.xadd(stream, {"record": "{}"})
            pipe.execute()
    r.config_resetstat()
    report = stream_status(r, stream, settings.redis_group, settings.pipeline_claim_idle_ms)
    commands = {
        name.removeprefix("cmdstat_"): stat["calls"]
        for name, stat in r.info("commandstats").items()
        if name not in ("cmdstat_info", "cmdstat_config|resetstat")
    }
    r.delete(stream)
    assert set(commands) <= BOUNDED_COMMANDS, commands
    assert sum(commands.values()) <= len(BOUNDED_COMMANDS)
    assert report["length"] == 200_000
    assert report["lag"] == 200_000
    assert report["pending"] == 0
    assert report["trimmed_before_delivery"] == 0


def test_a_consumer_leaves_the_group_only_once_it_holds_no_entry_and_idle_ones_show_as_stale(
    settings: Settings, redis_server: RedisServer
) -> None:
    r = redis_server.client()
    collector = make_pipeline(settings.model_copy(update={"pipeline_batch_size": 3})).collector
    collector.ensure_group()
    for _ in range(3):
        r.xadd(settings.redis_stream, {"record": "{}"})
    entries = collector.read(block=False)
    assert collector.leave() == 3  # deleting it now would drop its three pending entries

    def status() -> dict[str, Any]:
        return stream_status(r, settings.redis_stream, settings.redis_group, stale_after_ms=100)

    wait_until(lambda: status()["stale_consumers"] != [], 10)  # idle past 100 ms
    report = status()
    assert report["consumers"] == []
    assert [(c["name"], c["pending"]) for c in report["stale_consumers"]] == [
        (collector.consumer, 3)
    ]
    collector.ack([e.id for e in entries])
    assert collector.leave() == 0
    assert r.xinfo_consumers(settings.redis_stream, settings.redis_group) == []


def test_status_tells_entries_trimmed_before_delivery_from_acknowledged_ones_trimmed(
    settings: Settings, redis_server: RedisServer
) -> None:
    r = redis_server.client()
    # gap: 2 of 5 read, then the cap keeps 2: entry 3 went undelivered. caught-up: all 5
    # read and acknowledged, then the cap keeps 2: nothing was lost.
    for name, read, lost in (("gap", 2, 1), ("caught-up", 5, 0)):
        local = settings.model_copy(
            update={"redis_stream": f"{settings.redis_stream}:{name}", "pipeline_batch_size": read}
        )
        collector = make_pipeline(local).collector
        collector.ensure_group()
        for _ in range(5):
            r.xadd(local.redis_stream, {"record": "{}"})
        collector.ack([e.id for e in collector.read(block=False)])
        r.xtrim(local.redis_stream, maxlen=2, approximate=False)
        report = stream_status(r, local.redis_stream, local.redis_group, 60_000)
        assert report["trimmed_before_delivery"] == lost, name


def test_a_silent_redis_is_waited_out_not_a_crash_or_a_hang(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="logs_pipeline")
    server = RedisServer(tmp_path / "redis-silent")
    server.workdir.mkdir()
    server.start()
    url = SecretStr(server.url)
    local = settings.model_copy(update={"redis_url": url, "elasticsearch_url": None})
    r = server.client()
    pipeline: Pipeline | None = None
    runner: threading.Thread | None = None

    def acknowledged(n: int) -> bool:
        return pipeline is not None and pipeline.counters.acknowledged >= n

    try:
        pipeline = make_pipeline(local)
        runner = threading.Thread(target=pipeline.run, args=(60.0,), daemon=True)
        runner.start()
        for _ in range(3):
            r.xadd(local.redis_stream, {"record": "{}"})  # unusable: dead-lettered, acknowledged
        wait_until(lambda: acknowledged(3), 20)
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)  # answers nothing, keeps the sockets open
        try:
            wait_until(lambda: "Redis unreachable" in caplog.text, 20)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        for _ in range(3):
            r.xadd(local.redis_stream, {"record": "{}"})
        wait_until(lambda: acknowledged(6), 40)
        assert runner.is_alive()
        assert "Redis answers again" in caplog.text
    finally:
        if pipeline is not None and runner is not None:
            pipeline.stop()
            runner.join(timeout=30)
        server.stop()


# -- the sink refusing, failing or choking, with the pipeline running -------------------------


class Running:
    """`Pipeline.run` (what `logs_pipeline run` does) in a thread, watched from the test."""

    def __init__(self, settings: Settings) -> None:
        self.pipeline = make_pipeline(settings)
        self.thread = threading.Thread(target=self.pipeline.run, args=(0.5,), daemon=True)

    def __enter__(self) -> Pipeline:
        self.thread.start()
        return self.pipeline

    def __exit__(self, *exc: object) -> None:
        self.pipeline.stop()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()


def test_an_idle_pipeline_says_nothing_and_a_busy_one_reports_its_progress(
    settings: Settings, predictor: Predictor, caplog: pytest.LogCaptureFixture
) -> None:
    setup_templates(settings)
    caplog.set_level(logging.INFO, logger="logs_pipeline")
    with Running(settings):  # reports every 0.5 s
        time.sleep(2)  # idle for four report periods
        assert "records/s" not in caplog.text
        produce(settings, predictor, rounds=1)
        wait_until(lambda: "records/s" in caplog.text, 20)


def sink_problem(redis_server: RedisServer, settings: Settings) -> str | None:
    key = sink_problem_key(settings.redis_stream, settings.redis_group)
    problem: str | None = redis_server.client().get(key)
    return problem


@pytest.mark.parametrize(
    ("status", "problem"),
    [
        (401, "sink refusing: 401 security_exception"),
        (403, "sink refusing: 403 security_exception"),
        (429, "sink failing: 429"),
        (503, "sink failing: 503"),
    ],
)
def test_a_bulk_request_refused_as_a_whole_is_retried_until_every_record_is_indexed_once(
    status: int,
    problem: str,
    settings: Settings,
    predictor: Predictor,
    redis_server: RedisServer,
    proxy: SearchProxy,
) -> None:
    setup_templates(settings)
    expected = produce(settings, predictor, rounds=2)
    proxy.fail(4, status)  # then healed: the requests after these go through
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    with Running(settings) as pipeline:
        while proxy.refused_bulk_requests < 4:
            assert time.monotonic() < deadline, "the refusals never came"
            assert pipeline.counters.acknowledged == 0, "acknowledged before the sink confirmed"
            assert pending(redis_server, settings) in (0, expected.logs)
            seen.add(sink_problem(redis_server, settings) or "")
            time.sleep(0.02)
        wait_until(lambda: pipeline.counters.acknowledged == expected.logs, 60)
    assert any(p.startswith(problem) for p in seen), seen
    assert sink_problem(redis_server, settings) is None  # cleared once the sink writes again
    assert counts(settings) == expected
    assert dead_letters(settings) == []
    assert pending(redis_server, settings) == 0
    sink_counts = es(settings).count  # the sink's own counts against what the pipeline says
    for index in data_indices(settings):
        assert pipeline.counters.documents[index] == sink_counts(index=index)["count"], index


def post_more(settings: Settings, predictor: Predictor, send: Any) -> None:
    """More traffic through the real API: `send(client)` makes the requests."""
    app = create_app(settings, predictor)
    with TestClient(app, raise_server_exceptions=False) as client:
        send(client)
        assert app.state.shipper.wait_idle(20)


def test_a_body_too_large_is_split_and_only_a_document_over_the_limit_is_dead_lettered(
    settings: Settings, predictor: Predictor, redis_server: RedisServer, proxy: SearchProxy
) -> None:
    setup_templates(settings)
    expected = produce(settings, predictor, rounds=2)
    big = CASES[:60]  # its record keeps 20 cases: an ml-api-logs document over the limit

    def send(client: TestClient) -> None:
        assert client.post("/predict/batch", json=big).status_code == 200

    post_more(settings, predictor, send)
    proxy.limit_body(18_000)  # the record is ~20 KB; its dead letter keeps 16 KB of it
    with Running(settings) as pipeline:
        wait_until(lambda: pipeline.counters.acknowledged == expected.logs + 1, 60)
    assert proxy.refused_bulk_requests > 0
    letters = dead_letters(settings)
    assert [(d["index"], d["reason"]) for d in letters] == [
        (IndexNames.of(settings).logs, "document_too_large")
    ]
    assert counts(settings) == Expected(
        logs=expected.logs,
        message=expected.message + settings.record_max_cases,
        perfs=expected.perfs + 1,
    )
    assert pending(redis_server, settings) == 0


def test_a_request_the_cluster_cannot_parse_is_bisected_to_the_one_bad_document(
    settings: Settings, predictor: Predictor, redis_server: RedisServer, proxy: SearchProxy
) -> None:
    setup_templates(settings)
    expected = produce(settings, predictor, rounds=2)

    def send(client: TestClient) -> None:
        response = client.get("/health", headers={"User-Agent": "x-poison"})
        assert response.status_code == 200

    post_more(settings, predictor, send)
    proxy.refuse_containing(b'"x-poison"')  # the bytes of that one ml-api-logs document
    with Running(settings) as pipeline:
        wait_until(lambda: pipeline.counters.acknowledged == expected.logs + 1, 60)
    letters = dead_letters(settings)
    assert [(d["index"], d["reason"]) for d in letters] == [
        (IndexNames.of(settings).logs, "bad_request")
    ]
    assert '"x-poison"' in letters[0]["original"]
    assert counts(settings) == expected
    assert pipeline.counters.dead_letters == 1
    assert pending(redis_server, settings) == 0


def test_a_dead_letter_the_sink_refuses_leaves_its_entry_pending(
    settings: Settings, predictor: Predictor, redis_server: RedisServer
) -> None:
    # A dead-letter index whose `reason` is numeric: every dead letter is refused.
    numeric_first_generation(settings, IndexNames.of(settings).dead_letters, "reason")
    setup_templates(settings)
    r = redis_server.client()
    unusable = r.xadd(settings.redis_stream, {"record": "{not json"})
    expected = produce(settings, predictor, rounds=1)
    pipeline = make_pipeline(settings)
    drain(pipeline)
    assert counts(settings) == expected
    assert pipeline.counters.refused_dead_letters == 1
    assert pipeline.counters.acknowledged == expected.logs
    left = r.xpending_range(settings.redis_stream, settings.redis_group, "-", "+", 10)
    assert [p["message_id"] for p in left] == [unusable]


def test_an_entry_that_breaks_the_indexer_is_dead_lettered_and_the_rest_goes_on(
    settings: Settings, predictor: Predictor, redis_server: RedisServer
) -> None:
    setup_templates(settings)
    expected = produce(settings, predictor, rounds=1)
    r = redis_server.client()
    # A valid record whose batch has more inputs than predictions: indexing it raises.
    _, fields = next(
        (i, f)
        for i, f in r.xrange(settings.redis_stream)
        if json.loads(f["record"])["url"]["path"] == "/predict/batch"
    )
    record = json.loads(fields["record"])
    record["ml"]["input"].append(record["ml"]["input"][0])
    record["transaction"]["id"] = "0" * 32
    r.xadd(settings.redis_stream, {"record": json.dumps(record)})
    post_more(settings, predictor, lambda c: c.post("/predict", json=CASES[5]))
    drain(make_pipeline(settings))
    letters = dead_letters(settings)
    assert [d["reason"] for d in letters] == ["indexing_failed"]
    assert "ValueError" in letters[0]["error"]
    assert counts(settings) == Expected(
        logs=expected.logs + 1, message=expected.message + 1, perfs=expected.perfs + 1
    )
    assert pending(redis_server, settings) == 0


class ConsumerCrashedError(BaseException):
    """Stands for what kills a consumer process (a segfault, the OOM killer)."""


def test_an_entry_that_kills_its_consumer_is_dead_lettered_after_bounded_deliveries(
    settings: Settings, predictor: Predictor, redis_server: RedisServer
) -> None:
    setup_templates(settings)
    local = settings.model_copy(update={"pipeline_max_deliveries": 3})
    expected = produce(local, predictor, rounds=1)
    r = redis_server.client()
    ids = [entry_id for entry_id, _ in r.xrange(local.redis_stream)]
    poison = ids[2]
    fields = r.xrange(local.redis_stream, poison, poison)[0][1]
    poison_transaction = json.loads(fields["record"])["transaction"]["id"]
    restarts = 0
    while restarts == 0 or pending(redis_server, local):
        pipeline = make_pipeline(local)
        pipeline.collector.consumer = f"consumer-{restarts}"
        documents = pipeline.indexer.documents

        def crash_on_poison(record: Any, text: str, documents: Any = documents) -> Any:
            if record.transaction.id == poison_transaction:
                raise ConsumerCrashedError
            return documents(record, text)

        pipeline.indexer.documents = crash_on_poison  # type: ignore[method-assign]
        pipeline.collector.ensure_group()
        wait_claimable(redis_server, local)
        with contextlib.suppress(ConsumerCrashedError):
            while pipeline.step(block=False):
                pass
        restarts += 1
        assert restarts < 10, "the poison entry keeps the consumer in a crash loop"
    letters = dead_letters(local)
    assert [(d["stream_id"], d["reason"]) for d in letters] == [(poison, "delivery_limit")]
    # The poison is the /predict_proba record: one ml-api-logs and one ml-api-perfs document.
    assert counts(local) == Expected(
        logs=expected.logs - 1, message=expected.message, perfs=expected.perfs - 1
    )
    assert pending(redis_server, local) == 0


def test_a_redis_restart_mid_run_loses_nothing(
    settings: Settings, predictor: Predictor, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis-restarted", persistent=True)
    server.workdir.mkdir()
    server.start()
    local = settings.model_copy(update={"redis_url": SecretStr(server.url)})
    try:
        setup_templates(local)
        expected = produce(local, predictor, rounds=2)
        with Running(local) as pipeline:
            wait_until(lambda: pipeline.counters.acknowledged > 0, 30)
            server.stop()  # AOF on: the stream, the group and its pending entries survive
            time.sleep(1)  # an outage of a second, under the pipeline's retries
            server.start()
            more = produce(local, predictor, rounds=2)
            total = Expected(
                logs=expected.logs + more.logs,
                message=expected.message + more.message,
                perfs=expected.perfs + more.perfs,
            )
            wait_until(lambda: counts(local) == total, 60)
            wait_until(lambda: pipeline.counters.acknowledged == total.logs, 60)
        assert server.client().xpending(local.redis_stream, local.redis_group)["pending"] == 0
    finally:
        server.stop()


def test_setup_installs_retention_and_the_first_index_behind_each_alias(
    settings: Settings, proxy: SearchProxy
) -> None:
    setup_templates(settings)
    setup_templates(settings)  # re-runnable
    policy = proxy.ilm_policies[POLICY_NAME]["policy"]
    assert policy["phases"]["delete"]["min_age"] == f"{settings.retention_days}d"
    assert "rollover" in policy["phases"]["hot"]["actions"]
    client = es(settings)
    for alias in vars(IndexNames.of(settings)).values():
        assert proxy.lifecycle_settings[alias] == {
            "index.lifecycle.name": POLICY_NAME,
            "index.lifecycle.rollover_alias": alias,
        }
        (index,) = client.indices.get_alias(name=alias)
        assert index == f"{alias}-000001"
        assert client.indices.get_alias(name=alias)[index]["aliases"][alias]["is_write_index"]
        assert client.count(index=alias)["count"] == 0  # panels have fields before documents


def test_setup_adds_new_fields_to_indices_an_earlier_version_made(
    settings: Settings, predictor: Predictor
) -> None:
    perfs = IndexNames.of(settings).perfs
    client = es(settings)
    # ml-api-perfs as before one document per rank: strict, without `function.by_self`.
    earlier = index_templates(IndexNames.of(settings))[perfs]["template"]["mappings"]
    earlier["properties"]["function"] = {"properties": {"name": {"type": "keyword"}}}
    client.indices.create(
        index=f"{perfs}-000001", mappings=earlier, aliases={perfs: {"is_write_index": True}}
    )
    setup_templates(settings)
    (mapping,) = client.indices.get_mapping(index=perfs).values()
    function = mapping["mappings"]["properties"]["function"]["properties"]
    assert {"name", "rank", "by_self", "by_cumulative"} <= set(function)
    expected = produce(settings, predictor, rounds=1)
    pipeline = make_pipeline(settings)
    pipeline.collector.ensure_group()
    assert pipeline.step(block=False) > 0
    assert dead_letters(settings) == []
    assert counts(settings).perfs == expected.perfs


def test_a_pipeline_started_before_setup_waits_for_it_and_creates_no_index(
    settings: Settings, predictor: Predictor, redis_server: RedisServer
) -> None:
    expected = produce(settings, predictor, rounds=1)
    with Running(settings) as pipeline:
        wait_until(lambda: "index_not_found" in (sink_problem(redis_server, settings) or ""), 30)
        assert pipeline.counters.acknowledged == 0
        assert not es(settings).indices.exists(
            index=IndexNames.of(settings).logs
        )  # not auto-created
        setup_templates(settings)
        wait_until(lambda: pipeline.counters.acknowledged == expected.logs, 60)
    assert counts(settings) == expected
    assert es(settings).indices.get_alias(name=IndexNames.of(settings).logs)


def test_items_refused_for_now_in_a_bulk_answer_are_sent_again_and_counted_once(
    settings: Settings, predictor: Predictor, redis_server: RedisServer, proxy: SearchProxy
) -> None:
    setup_templates(settings)
    expected = produce(settings, predictor, rounds=2)
    proxy.fail_items(5, 429)  # the first bulk answer: 5 items refused for now, the rest taken
    proxy.fail_items(2, 503)  # the second one: 2 more
    pipeline = make_pipeline(settings)
    drain(pipeline)
    assert not proxy.item_failures
    assert pipeline.counters.retries == 2
    assert counts(settings) == expected
    assert dead_letters(settings) == []
    client = es(settings)
    for index in data_indices(settings):
        assert pipeline.counters.documents[index] == client.count(index=index)["count"], index
    assert pending(redis_server, settings) == 0


def test_setup_gives_the_pipeline_a_user_whose_role_covers_every_call_it_makes_and_no_more(
    settings: Settings, predictor: Predictor, proxy: SearchProxy
) -> None:
    password = "pipeline-password-for-tests"
    with_user = settings.model_copy(update={"pipeline_elasticsearch_password": SecretStr(password)})
    assert setup(with_user) == 0
    user = proxy.users["inferlog-pipeline"]
    assert user["password"] == password
    assert user["roles"] == ["inferlog-pipeline"]
    role = proxy.roles["inferlog-pipeline"]
    assert role["cluster"] == ["monitor"]  # no manage, no security, no all
    (grant,) = role["indices"]
    aliases = set(data_indices(settings))
    assert {pattern.rstrip("*") for pattern in grant["names"]} >= aliases
    assert all(pattern.startswith("ml-api-") for pattern in grant["names"])
    assert set(grant["privileges"]) == {"index", "view_index_metadata", "monitor"}
    assert grant["allow_restricted_indices"] is False
    # What the pipeline then asks of the cluster, while it indexes and when `status` counts:
    # GET / needs cluster monitor, _bulk needs `index` on the aliases it names, _cat/indices
    # needs monitor on both (Elasticsearch's security privileges reference).
    proxy.requests.clear()
    expected = produce(settings, predictor, rounds=1)
    with Running(settings) as pipeline:
        wait_until(lambda: pipeline.counters.acknowledged == expected.logs, 60)
    assert run_cli(settings, "status").returncode == 0
    assert set(proxy.requests) == {("GET", "/"), ("PUT", "/_bulk"), ("GET", "/_cat/indices")}
    written = {doc["_index"] for doc in es(settings).search(index="ml-api-*")["hits"]["hits"]}
    assert written
    assert all(any(fnmatch(i, p) for p in grant["names"]) for i in written)
