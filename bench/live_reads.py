"""Does watching the service slow it? Inference latency with and without the Monitoring tab's polls.

Starts a redis-server, one API process and the logs pipeline (NDJSON sink) on loopback, as
`make run` does, and fills the live window with `--records` records (wrk at concurrency 4).
Then, in alternating phases of `--seconds` each (`--rounds` of each):

- **alone**: wrk at concurrency 1 on `POST /predict`;
- **watched**: the same, while a separate process polls `GET /logs/stats` and
  `GET /logs?transaction_id=…` every 3 s, as the UI's Monitoring and Logs tabs do.

Reported: wrk's p50/p99/max per phase, the ratio of p99 watched / alone, and the latency of
the polls themselves. Then the pipeline is stopped and the stream is filled to `--entries`
entries (with their transaction index, as the shipper writes them) to time `GET /logs/{id}`
and `logs_pipeline status` at that size.

    uv run python bench/live_reads.py [--seconds 15] [--rounds 2] [--records 10000]
                                      [--entries 1000000]

Needs `redis-server` and `wrk` (apt-get install redis-server wrk).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
from api_latency import free_port, one_run, process, wait_ready, write_wrk_script

from inferlog.telemetry.keys import transaction_key
from inferlog.telemetry.record import RECORD_FIELD
from logs_pipeline.status import stream_status

ROOT = Path(__file__).resolve().parents[1]
POLL_SECONDS = 3.0


def poll(base: str, transaction_id: str, seconds: float) -> None:
    """The watcher (run in its own process): poll like the UI, print the latencies as JSON."""
    latencies: dict[str, list[float]] = {"stats": [], "by_transaction": []}
    with httpx.Client(base_url=base, timeout=30) as client:
        # Started (imports and all) before the phase, not during it: say so, wait for "go".
        print("ready", flush=True)
        sys.stdin.readline()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for name, path, params in (
                ("stats", "/logs/stats", {}),
                ("by_transaction", "/logs", {"transaction_id": transaction_id}),
            ):
                started = time.perf_counter()
                response = client.get(path, params=params)
                latencies[name].append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
            time.sleep(POLL_SECONDS)
    print(json.dumps(latencies))


def summary(values: list[float]) -> dict[str, float]:
    p50, p95 = np.percentile(values, [50, 95]).tolist()
    return {"n": len(values), "p50_ms": p50, "p95_ms": p95, "max_ms": max(values)}


def fill_window(wrk: str, script: Path, base: str, r: redis.Redis, stream: str, n: int) -> None:
    while r.xlen(stream) < n:
        one_run(wrk, script, base, 4, 10, "fill")
        print(f"  window: {r.xlen(stream)} records", file=sys.stderr)


def fill_stream(r: redis.Redis, stream: str, template: dict[str, Any], n: int) -> list[str]:
    """Entries up to `n`, each a real record under its own transaction id, indexed."""
    ids: list[str] = []
    batch = 2000
    while r.xlen(stream) < n:
        with r.pipeline(transaction=False) as pipe:
            tids = [f"bench-{len(ids) + i:08d}" for i in range(batch)]
            for tid in tids:
                template["transaction"]["id"] = tid
                pipe.xadd(stream, {RECORD_FIELD: json.dumps(template)})
            entry_ids = pipe.execute()
        with r.pipeline(transaction=False) as pipe:
            for tid, entry_id in zip(tids, entry_ids, strict=True):
                pipe.set(transaction_key(stream, tid), entry_id, ex=7200)
            pipe.execute()
        ids += tids
        if len(ids) % 100_000 == 0:
            print(f"  stream: {r.xlen(stream)} entries", file=sys.stderr)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=15, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=2, help="phases of each kind")
    parser.add_argument("--records", type=int, default=10_000, help="records in the window")
    parser.add_argument("--entries", type=int, default=1_000_000, help="stream size for lookups")
    parser.add_argument("--model-dir", type=Path, default=ROOT / "model")
    parser.add_argument("--poll", nargs=2, help=argparse.SUPPRESS)  # watcher: URL, id
    args = parser.parse_args()
    if args.poll:
        poll(args.poll[0], args.poll[1], args.seconds)
        return
    tools = {name: shutil.which(name) for name in ("redis-server", "wrk")}
    if None in tools.values():
        sys.exit("needed: redis-server and wrk (apt-get install redis-server wrk)")
    wrk = tools["wrk"] or ""
    stream = "bench:live"
    results: dict[str, Any] = {"alone": [], "watched": [], "polls": {}}
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        redis_port, api_port = free_port(), free_port()
        stack.enter_context(
            process(
                [tools["redis-server"] or "", "--port", str(redis_port), "--save", ""],
                dict(os.environ),
            )
        )
        env = {
            **os.environ,
            "API_PORT": str(api_port),
            "MODEL_DIR": str(args.model_dir),
            "DATA_DIR": tmp,
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "REDIS_STREAM": stream,
            "LOG_LEVEL": "WARNING",
        }
        base = f"http://127.0.0.1:{api_port}"
        stack.enter_context(process([sys.executable, "-m", "inferlog", "api"], env))
        pipeline = subprocess.Popen(
            [sys.executable, "-m", "logs_pipeline", "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_ready(f"{base}/ready")
        r = redis.Redis(port=redis_port, decode_responses=True, protocol=2)
        script = write_wrk_script(Path(tmp))
        fill_window(wrk, script, base, r, stream, args.records)
        newest = httpx.get(f"{base}/logs", params={"limit": 1}, timeout=60).json()["records"]
        transaction_id = newest[0]["transaction"]["id"]

        for round_no in range(args.rounds):
            for phase in ("alone", "watched"):
                watcher = None
                if phase == "watched":
                    watcher = subprocess.Popen(
                        [
                            *(sys.executable, __file__, "--poll", base, transaction_id),
                            *("--seconds", str(args.seconds)),
                        ],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                    assert watcher.stdin is not None
                    assert watcher.stdout is not None
                    assert watcher.stdout.readline().strip() == "ready"
                    time.sleep(2)  # let the machine settle after the watcher's start
                    watcher.stdin.write("go\n")
                    watcher.stdin.flush()
                run = one_run(wrk, script, base, 1, args.seconds, f"{phase}{round_no}")
                results[phase].append(run)
                if watcher is not None:
                    out, _ = watcher.communicate(timeout=120)
                    for name, values in json.loads(out.strip().splitlines()[-1]).items():
                        results["polls"].setdefault(name, []).extend(values)
                print(
                    f"round {round_no + 1} {phase}: p50 {run.p50_ms:.2f} ms, "
                    f"p99 {run.p99_ms:.2f} ms, max {run.max_ms:.1f} ms, "
                    f"{run.responses} responses",
                    file=sys.stderr,
                )
        window_records = int(httpx.get(f"{base}/logs/stats").json()["requests"])
        pipeline.terminate()
        pipeline.wait(timeout=60)

        template = json.loads(r.xrevrange(stream, count=1)[0][1][RECORD_FIELD])
        print(f"filling the stream to {args.entries} entries", file=sys.stderr)
        ids = fill_stream(r, stream, template, args.entries)
        lookups = []
        with httpx.Client(base_url=base, timeout=30) as client:
            for tid in random.sample(ids, 200):
                started = time.perf_counter()
                found = client.get(f"/logs/{tid}")
                lookups.append((time.perf_counter() - started) * 1000)
                assert found.status_code == 200
                assert found.json()["transaction"]["id"] == tid
        status_ms = []
        for _ in range(20):
            started = time.perf_counter()
            stream_status(r, stream, "logs-pipeline", stale_after_ms=60_000)
            status_ms.append((time.perf_counter() - started) * 1000)
        stream_length = r.xlen(stream)

    alone_p99 = statistics.median(run.p99_ms for run in results["alone"])
    watched_p99 = statistics.median(run.p99_ms for run in results["watched"])

    def latencies(run: Any) -> dict[str, float]:
        return {k: getattr(run, k) for k in ("responses", "p50_ms", "p99_ms", "max_ms")}

    report = {
        "date": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "command": "uv run python " + " ".join(sys.argv),
        "records_in_window": window_records,
        "alone": [latencies(run) for run in results["alone"]],
        "watched": [latencies(run) for run in results["watched"]],
        "p99_watched_over_alone": watched_p99 / alone_p99,
        "polls": {name: summary(values) for name, values in results["polls"].items()},
        "stream_entries": stream_length,
        "lookup_by_id": summary(lookups),
        "status": summary(status_ms),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
