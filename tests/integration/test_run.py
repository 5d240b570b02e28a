"""`python -m inferlog run` (what `make run` wraps): the whole product, then nothing left over."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import httpx
import psutil
import pytest
import redis

from inferlog.ml import dataset
from tests.servers import answers, free_port, require_binary, wait_until


def indexed_ids(indices: Path) -> set[str]:
    path = indices / "ml-api-logs.ndjson"
    if not path.exists():
        return set()
    lines = path.read_text().splitlines()
    return {json.loads(lines[i])["index"]["_id"] for i in range(0, len(lines) - 1, 2)}


def run_env(model_dir: Path, tmp_path: Path) -> dict[str, str]:
    """The environment of `python -m inferlog run` on free ports, data under tmp_path."""
    env = {
        **os.environ,
        "API_PORT": str(free_port()),
        "UI_PORT": str(free_port()),
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "MODEL_DIR": str(model_dir),
        "DATA_DIR": str(tmp_path / "data"),
        "PIPELINE_BLOCK_MS": "200",
        "REDIS_MAXMEMORY": "64mb",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    env.pop("API_URL", None)  # the UI follows the API's port
    return env


@pytest.mark.parametrize("server", ["redis-server", "redis-server with a password", "embedded"])
def test_run_starts_everything_indexes_predictions_and_stops_cleanly(
    server: str, model_dir: Path, tmp_path: Path
) -> None:
    env = run_env(model_dir, tmp_path)
    password = 'run-test "pass\\word"'  # quotes and a backslash: quoted in its config
    if server.endswith("password"):
        env["REDIS_URL"] = env["REDIS_URL"].replace("//", f"//:{quote(password, safe='')}@")
    if server.startswith("redis-server"):
        require_binary("redis-server")
    else:  # no redis-server on PATH: the embedded server takes over
        env["PATH"] = str(Path(sys.executable).parent)
        assert shutil.which("redis-server", path=env["PATH"]) is None
    api = f"http://127.0.0.1:{env['API_PORT']}"
    process = subprocess.Popen(
        [sys.executable, "-m", "inferlog", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: answers(f"{api}/ready"), 120, process)
        wait_until(lambda: answers(f"http://127.0.0.1:{env['UI_PORT']}/"), 120, process)
        sent = []
        for case in dataset.held_out_cases()[:5]:
            response = httpx.post(f"{api}/predict", json=case)
            assert response.status_code == 200
            sent.append(response.json()["transaction_id"])
        indices = tmp_path / "data" / "indices"
        wait_until(lambda: set(sent) <= indexed_ids(indices), 60, process)
        if server.endswith("password"):  # the redis-server started requires it, not in argv
            port = int(env["REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
            with pytest.raises(redis.AuthenticationError):
                redis.Redis(port=port).ping()
            assert redis.Redis(port=port, password=password).ping()
            argv = [" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])]
            assert not [line for line in argv if "redis-server" in line and "pass" in line]
        # Read while running: the spool's segments go once shipped and stopped.
        files = [*(tmp_path / "data" / "spool").glob("*.ndjson"), *indices.glob("*.ndjson")]
        file_modes = {f: f.stat().st_mode & 0o777 for f in files}
        assert len(file_modes) >= 4
        # `make simulate` against the running product: 3 s at 10 requests/s, 20 % invalid.
        simulated = subprocess.run(
            [
                sys.executable,
                "-m",
                "inferlog",
                "simulate",
                "--rate",
                "10",
                "--duration",
                "3",
                "--invalid-share",
                "0.2",
                "--drift",
                "radius_mean=2",
            ],
            env={**env, "API_URL": api},
            capture_output=True,
            text=True,
            timeout=60,
        )
        # What a person reads: one screen, no log line per request.
        screen = simulated.stdout.strip().splitlines()
        assert screen[0].startswith("Sent 30 requests in "), simulated.stdout
        assert any(" 422 " in line and "invalid" in line for line in screen), simulated.stdout
        assert len(screen) <= 8
        assert "HTTP Request" not in simulated.stderr
        options = ["--json", "--rate", "10", "--duration", "1", "--invalid-share", "0.5"]
        as_json = subprocess.run(
            [sys.executable, "-m", "inferlog", "simulate", *options],
            env={**env, "API_URL": api},
            capture_output=True,
            text=True,
            timeout=60,
        )
        summary = json.loads(as_json.stdout.strip().splitlines()[-1])
        assert summary["sent"] == 10
        assert sum(summary["statuses"].values()) == 10
        assert set(summary["statuses"]) <= {"200", "422"}
        assert summary["statuses"]["422"] > 0
        assert 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["p95"]
        wait_until(lambda: len(indexed_ids(indices)) >= 5 + 30 + 10, 60, process)
        stats = httpx.get(f"{api}/logs/stats")
        assert stats.status_code == 200, stats.text
        memory = stats.json()["stream"]["redis_memory"]
        if server.startswith("redis-server"):  # the budget make run gives it, reported by the API
            assert memory["max_bytes"] == 64 * 2**20
            assert memory["policy"] == "noeviction"
            assert 0 < memory["used_share"] < 1
        else:
            assert memory is None  # the embedded server has no INFO
        started = psutil.Process(process.pid).children(recursive=True)
        assert len(started) >= 3  # api, ui, pipeline (+ redis-server)
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=90)
    assert process.returncode == 0, out
    assert "inferlog is running" in out
    for name in ("api     |", "ui      |", "pipeline|"):
        assert name in out
    assert not [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    # The records hold medical inputs: the directories that hold them are 0700, the spool and
    # index files 0600 (Redis makes its own files, inside its 0700 directory).
    data = tmp_path / "data"
    directories = [data / "spool", data / "indices"]
    if server.startswith("redis-server"):
        directories.append(data / "redis")
    assert [oct(d.stat().st_mode & 0o777) for d in directories] == ["0o700"] * len(directories)
    assert [f"{f.name} {oct(mode)}" for f, mode in file_modes.items() if mode != 0o600] == []


def test_run_says_clearly_when_a_port_is_taken(model_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = {
            **os.environ,
            "API_PORT": str(busy.getsockname()[1]),
            "MODEL_DIR": str(model_dir),
            "DATA_DIR": str(tmp_path),
        }
        done = subprocess.run(
            [sys.executable, "-m", "inferlog", "run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert "already in use" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr + done.stdout


def child_named(supervisor: psutil.Process, marker: str) -> psutil.Process | None:
    for child in supervisor.children():
        try:
            if marker in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def test_run_restarts_each_killed_part_and_indexes_every_answered_request_once(
    model_dir: Path, tmp_path: Path
) -> None:
    require_binary("redis-server")
    env = run_env(model_dir, tmp_path)
    env["PIPELINE_CLAIM_IDLE_MS"] = "1000"  # a killed pipeline's entries are claimed soon
    api = f"http://127.0.0.1:{env['API_PORT']}"
    ui = f"http://127.0.0.1:{env['UI_PORT']}/"
    log = tmp_path / "run.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "inferlog", "run"], env=env, stdout=out, stderr=out, text=True
        )
    supervisor = psutil.Process(process.pid)
    answered: list[str] = []
    failures: dict[str, str] = {}  # request id -> the part that was down then
    down = {"part": ""}
    stop = threading.Event()

    def traffic() -> None:
        n = 0
        while not stop.is_set():
            request_id = f"kill-{n}"
            n += 1
            try:
                response = httpx.post(
                    f"{api}/predict",
                    json=dataset.held_out_cases()[n % 50],
                    headers={"X-Request-ID": request_id},
                    timeout=10,
                )
                if response.status_code == 200:
                    answered.append(request_id)
                else:
                    failures[request_id] = f"{down['part']}: {response.status_code}"
            except httpx.TransportError:
                failures[request_id] = down["part"]
            time.sleep(0.02)

    sender = threading.Thread(target=traffic)
    try:
        wait_until(lambda: answers(f"{api}/ready") and answers(ui), 120, process)
        sender.start()
        parts = {
            "redis": "redis-server",
            "api": "inferlog api",
            "pipeline": "logs_pipeline run",
            "ui": "inferlog.ui",
        }
        for part, marker in parts.items():
            served = len(answered)  # traffic answered with every part up, before each kill
            wait_until(lambda served=served: len(answered) >= served + 40, 30, process)
            victim = child_named(supervisor, marker)
            assert victim is not None, f"no {part} process"
            down["part"] = part
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)

            def back(part: str = part, marker: str = marker, pid: int = victim.pid) -> bool:
                child = child_named(supervisor, marker)
                if child is None or child.pid == pid:
                    return False
                if part == "api":
                    return answers(f"{api}/ready")
                return answers(ui) if part == "ui" else True

            wait_until(back, 90, process)
            down["part"] = ""
        served = len(answered)
        wait_until(lambda: len(answered) >= served + 40, 30, process)
        stop.set()
        sender.join(30)
        indices = tmp_path / "data" / "indices"
        wait_until(lambda: set(answered) <= indexed_request_ids(indices).keys(), 90, process)
        by_request = indexed_request_ids(indices)
        in_stream = Counter(
            json.loads(fields["record"])["http"]["request"].get("id")
            for _, fields in redis.Redis.from_url(env["REDIS_URL"], decode_responses=True).xrange(
                "inferlog:requests"
            )
        )
    finally:
        stop.set()
        process.send_signal(signal.SIGTERM)
        process.wait(90)
    output = log.read_text()
    assert len(answered) > 100
    # Predictions failed only while the API itself was down.
    assert set(failures.values()) <= {"api"}, failures
    # Each answered request: one document (one transaction), whatever was killed meanwhile.
    twice = {request_id: tids for request_id, tids in by_request.items() if len(tids) != 1}
    assert twice == {}
    # ... from one record: none was added to the stream twice either.
    assert {request_id: in_stream[request_id] for request_id in answered} == dict.fromkeys(
        answered, 1
    )
    assert set(answered) <= set(by_request)
    # A request the API recorded but could not finish answering when it was killed.
    assert set(by_request) - set(answered) <= set(failures)
    for part in parts:
        assert f"{part} exited with code -9" in output
        assert f"{part} restarted" in output
    assert process.returncode == 0


def indexed_request_ids(indices: Path) -> dict[str, set[str]]:
    """Client request id -> the distinct document ids (transactions) in ml-api-logs."""
    path = indices / "ml-api-logs.ndjson"
    found: dict[str, set[str]] = {}
    if not path.exists():
        return found
    lines = path.read_text().splitlines()
    for i in range(0, len(lines) - 1, 2):
        source = json.loads(lines[i + 1])
        request_id = source["http"]["request"].get("id")
        if request_id:
            found.setdefault(request_id, set()).add(json.loads(lines[i])["index"]["_id"])
    return found
