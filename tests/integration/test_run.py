"""`python -m inferlog run` (what `make run` wraps): the whole product, then nothing left over."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
import psutil
import pytest

from inferlog.ml import dataset
from tests.servers import answers, free_port, require_binary, wait_until


def indexed_ids(indices: Path) -> set[str]:
    path = indices / "ml-api-logs.ndjson"
    if not path.exists():
        return set()
    lines = path.read_text().splitlines()
    return {json.loads(lines[i])["index"]["_id"] for i in range(0, len(lines) - 1, 2)}


@pytest.mark.parametrize("redis", ["redis-server", "embedded"])
def test_run_starts_everything_indexes_predictions_and_stops_cleanly(
    redis: str, model_dir: Path, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "API_PORT": str(free_port()),
        "UI_PORT": str(free_port()),
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "MODEL_DIR": str(model_dir),
        "DATA_DIR": str(tmp_path / "data"),
        "PIPELINE_BLOCK_MS": "200",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    env.pop("API_URL", None)
    if redis == "redis-server":
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
        for i, case in enumerate(dataset.held_out_cases()[:5]):
            tid = f"run-{redis}-{i}"
            response = httpx.post(f"{api}/predict", json=case, headers={"X-Request-ID": tid})
            assert response.status_code == 200
            sent.append(tid)
        indices = tmp_path / "data" / "indices"
        wait_until(lambda: set(sent) <= indexed_ids(indices), 60, process)
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
        summary = json.loads(simulated.stdout.strip().splitlines()[-1])
        assert summary["sent"] == 30
        assert sum(summary["statuses"].values()) == 30
        assert set(summary["statuses"]) <= {"200", "422"} and summary["statuses"]["422"] > 0
        wait_until(lambda: len(indexed_ids(indices)) >= 5 + 30, 60, process)
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
