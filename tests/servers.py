"""Real servers for tests: redis-server on a free loopback port, the API as a process.

Under CI (`CI=true`) a missing binary fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis

from inferlog.cli import free_port as free_port  # re-exported: tests take it from here

# The host name Starlette's TestClient sends, allowed next to the API's defaults.
TEST_CLIENT_HOSTS = ["testserver", "localhost", "127.0.0.1", "::1"]


def answers(url: str) -> bool:
    """Whether `url` answers 200 now."""
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def wait_until(
    condition: Callable[[], bool],
    timeout: float = 60,
    process: subprocess.Popen[str] | subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll `condition`; fail when `timeout` passes or `process` (if given) exits first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"{process.args} exited early:\n{output}")
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout:.0f} s")
        time.sleep(0.2)


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install {name})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


class RedisServer:
    """A redis-server process that tests can stop and start again on the same port."""

    def __init__(self, workdir: Path, persistent: bool = False) -> None:
        self.binary = require_binary("redis-server")
        self.port = free_port()
        self.workdir = workdir
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, protocol=2)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.persistent else "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


class Api:
    def __init__(self, process: subprocess.Popen[str], base: str, log: Path) -> None:
        self.process = process
        self.base = base
        self.log = log

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.base}/metrics", timeout=10).text
        match = re.search(rf"^{name} (\S+)$", text, re.M)
        assert match, f"{name} not in /metrics"
        return float(match.group(1))


@contextmanager
def api_process(
    model_dir: Path,
    data_dir: Path,
    redis_url: str,
    stream: str,
    workers: int = 1,
    extra: dict[str, str] | None = None,
) -> Iterator[Api]:
    """`python -m inferlog api` on a free port, its log in a file beside `data_dir`; `extra`
    adds to or overrides its environment."""
    port = free_port()
    env = {
        **os.environ,
        "API_PORT": str(port),
        "API_WORKERS": str(workers),
        "MODEL_DIR": str(model_dir),
        "DATA_DIR": str(data_dir),
        "REDIS_URL": redis_url,
        "REDIS_STREAM": stream,
        "LOG_LEVEL": "INFO",
        **(extra or {}),
    }
    log = data_dir.with_name(data_dir.name + ".log")
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "inferlog", "api"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    api = Api(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_until(lambda: answers(f"{api.base}/ready"), 90, process)
        yield api
    finally:
        process.terminate()
        process.wait(timeout=60)
