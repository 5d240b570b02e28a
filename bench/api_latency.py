"""API latency and throughput with telemetry fully on, profiling off, and telemetry off.

Starts a redis-server and one single-worker API process per mode on loopback, then loads
`POST /predict` from this process (a separate one) with keep-alive clients at concurrency 1
and 8. Modes are interleaved in rounds so that the machine's noise hits all of them alike;
ratios against "telemetry off" are computed from the same run.

    uv run python bench/api_latency.py [--rounds 5] [--requests 400]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx2 as httpx
import numpy as np

from inferlog.ml import dataset

ROOT = Path(__file__).resolve().parents[1]
MODES = {
    "telemetry on": {"TELEMETRY_ENABLED": "true", "PROFILING_ENABLED": "true"},
    "profiling off": {"TELEMETRY_ENABLED": "true", "PROFILING_ENABLED": "false"},
    "telemetry off": {"TELEMETRY_ENABLED": "false"},
}
CASES = dataset.held_out_cases()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not ready")


@contextmanager
def process(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def load(base: str, concurrency: int, requests: int) -> tuple[list[float], float]:
    """Latencies (ms) of `requests` POST /predict over `concurrency` clients, and the wall time."""
    per_client = requests // concurrency
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    start_gate = threading.Barrier(concurrency + 1)

    def client(n: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            http.post("/predict", json=CASES[0]).raise_for_status()  # connect outside timing
            start_gate.wait()
            for i in range(per_client):
                case = CASES[(n * per_client + i) % len(CASES)]
                t0 = time.perf_counter()
                http.post("/predict", json=case).raise_for_status()
                latencies[n].append((time.perf_counter() - t0) * 1000)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(concurrency)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return [x for per in latencies for x in per], time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=400, help="per mode, round and level")
    parser.add_argument("--model-dir", type=Path, default=ROOT / "model")
    args = parser.parse_args()
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        sys.exit("redis-server is needed: apt-get install redis-server")
    if not (args.model_dir / "model_card.json").exists():
        sys.exit(f"no model in {args.model_dir}: run `make model` first")

    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        redis_port = free_port()
        stack.enter_context(
            process(
                [redis_server, "--port", str(redis_port), "--save", "", "--appendonly", "no"],
                dict(os.environ),
            )
        )
        bases = {}
        for name, mode_env in MODES.items():
            port = free_port()
            env = {
                **os.environ,
                **mode_env,
                "API_PORT": str(port),
                "MODEL_DIR": str(args.model_dir),
                "DATA_DIR": str(Path(tmp) / name.replace(" ", "-")),
                "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "REDIS_STREAM": f"bench:{name.replace(' ', '-')}",
                "LOG_LEVEL": "WARNING",
            }
            stack.enter_context(process([sys.executable, "-m", "inferlog", "api"], env))
            bases[name] = f"http://127.0.0.1:{port}"
        for base in bases.values():
            wait_until(f"{base}/ready")

        samples: dict[tuple[str, int], list[float]] = {}
        rps: dict[tuple[str, int], list[float]] = {}
        for round_no in range(args.rounds):
            for concurrency in (1, 8):
                for name, base in bases.items():
                    latencies, wall = load(base, concurrency, args.requests)
                    samples.setdefault((name, concurrency), []).extend(latencies)
                    rps.setdefault((name, concurrency), []).append(len(latencies) / wall)
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)

    print(f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"command: uv run python bench/api_latency.py --rounds {args.rounds} "
        f"--requests {args.requests}"
    )
    print()
    print("| mode | concurrency | p50 ms | p99 ms | requests/s | p50 / off | req/s / off |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for concurrency in (1, 8):
        off = samples[("telemetry off", concurrency)]
        off_p50 = float(np.percentile(off, 50))
        off_rps = statistics.median(rps[("telemetry off", concurrency)])
        for name in MODES:
            values = samples[(name, concurrency)]
            p50, p99 = np.percentile(values, [50, 99]).tolist()
            throughput = statistics.median(rps[(name, concurrency)])
            print(
                f"| {name} | {concurrency} | {p50:.2f} | {p99:.2f} | {throughput:.0f} | "
                f"{p50 / off_p50:.2f} | {throughput / off_rps:.2f} |"
            )


if __name__ == "__main__":
    main()
