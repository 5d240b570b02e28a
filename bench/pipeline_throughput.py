"""How fast the logs pipeline moves records from the stream to its sink, and how fresh they are.

Starts a redis-server on loopback and makes a pool of real records with the real API (in
process: single predictions, batches of 4, 422s, health checks), then:

1. **NDJSON**: `--records` copies of the pool (each with its own transaction id) in a stream;
   `python -m logs_pipeline once` timed as a whole process, from its start to its exit.
2. **Elasticsearch-compatible server** (osmem-server, behind the tests' header shim):
   `--es-records` copies; first the server's own bulk rate for exactly the documents the
   indexer makes of them (`_bulk` requests of 500 documents, straight from memory), then the
   pipeline's whole-process rate into fresh indices. The ratio of the two is the pipeline's
   share of what its sink can take.
3. **Freshness** (response -> searchable): an API process and `logs_pipeline run`, paced
   `POST /predict` traffic at 100 requests/s and at `--api-share` of `--api-rate` requests/s
   (NDJSON), at 100 and `--es-rates` requests/s (the ES-compatible server);
   for each response, the time until its `ml-api-logs` document is in the NDJSON file (all
   of them) or found by a search (every 5th, polled every 100 ms).

    uv run python bench/pipeline_throughput.py [--records 30000] [--es-records 3000]
                                               [--seconds 20] [--api-rate 420]
                                               [--parts ndjson,elasticsearch,freshness]
                                               [--python /path/to/venv/bin/python]

Needs `redis-server` (apt-get install redis-server); the Elasticsearch-compatible server comes
with the dev dependencies (`osmem-server`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
from api_latency import free_port, process, wait_ready
from fastapi.testclient import TestClient
from osmem_server import OsmemServer

from inferlog.api.app import create_app
from inferlog.config import Settings
from inferlog.ml import dataset
from inferlog.ml.artifacts import load_artifacts
from inferlog.ml.predictor import Predictor
from inferlog.telemetry.record import RECORD_FIELD
from logs_pipeline.collector import Entry, parse
from logs_pipeline.filter import RecordFilter
from logs_pipeline.indexer import Indexer, IndexNames
from logs_pipeline.sinks import bulk_lines
from logs_pipeline.templates import index_templates
from tests.search_server import SearchProxy

ROOT = Path(__file__).resolve().parents[1]
CASES = dataset.held_out_cases()


def make_pool(settings: Settings, model_dir: Path) -> list[str]:
    """Real records of mixed traffic, as the API ships them."""
    artifacts = load_artifacts(model_dir)
    app = create_app(settings, Predictor(artifacts))
    with TestClient(app, raise_server_exceptions=False) as client:
        for i in range(200):
            case = CASES[i % len(CASES)]
            if i % 10 == 9:
                client.post("/predict/batch", json=CASES[i % 40 : i % 40 + 4])
            elif i % 20 == 3:
                client.post("/predict", json={"radius_mean": -1})
            elif i % 20 == 7:
                client.get("/health")
            else:
                client.post("/predict", json=case)
        assert app.state.shipper.wait_idle(30)
    r = redis.Redis.from_url(settings.redis_url.get_secret_value(), decode_responses=True)
    return [fields[RECORD_FIELD] for _, fields in r.xrange(settings.redis_stream)]


def fill(r: redis.Redis, stream: str, pool: list[str], n: int) -> list[str]:
    """`n` copies of pool records, each with its own transaction id; returns the records."""
    records = []
    for i in range(n):
        record = json.loads(pool[i % len(pool)])
        record["transaction"]["id"] = uuid.uuid4().hex
        records.append(json.dumps(record, separators=(",", ":")))
    for start in range(0, n, 5000):
        with r.pipeline(transaction=False) as pipe:
            for record in records[start : start + 5000]:
                pipe.xadd(stream, {RECORD_FIELD: record})
            pipe.execute()
    return records


def timed_once(env: dict[str, str], python: str = sys.executable) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    done = subprocess.run(
        [python, "-m", "logs_pipeline", "once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return elapsed, json.loads(done.stdout.strip().splitlines()[-1])


def direct_bulk_rate(url: str, records: list[str], names: IndexNames) -> tuple[int, float]:
    """The server's own rate for the documents the indexer makes of `records`."""
    indexer = Indexer(names, RecordFilter())
    lines = [
        bulk_lines(action | {"_index": f"{action['_index']}-000001"})  # the first generation
        for i, record in enumerate(records)
        for action in indexer.documents(*parse(Entry(f"{i}-0", {RECORD_FIELD: record})))
    ]
    headers = {"Content-Type": "application/x-ndjson"}
    with httpx.Client(base_url=url, timeout=300) as client:
        started = time.perf_counter()
        for start in range(0, len(lines), 500):
            response = client.post(
                "/_bulk", content=b"".join(lines[start : start + 500]), headers=headers
            )
            assert response.status_code == 200, response.text[:500]
            assert not response.json()["errors"], response.text[:500]
        elapsed = time.perf_counter() - started
    return len(lines), elapsed


class Paced:
    """`POST /predict` at a fixed rate from a few threads; keeps (transaction id, end time)."""

    def __init__(self, base: str, rate: float, seconds: float, threads: int = 6) -> None:
        self.base, self.rate, self.seconds, self.threads = base, rate, seconds, threads
        self.answered: list[tuple[str, float]] = []
        self.failed = 0
        self._lock = threading.Lock()

    def _worker(self, n: int, start: float) -> None:
        interval = self.threads / self.rate
        with httpx.Client(base_url=self.base, timeout=30) as client:
            k = 0
            while True:
                due = start + n * interval / self.threads + k * interval
                if due - start > self.seconds:
                    return
                time.sleep(max(0.0, due - time.time()))
                response = client.post("/predict", json=CASES[(n + k) % len(CASES)])
                ended = time.time()
                with self._lock:
                    if response.status_code == 200:
                        self.answered.append((response.json()["transaction_id"], ended))
                    else:
                        self.failed += 1
                k += 1

    def run(self) -> None:
        start = time.time() + 0.5
        workers = [
            threading.Thread(target=self._worker, args=(n, start)) for n in range(self.threads)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()


def ndjson_arrivals(path: Path, seen: dict[str, float], stop: threading.Event) -> None:
    """Tail the ml-api-logs file: the time each `_id` appeared, into `seen` as it goes."""
    while not path.exists() and not stop.is_set():
        time.sleep(0.02)
    with path.open() as f:
        pending = ""
        while not stop.is_set():
            chunk = f.read()
            now = time.time()
            if not chunk:
                time.sleep(0.05)
                continue
            pending += chunk
            *lines, pending = pending.split("\n")
            for line in lines:
                if line.startswith('{"index"'):
                    seen[json.loads(line)["index"]["_id"]] = now


def search_arrivals(
    url: str, index: str, wanted: list[str], seen: dict[str, float], stop: threading.Event
) -> None:
    """Poll a search for the `wanted` ids: the time each was first found, into `seen`."""
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.is_set():  # the caller waits for the stragglers, then stops this
            outstanding = [t for t in list(wanted) if t not in seen][:500]
            if outstanding:
                response = client.post(
                    f"/{index}/_search",
                    json={"size": 500, "_source": False, "query": {"ids": {"values": outstanding}}},
                )
                now = time.time()
                if response.status_code == 200:
                    for hit in response.json()["hits"]["hits"]:
                        seen.setdefault(hit["_id"], now)
            time.sleep(0.1)


def freshness(
    env: dict[str, str], rate: float, seconds: float, sink: str, search_url: str | None
) -> dict[str, Any]:
    api_port = free_port()
    local = {**env, "API_PORT": str(api_port), "REDIS_STREAM": f"fresh:{sink}:{rate:.0f}"}
    base = f"http://127.0.0.1:{api_port}"
    with ExitStack() as stack:
        stack.enter_context(process([sys.executable, "-m", "inferlog", "api"], local))
        stack.enter_context(process([sys.executable, "-m", "logs_pipeline", "run"], local))
        wait_ready(f"{base}/ready")
        time.sleep(3)  # the pipeline is up and blocking on the stream
        load = Paced(base, rate, seconds)
        stop = threading.Event()
        arrivals: dict[str, float] = {}
        wanted: list[str] = []
        if sink == "ndjson":
            path = Path(local["DATA_DIR"]) / "indices" / f"{local['INDEX_LOGS']}.ndjson"
            watcher = threading.Thread(
                target=ndjson_arrivals, args=(path, arrivals, stop), daemon=True
            )
        else:
            assert search_url is not None
            watcher = threading.Thread(
                target=search_arrivals,
                args=(search_url, local["INDEX_LOGS"], wanted, arrivals, stop),
                daemon=True,
            )
        watcher.start()
        if sink != "ndjson":

            def sample() -> None:
                while not stop.is_set():
                    with load._lock:
                        wanted[:] = [t for t, _ in load.answered[::5]]
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
        load.run()
        if sink != "ndjson":
            with load._lock:
                wanted[:] = [t for t, _ in load.answered[::5]]
        waited = time.time() + 30
        sampled = dict(load.answered if sink == "ndjson" else load.answered[::5])
        while time.time() < waited and not all(t in arrivals for t in sampled):
            time.sleep(0.2)
        stop.set()
        watcher.join(timeout=40)
    delays = [(arrivals[t] - ended) * 1000 for t, ended in sampled.items() if t in arrivals]
    return {
        "sink": sink,
        "rate": rate,
        "answered": len(load.answered),
        "achieved_rate": len(load.answered) / seconds,
        "measured": len(delays),
        "missing": len(sampled) - len(delays),
        "p50_ms": float(np.percentile(delays, 50)) if delays else None,
        "p95_ms": float(np.percentile(delays, 95)) if delays else None,
        "max_ms": max(delays) if delays else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=30_000, help="records for the NDJSON run")
    parser.add_argument("--es-records", type=int, default=3_000, help="records for the ES run")
    parser.add_argument("--seconds", type=float, default=20, help="length of each freshness run")
    parser.add_argument("--api-rate", type=float, default=420, help="the API's sustained req/s")
    parser.add_argument("--api-share", type=float, default=0.8, help="share of it for freshness")
    parser.add_argument(
        "--es-rates",
        type=float,
        nargs="*",
        default=[20],
        help="more freshness runs into the ES-compatible server, in requests/s (within what "
        "it can take: 100 requests/s make ~1,100 documents/s)",
    )
    parser.add_argument("--model-dir", type=Path, default=ROOT / "model")
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter of the timed NDJSON pipeline (one with the project installed)",
    )
    parser.add_argument(
        "--parts", default="ndjson,elasticsearch,freshness", help="which measurements to run"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("needed: redis-server (apt-get install redis-server)")
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        redis_port = free_port()
        stack.enter_context(
            process([binary, "--port", str(redis_port), "--save", ""], dict(os.environ))
        )
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        r = redis.Redis.from_url(redis_url, decode_responses=True, protocol=2)
        time.sleep(0.5)
        env = {
            **os.environ,
            "MODEL_DIR": str(args.model_dir),
            "DATA_DIR": str(Path(tmp) / "ndjson"),
            "REDIS_URL": redis_url,
            "LOG_LEVEL": "WARNING",
            "INDEX_LOGS": "ml-api-logs",
        }
        env.pop("ELASTICSEARCH_URL", None)
        pool_settings = Settings(
            model_dir=args.model_dir,
            data_dir=Path(tmp) / "pool",
            redis_url=redis_url,
            redis_stream="bench:pool",
            allowed_hosts=["testserver"],  # TestClient's host
        )
        pool = make_pool(pool_settings, args.model_dir)
        print(f"pool: {len(pool)} real records", file=sys.stderr)

        server = OsmemServer.start()
        stack.callback(server.close)
        proxy = SearchProxy(server.url)  # the header shim; it also stands in for ILM
        stack.callback(proxy.close)

        if "ndjson" in parts:  # 1. NDJSON, whole process
            startup, _ = timed_once({**env, "REDIS_STREAM": "bench:empty"}, args.python)
            fill(r, "bench:ndjson", pool, args.records)
            elapsed, summary = timed_once({**env, "REDIS_STREAM": "bench:ndjson"}, args.python)
            assert summary["entries"] == args.records, summary
            results["ndjson"] = {
                "python": args.python,
                "records": args.records,
                "seconds": elapsed,
                "records_per_s": args.records / elapsed,
                "startup_seconds": startup,
                "records_per_s_after_startup": args.records / (elapsed - startup),
                "documents": sum(summary["indexed"].values()),
            }
            print(json.dumps(results["ndjson"]), file=sys.stderr)

        es_env = {**env, "ELASTICSEARCH_URL": proxy.url, "REDIS_STREAM": "bench:es"}
        subprocess.run([sys.executable, "-m", "logs_pipeline", "setup"], env=es_env, check=True)
        if "elasticsearch" in parts:  # 2. the server's own bulk rate, then the pipeline's
            direct = IndexNames("direct-logs", "direct-message", "direct-perfs", "direct-dl")
            with httpx.Client(base_url=proxy.url, timeout=30) as client:
                for name, body in index_templates(direct, policy=None).items():
                    assert client.put(f"/_index_template/{name}", json=body).status_code == 200
            records = fill(r, "bench:es", pool, args.es_records)
            documents, direct_seconds = direct_bulk_rate(proxy.url, records, direct)
            elapsed, summary = timed_once(es_env)
            assert summary["entries"] == args.es_records, summary
            indexed = sum(summary["indexed"].values())
            assert indexed == documents, (indexed, documents)
            results["elasticsearch"] = {
                "records": args.es_records,
                "documents": documents,
                "direct_documents_per_s": documents / direct_seconds,
                "pipeline_seconds": elapsed,
                "pipeline_records_per_s": args.es_records / elapsed,
                "pipeline_documents_per_s": documents / elapsed,
                "share_of_direct": direct_seconds / elapsed,
            }
            print(json.dumps(results["elasticsearch"]), file=sys.stderr)

        if "freshness" in parts:  # 3. response -> searchable
            results["freshness"] = []
            high = args.api_rate * args.api_share
            runs = [("ndjson", 100), ("ndjson", high), ("elasticsearch", 100)]
            runs += [("elasticsearch", rate) for rate in args.es_rates]
            for sink, rate in runs:
                sink_env = {**env, "DATA_DIR": str(Path(tmp) / f"fresh-{sink}-{rate:.0f}")}
                if sink == "elasticsearch":
                    sink_env["ELASTICSEARCH_URL"] = proxy.url
                run = freshness(sink_env, rate, args.seconds, sink, proxy.url)
                results["freshness"].append(run)
                print(json.dumps(run), file=sys.stderr)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
