"""The most expensive request of each route at the documented limits, in CPU time of the API.

Starts a redis-server and one API process (`python -m inferlog api`, defaults but for the
ports) on loopback, fills the live window with `--records` records of the largest kind (a
batch of MAX_BATCH_SIZE cases, whose record keeps RECORD_MAX_CASES of them), then sends each
probe below `--repeat` times, one at a time, after two unmeasured sends. A probe is the worst
request of its route that the limits admit: the largest body, the most errors, the widest
scan. Reported per probe: the status and size of the answer, and per request the CPU time of
the API process (its event loop, so what every other request waits behind) and of its reader
process (the scans of the window, one at a time, off the event loop), and the wall time.

The CPU is read with psutil once the probe's records are in Redis: the records a request
makes are part of its cost.

    .venv/bin/python bench/request_costs.py [--repeat 10] [--records 10000]

Needs `redis-server` (apt-get install redis-server).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis
from api_latency import drained, free_port, process, wait_ready
from live_reads import fill_stream

from inferlog.api.routes.logs import MAX_PAGE
from inferlog.api.routes.predict import CASE_BODY_BYTES
from inferlog.config import Settings
from inferlog.features import FEATURE_NAMES
from inferlog.ml import dataset

ROOT = Path(__file__).resolve().parents[1]
ADMIN_KEY = "bench-admin-key"


@dataclass
class Probe:
    route: str
    what: str
    method: str
    path: str
    send: dict[str, Any] = field(default_factory=dict)  # httpx arguments
    repeat: int | None = None  # default: --repeat
    single_cases_first: bool = False  # add DRIFT_MAX_CASES one-case records to the window first


@dataclass
class Cost:
    probe: Probe
    status: int
    answer_bytes: int
    api_ms: float
    reader_ms: float
    wall_ms: float


def filled(unit: Callable[[int], bytes], opening: bytes, closing: bytes, limit: int) -> bytes:
    """`opening`, then `unit(0)`, `unit(1)`… joined by commas, as many as fit in `limit`."""
    parts, size, n = [opening], len(opening) + len(closing), 0
    while size + len(piece := unit(n)) + 1 <= limit:
        parts.append(piece if n == 0 else b"," + piece)
        size += len(piece) + 1
        n += 1
    return b"".join(parts) + closing


def probes(settings: Settings, transaction_id: str) -> list[Probe]:
    limit = settings.max_body_bytes
    cases = dataset.held_out_cases()
    batch = [cases[n % len(cases)] for n in range(settings.max_batch_size)]
    json_type = {"Content-Type": "application/json"}
    csv_type = {"Content-Type": "text/csv"}
    header = ",".join(FEATURE_NAMES)
    rows = [",".join(str(case[name]) for name in FEATURE_NAMES) for case in batch]
    many_keys = filled(lambda n: b'"k%07d":0' % n, b"{", b"}", limit)
    case_keys = filled(lambda n: b'"k%07d":0' % n, b"{", b"}", CASE_BODY_BYTES)
    huge_key = json.dumps({**cases[0], "k" * (limit - 2000): 1}).encode()
    bad_batch = json.dumps([dict.fromkeys(FEATURE_NAMES, "x")] * settings.max_batch_size)
    many_items = filled(lambda n: b"{}", b"[", b"]", limit)
    row = rows[0].encode() + b"\n"
    many_rows = header.encode() + b"\n" + row * ((limit - len(header) - 1) // len(row))
    wide_header = filled(lambda n: b"c%d" % n, b"", b"\n", limit)
    reads = [
        Probe(
            "GET /logs",
            f"a page of {MAX_PAGE} of the largest records",
            "GET",
            f"/logs?limit={MAX_PAGE}&path=/predict/batch&status=200",
        ),
        Probe(
            "GET /logs",
            "a filter no record matches: the whole scan",
            "GET",
            f"/logs?limit={MAX_PAGE}&status=599",
        ),
        Probe(
            "GET /logs",
            "?transaction_id= (a keyed lookup)",
            "GET",
            f"/logs?transaction_id={transaction_id}",
        ),
        Probe("GET /logs/{id}", "one record", "GET", f"/logs/{transaction_id}"),
        Probe("GET /logs/stats", "the window's statistics", "GET", "/logs/stats"),
        Probe(
            "GET /drift",
            "a window of the largest records (DRIFT_MAX_CASES reached first)",
            "GET",
            "/drift",
        ),
    ]
    return [
        Probe("GET /health", "", "GET", "/health"),
        Probe("GET /ready", "", "GET", "/ready"),
        Probe("GET /model-info", "", "GET", "/model-info"),
        Probe("GET /examples", "", "GET", "/examples"),
        Probe("GET /metrics", "", "GET", "/metrics"),
        Probe("GET /openapi.json", "", "GET", "/openapi.json"),
        Probe("GET /docs", "", "GET", "/docs"),
        Probe("POST /predict", "one case", "POST", "/predict", {"json": cases[0]}),
        Probe(
            "POST /predict",
            f"{len(many_keys) // 1000} KB of unknown keys",
            "POST",
            "/predict",
            {"content": many_keys, "headers": json_type},
        ),
        Probe(
            "POST /predict",
            f"{len(case_keys) // 1000} KB of unknown keys: the most it admits",
            "POST",
            "/predict",
            {"content": case_keys, "headers": json_type},
        ),
        Probe(
            "POST /predict",
            f"one key of {len(huge_key) // 1000} KB",
            "POST",
            "/predict",
            {"content": huge_key, "headers": json_type},
        ),
        Probe(
            "POST /predict_proba",
            f"{len(many_keys) // 1000} KB of unknown keys",
            "POST",
            "/predict_proba",
            {"content": many_keys, "headers": json_type},
        ),
        Probe(
            "POST /predict_proba",
            f"{len(case_keys) // 1000} KB of unknown keys: the most it admits",
            "POST",
            "/predict_proba",
            {"content": case_keys, "headers": json_type},
        ),
        Probe(
            "POST /predict/batch",
            f"JSON, {len(batch)} cases",
            "POST",
            "/predict/batch",
            {"json": batch},
        ),
        Probe(
            "POST /predict/batch",
            f"JSON, {len(batch)} cases, every value wrong",
            "POST",
            "/predict/batch",
            {"content": bad_batch.encode(), "headers": json_type},
        ),
        Probe(
            "POST /predict/batch",
            f"JSON, {len(many_items) // 1000} KB of empty cases",
            "POST",
            "/predict/batch",
            {"content": many_items, "headers": json_type},
        ),
        Probe(
            "POST /predict/batch",
            f"CSV, {len(batch)} rows",
            "POST",
            "/predict/batch",
            {"content": ("\n".join([header, *rows]) + "\n").encode(), "headers": csv_type},
        ),
        Probe(
            "POST /predict/batch",
            f"CSV, {len(many_rows) // 1000} KB of rows",
            "POST",
            "/predict/batch",
            {"content": many_rows, "headers": csv_type},
        ),
        Probe(
            "POST /predict/batch",
            f"CSV, a header of {len(wide_header) // 1000} KB",
            "POST",
            "/predict/batch",
            {"content": wide_header, "headers": csv_type},
        ),
        *reads,
        Probe(
            "GET /drift",
            "the newest records single cases: DRIFT_MAX_CASES records read",
            "GET",
            "/drift",
            single_cases_first=True,
        ),
        Probe(
            "DELETE /logs",
            "every record acknowledged (the window removed)",
            "DELETE",
            "/logs",
            {"headers": {"X-API-Key": ADMIN_KEY}},
            repeat=1,
        ),
    ]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        with suppress(psutil.NoSuchProcess):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def measure(
    client: httpx.Client, api: psutil.Process, r: redis.Redis, stream: str, probe: Probe, n: int
) -> Cost:
    warm = 0 if probe.method == "DELETE" else 2
    for _ in range(warm):
        client.request(probe.method, probe.path, **probe.send)
    drained(r, stream, 0.5)
    readers = api.children(recursive=True)
    api_before, reader_before = cpu_seconds([api]), cpu_seconds(readers)
    started = time.perf_counter()
    for _ in range(n):
        answer = client.request(probe.method, probe.path, **probe.send)
    wall = time.perf_counter() - started
    drained(r, stream, 0.5)  # the records of these requests are part of their cost
    readers = api.children(recursive=True)
    return Cost(
        probe,
        answer.status_code,
        len(answer.content),
        (cpu_seconds([api]) - api_before) / n * 1000,
        (cpu_seconds(readers) - reader_before) / n * 1000,
        wall / n * 1000,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=10, help="measured sends of each probe")
    parser.add_argument("--records", type=int, default=10_000, help="records in the window")
    parser.add_argument("--model-dir", type=Path, default=ROOT / "model")
    args = parser.parse_args()
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        sys.exit("needed: redis-server (apt-get install redis-server)")
    stream = "bench:costs"
    settings = Settings()  # what the API process reads too: defaults, or .env
    costs: list[Cost] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        redis_port, api_port = free_port(), free_port()
        stack.enter_context(
            process([redis_server, "--port", str(redis_port), "--save", ""], dict(os.environ))
        )
        env = {
            **os.environ,
            "API_PORT": str(api_port),
            "MODEL_DIR": str(args.model_dir),
            "DATA_DIR": tmp,
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "REDIS_STREAM": stream,
            "API_KEYS": ADMIN_KEY,
            "LOG_LEVEL": "WARNING",
        }
        base = f"http://127.0.0.1:{api_port}"
        api_process = stack.enter_context(process([sys.executable, "-m", "inferlog", "api"], env))
        wait_ready(f"{base}/ready")
        api = psutil.Process(api_process.pid)
        r = redis.Redis(port=redis_port, decode_responses=True, protocol=2)
        headers = {"X-API-Key": ADMIN_KEY}
        with httpx.Client(base_url=base, timeout=120, headers=headers) as client:
            cases = dataset.held_out_cases()
            batch = [cases[n % len(cases)] for n in range(settings.max_batch_size)]
            assert client.post("/predict/batch", json=batch).status_code == 200
            drained(r, stream, 0.5)
            template = json.loads(r.xrevrange(stream, count=1)[0][1]["record"])
            print(f"filling the window to {args.records} records", file=sys.stderr)
            ids = fill_stream(r, stream, template, args.records)
            for probe in probes(settings, ids[-1]):
                if probe.single_cases_first:  # the worst window for /drift: one case a record
                    assert client.post("/predict", json=cases[0]).status_code == 200
                    drained(r, stream, 0.5)
                    one = json.loads(r.xrevrange(stream, count=1)[0][1]["record"])
                    fill_stream(r, stream, one, r.xlen(stream) + settings.drift_max_cases)
                cost = measure(client, api, r, stream, probe, probe.repeat or args.repeat)
                costs.append(cost)
                print(
                    f"{probe.route:22} {probe.what:48} {cost.status} "
                    f"api {cost.api_ms:7.1f} ms  reader {cost.reader_ms:7.1f} ms  "
                    f"wall {cost.wall_ms:7.1f} ms",
                    file=sys.stderr,
                )
    record_bytes = len(json.dumps(template))
    print(
        f"\n{dt.datetime.now(dt.UTC).date()}, {platform.python_version()}, {os.cpu_count()} cores; "
        f"{args.records} records of {record_bytes // 1000} KB in the window; MAX_BODY_BYTES "
        f"{settings.max_body_bytes}, MAX_BATCH_SIZE {settings.max_batch_size}, "
        f"RECORD_MAX_CASES {settings.record_max_cases}, SCAN_MAX_RECORDS "
        f"{settings.scan_max_records}, SCAN_MAX_BYTES {settings.scan_max_bytes}, "
        f"DRIFT_MAX_CASES {settings.drift_max_cases}, /logs pages of {MAX_PAGE}; "
        f"ms of CPU per request, mean of {args.repeat}\n"
    )
    print("| route | the request | answer | API CPU ms | reader CPU ms | wall ms |")
    print("|---|---|---|---:|---:|---:|")
    for c in costs:
        size = f"{c.status}, {c.answer_bytes:,} B"
        print(
            f"| `{c.probe.route}` | {c.probe.what} | {size} | {c.api_ms:.1f} | "
            f"{c.reader_ms:.1f} | {c.wall_ms:.1f} |"
        )


if __name__ == "__main__":
    main()
