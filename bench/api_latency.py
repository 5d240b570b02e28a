"""Sustained API throughput and latency, counted until the last record of each run is in Redis.

Starts a redis-server and one API process per mode on loopback, then loads `POST /predict`
with wrk (a separate C process) at a fixed concurrency for a fixed time per run:

- **telemetry on**: every inference profiled, one record per request (the default);
- **profiling off**: records, no profiling;
- **telemetry off**: no records, no profiling;
- **telemetry on, N workers** (with `--workers N`): as the first, `API_WORKERS=N`.

A request counts only once its record is in the stream: throughput is records ÷ (time from
the start of the run to the Redis timestamp of the run's last entry), so work deferred past
the last response is part of the run. After each run the run's entries are read back: every
request id exactly once, the profiled share, and the freshness of each record (its entry's
Redis time minus the end of its response). Modes are interleaved in rounds so the machine's
noise hits all of them alike; ratios come from the same run.

    uv run python bench/api_latency.py [--seconds 60] [--rounds 1] [--concurrency 8] [--workers 2]

Needs `redis-server` and `wrk` (apt-get install redis-server wrk).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import redis

from inferlog.cli import free_port
from inferlog.ml import dataset

ROOT = Path(__file__).resolve().parents[1]
ON = {"TELEMETRY_ENABLED": "true", "PROFILING_ENABLED": "true"}
MODES: dict[str, dict[str, str]] = {
    "telemetry on": ON,
    "profiling off": {"TELEMETRY_ENABLED": "true", "PROFILING_ENABLED": "false"},
    "telemetry off": {"TELEMETRY_ENABLED": "false"},
}
OFF = "telemetry off"

# wrk's Lua: rotate real held-out cases, give every request its own X-Request-ID, and print
# one JSON line of results at the end.
WRK_SCRIPT = """
local bodies = {%(bodies)s}
local counter = 0
local threads_made = 0
function setup(thread)
  threads_made = threads_made + 1
  thread:set("thread_no", threads_made)  -- a global of that thread's own Lua state
end
function init(args)
  prefix = args[1] .. "-" .. thread_no .. "-"
end
function request()
  counter = counter + 1
  return wrk.format("POST", "/predict", {
    ["Content-Type"] = "application/json",
    ["X-Request-ID"] = prefix .. counter,
  }, bodies[(counter %% #bodies) + 1])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"responses": %%d, "seconds": %%f, "socket_errors": %%d, "non_2xx": %%d, ' ..
    '"p50_ms": %%f, "p99_ms": %%f, "max_ms": %%f}\\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout,
    e.status, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3))
end
"""


@dataclass
class Run:
    responses: int
    seconds: float
    socket_errors: int
    non_2xx: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    records: int = 0
    api_cpu_seconds: float = 0.0
    machine_busy: float = 0.0  # share of all cores busy during the run (API, wrk, Redis, rest)
    request_ids: int = 0
    duplicates: int = 0
    profiled_share: float | None = None
    to_last_record_s: float | None = None
    freshness_ms: list[float] = field(default_factory=list)

    @property
    def cpu_ms_per_request(self) -> float:
        return self.api_cpu_seconds * 1000 / max(self.records, self.responses)

    @property
    def sustained_rps(self) -> float:
        if self.to_last_record_s is None:  # no records in this mode: responses only
            return self.responses / self.seconds
        return self.records / self.to_last_record_s


def wait_ready(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready")


@contextmanager
def process(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def write_wrk_script(directory: Path) -> Path:
    bodies = ", ".join(f"[==[{json.dumps(case)}]==]" for case in dataset.held_out_cases()[:50])
    path = directory / "predict.lua"
    path.write_text(WRK_SCRIPT % {"bodies": bodies})
    return path


def api_cpu_seconds(proc: subprocess.Popen[bytes]) -> float:
    """CPU time of the API process and its workers: steadier than wall time on a busy machine."""
    parent = psutil.Process(proc.pid)
    total = 0.0
    for p in [parent, *parent.children(recursive=True)]:
        with suppress(psutil.NoSuchProcess):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def busy_share(before: Any, after: Any) -> float:
    """Share of the machine's CPU time that was not idle between two psutil.cpu_times()."""
    total = sum(after) - sum(before)
    idle = (after.idle + after.iowait) - (before.idle + before.iowait)
    return 1 - idle / total if total else 0.0


def metric(base: str, name: str) -> float | None:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


def drained(r: redis.Redis, stream: str, quiet_seconds: float = 1.0) -> None:
    """Wait until the stream stops growing (every worker has shipped its backlog)."""
    length, still_since = r.xlen(stream), time.monotonic()
    deadline = time.monotonic() + 300
    while time.monotonic() - still_since < quiet_seconds and time.monotonic() < deadline:
        time.sleep(0.1)
        now = r.xlen(stream)
        if now != length:
            length, still_since = now, time.monotonic()


def read_back(r: redis.Redis, stream: str, after_id: str, run_id: str, run: Run) -> float:
    """Check the run's records; returns the Redis time (ms) of the run's last entry."""
    seen: set[str] = set()
    profiled = inferences = 0
    last_ms = 0.0
    low = f"({after_id}"
    while True:
        entries = r.xrange(stream, min=low, max="+", count=5000)
        for entry_id, fields in entries:
            record = json.loads(fields["record"])
            request_id = record["http"]["request"].get("id", "")
            if not request_id.startswith(run_id):
                continue
            run.records += 1
            if request_id in seen:
                run.duplicates += 1
            seen.add(request_id)
            entry_ms = float(entry_id.split("-")[0])
            last_ms = max(last_ms, entry_ms)
            stamp = dt.datetime.fromisoformat(record["@timestamp"]).timestamp() * 1000
            answered_ms = stamp + record["event"]["duration"] / 1e6
            run.freshness_ms.append(entry_ms - answered_ms)
            if "ml" in record:
                inferences += 1
                profiled += record["ml"]["profile"]["profiled"]
        if len(entries) < 5000:
            break
        low = "(" + entries[-1][0]
    run.request_ids = len(seen)
    run.profiled_share = profiled / inferences if inferences else None
    return last_ms


def one_run(wrk: str, script: Path, base: str, concurrency: int, seconds: int, run_id: str) -> Run:
    done = subprocess.run(
        [
            wrk,
            f"-t{min(2, concurrency)}",
            f"-c{concurrency}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            base,
            "--",
            run_id,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return Run(**json.loads(done.stdout.strip().splitlines()[-1]))


def shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="length of each run")
    parser.add_argument("--rounds", type=int, default=1, help="runs per mode, interleaved")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="add a mode with N API workers")
    parser.add_argument("--model-dir", type=Path, default=ROOT / "model")
    args = parser.parse_args()
    tools = {name: shutil.which(name) for name in ("redis-server", "wrk")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        sys.exit(f"needed: {', '.join(missing)} (apt-get install {' '.join(missing)})")
    if not (args.model_dir / "model_card.json").exists():
        sys.exit(f"no model in {args.model_dir}: run `make model` first")
    modes = dict(MODES)
    if args.workers > 1:
        modes[f"telemetry on, {args.workers} workers"] = {**ON, "API_WORKERS": str(args.workers)}

    runs: dict[str, list[Run]] = {name: [] for name in modes}
    peaks: dict[str, dict[str, float | None]] = {}
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        redis_port = free_port()
        redis_server = tools["redis-server"] or ""
        stack.enter_context(
            process(
                [redis_server, "--port", str(redis_port), "--save", "", "--appendonly", "no"],
                dict(os.environ),
            )
        )
        r = redis.Redis(port=redis_port, decode_responses=True, protocol=2)
        script = write_wrk_script(Path(tmp))
        bases, streams, procs = {}, {}, {}
        for n, (name, mode_env) in enumerate(modes.items()):
            port = free_port()
            streams[name] = f"bench:{n}"
            env = {
                **os.environ,
                **mode_env,
                "API_PORT": str(port),
                "MODEL_DIR": str(args.model_dir),
                "DATA_DIR": str(Path(tmp) / f"mode-{n}"),
                "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "REDIS_STREAM": streams[name],
                "LOG_LEVEL": "WARNING",
            }
            procs[name] = stack.enter_context(
                process([sys.executable, "-m", "inferlog", "api"], env)
            )
            bases[name] = f"http://127.0.0.1:{port}"
        for base in bases.values():
            wait_ready(f"{base}/ready")

        for round_no in range(args.rounds):
            for name, base in bases.items():
                run_id = f"r{round_no}m{list(bases).index(name)}"
                stream = streams[name]
                r.xadd(stream, {"record": "{}"})  # a marker: the run's entries come after it
                after_id = r.xrevrange(stream, count=1)[0][0]
                started_ms = time.time() * 1000
                cpu_before = api_cpu_seconds(procs[name])
                machine_before = psutil.cpu_times()
                run = one_run(
                    tools["wrk"] or "", script, base, args.concurrency, args.seconds, run_id
                )
                if name != OFF:
                    drained(r, stream)
                run.machine_busy = busy_share(machine_before, psutil.cpu_times())
                run.api_cpu_seconds = api_cpu_seconds(procs[name]) - cpu_before
                if name != OFF:
                    last_ms = read_back(r, stream, after_id, run_id, run)
                    run.to_last_record_s = (last_ms - started_ms) / 1000
                runs[name].append(run)
                print(
                    f"  {run.responses} responses, {run.records} records, "
                    f"{run.request_ids} request ids, {run.duplicates} twice",
                    file=sys.stderr,
                )
                print(
                    f"round {round_no + 1}/{args.rounds} {name}: "
                    f"{run.sustained_rps:.0f} requests/s",
                    file=sys.stderr,
                )
        for name, base in bases.items():
            peaks[name] = {
                key: metric(base, f"inferlog_shipper_{key}")
                for key in ("backlog_peak", "spooled_total", "dropped_total")
            }

    print(f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    command = (
        f"uv run python bench/api_latency.py --seconds {args.seconds} --rounds {args.rounds} "
        f"--concurrency {args.concurrency}" + (f" --workers {args.workers}" if args.workers else "")
    )
    print(f"command: {command}")
    print()
    print(
        "| mode | responses | records | sustained req/s | / off | API CPU ms/request | / off "
        "| machine busy | p50 ms | p99 ms | profiled | freshness p50 / p99 ms | peak backlog "
        "| spooled | dropped |"
    )
    print("|" + " --- |" * 15)
    off_rps = statistics.median(run.sustained_rps for run in runs[OFF])
    off_cpu = statistics.median(run.cpu_ms_per_request for run in runs[OFF])
    for name, mode_runs in runs.items():
        rps = statistics.median(run.sustained_rps for run in mode_runs)
        cpu = statistics.median(run.cpu_ms_per_request for run in mode_runs)
        busy = statistics.median(run.machine_busy for run in mode_runs)
        responses = sum(run.responses for run in mode_runs)
        records = sum(run.records for run in mode_runs)
        exact = all(
            run.duplicates == 0 and run.records == run.request_ids >= run.responses
            for run in mode_runs
        )
        fresh = [x for run in mode_runs for x in run.freshness_ms]
        freshness = "n/a"
        if fresh:
            p50, p99 = np.percentile(fresh, [50, 99]).tolist()
            freshness = f"{p50:.0f} / {p99:.0f}"
        shares = [run.profiled_share for run in mode_runs if run.profiled_share is not None]
        profiled = f"{min(shares) * 100:.1f} %" if shares else "n/a"
        latency = [(run.p50_ms, run.p99_ms) for run in mode_runs]
        p50 = statistics.median(x for x, _ in latency)
        p99 = statistics.median(y for _, y in latency)
        # /metrics is per process: with several workers it would show one of them.
        peak = peaks[name] if "workers" not in name else dict.fromkeys(peaks[name])

        record_cell = "n/a" if name == OFF else f"{records}{'' if exact else ' (NOT exact)'}"
        print(
            f"| {name} | {responses} | {record_cell} | {rps:.0f} | {rps / off_rps:.2f} | "
            f"{cpu:.2f} | {cpu / off_cpu:.2f} | {busy * 100:.0f} % | "
            f"{p50:.1f} | {p99:.1f} | {profiled} | {freshness} | "
            f"{shown(peak['backlog_peak'])} | {shown(peak['spooled_total'])} | "
            f"{shown(peak['dropped_total'])} |"
        )
    errors = {
        name: sum(run.socket_errors + run.non_2xx for run in mode_runs)
        for name, mode_runs in runs.items()
    }
    print()
    print(f"socket errors and non-2xx answers: {errors}")


if __name__ == "__main__":
    main()
