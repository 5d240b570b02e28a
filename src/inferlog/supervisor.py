"""`python -m inferlog run` (`make run`): the whole product on one machine, no Docker.

Starts, in order: Redis (the one at REDIS_URL if it answers; otherwise `redis-server` from PATH
with its data under DATA_DIR/redis/, or else an embedded Redis-compatible server from the
fakeredis package), the API, the UI and the logs pipeline (NDJSON files under DATA_DIR/indices/,
or Elasticsearch when ELASTICSEARCH_URL is set). Each child's output is prefixed with its name.

Like a process manager, it restarts a child that exits on its own (a crash, an OOM kill), after
a pause that doubles from 1 s up to 30 s while the child keeps failing, and says so in its log.
It gives up, and stops everything, only when a child exits within `START_GRACE` seconds of
each of `MAX_QUICK_EXITS` starts in a row: that is a configuration problem, not a crash.
redis-server keeps its data in an append-only file fsynced at every write, so a restarted
Redis has every record the API was told was added. Ctrl-C or SIGTERM stops every process it
started, the pipeline last so it can index what the API flushed, and leaves none behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import httpx

from inferlog.cli import port_free
from inferlog.config import Settings
from inferlog.private_files import private_dir

log = logging.getLogger("inferlog.run")

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
STOP_TIMEOUT = 20.0
START_GRACE = 10.0  # a child that exits sooner than this after a start "failed to start"
MAX_QUICK_EXITS = 5
FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
STABLE_AFTER = 60.0  # up this long: its earlier crashes no longer lengthen the restart delay


class StartupError(RuntimeError):
    """Something the user must fix before the product can start; said in one line."""


def listening(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


@dataclass
class Child:
    name: str
    args: list[str]
    env: dict[str, str]
    process: subprocess.Popen[str] | None = None
    pump: threading.Thread | None = field(default=None, repr=False)
    started_at: float = 0.0
    quick_exits: int = 0  # exits within START_GRACE of a start, in a row
    crashes: int = 0  # exits since it last ran for STABLE_AFTER: sets the restart delay
    restart_at: float | None = None  # when a crashed child is due to start again
    stdin: str | None = field(default=None, repr=False)  # written once, then closed

    def start(self, out: IO[str]) -> subprocess.Popen[str]:
        self.started_at = time.monotonic()
        self.restart_at = None
        # The command is the project's own (`python -m ...`), never user input.
        process = subprocess.Popen(  # noqa: S603
            self.args,
            env=self.env,
            stdin=subprocess.DEVNULL if self.stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops the children
        )
        self.process = process
        if process.stdin is not None:
            process.stdin.write(self.stdin or "")
            process.stdin.close()
        self.pump = threading.Thread(
            target=self._copy, args=(process.stdout or (), out), daemon=True
        )
        self.pump.start()
        return process

    def _copy(self, lines: Iterable[str], out: IO[str]) -> None:
        for line in lines:
            out.write(f"{self.name:<8}| {line}")
            out.flush()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill_leftovers(self) -> None:
        """Kill what the child started and left behind (its API workers, say): they would hold
        its port against its next start. The child leads its own process group."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            self.kill_leftovers()
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s: killing it", self.name, STOP_TIMEOUT)
            process.kill()
            process.wait()
        self.kill_leftovers()
        if self.pump is not None:
            self.pump.join(5)


def redis_password_config(password: str | None) -> str:
    """The `requirepass` line for redis-server's stdin, from REDIS_URL's (quoted) password."""
    if not password:
        return ""
    # Inside double quotes Redis reads \xHH: quotes, backslashes and control characters
    # (a line break would start another directive) are written that way.
    plain = "".join(
        f"\\x{ord(c):02x}" if c in '"\\' or ord(c) < 32 or ord(c) == 127 else c
        for c in unquote(password)
    )
    return f'requirepass "{plain}"\n'


class EmbeddedRedis:
    """A Redis-compatible server in this process (fakeredis), for machines without redis-server."""

    def __init__(self, host: str, port: int) -> None:
        from fakeredis import TcpFakeServer

        self.server = TcpFakeServer((host, port), server_type="redis")
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Supervisor:
    def __init__(self, settings: Settings, out: IO[str] = sys.stdout) -> None:
        self.settings = settings
        self.out = out
        self.children: list[Child] = []
        self.redis_stoppers: list[Callable[[], None]] = []
        self.stopping = threading.Event()

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, "PYTHONUNBUFFERED": "1", **(extra or {})}

    def check_ports(self) -> None:
        for name, host, port, variable in (
            ("the API", self.settings.api_host, self.settings.api_port, "API_PORT"),
            ("the UI", self.settings.ui_host, self.settings.ui_port, "UI_PORT"),
        ):
            if not port_free(host, port):
                raise StartupError(
                    f"port {host}:{port} for {name} is already in use: stop the process using "
                    f"it or set {variable}"
                )

    def start_redis(self) -> None:
        url = urlsplit(self.settings.redis_url.get_secret_value())
        host, port = url.hostname or "127.0.0.1", url.port or 6379
        if listening(host, port):
            log.info("using the Redis already at %s:%d", host, port)
            return
        if host not in LOOPBACK:
            raise StartupError(f"Redis at {host}:{port} does not answer (REDIS_URL)")
        binary = shutil.which("redis-server")
        if binary:
            # Redis's files hold the records: its directory is the owner's only.
            private_dir(self.settings.data_dir)
            data = private_dir(self.settings.data_dir / "redis")
            child = Child(
                "redis",
                [
                    binary,
                    "-",  # the password, if any, from stdin: not on the command line (first: 6.x)
                    "--port",
                    str(port),
                    "--bind",
                    host,
                    "--dir",
                    str(data.resolve()),
                    "--appendonly",
                    "yes",
                    # Every acknowledged write is on disk: a killed redis-server loses no record.
                    "--appendfsync",
                    "always",
                    "--save",
                    "",
                    # A budget, and no eviction: a full Redis refuses new records (the API
                    # spools them) instead of dropping ones not yet indexed.
                    "--maxmemory",
                    self.settings.redis_maxmemory,
                    "--maxmemory-policy",
                    "noeviction",
                ],
                self._env(),
                stdin=redis_password_config(url.password),
            )
            child.start(self.out)
            self.children.append(child)
            log.info("started redis-server on %s:%d, data in %s", host, port, data)
        else:
            embedded = EmbeddedRedis(host, port)
            self.redis_stoppers.append(embedded.stop)
            log.info(
                "no redis-server on PATH: embedded Redis-compatible server on %s:%d", host, port
            )
        self._wait(lambda: listening(host, port), "Redis", 20)

    def _wait(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.stopping.is_set():
                raise StartupError("stopped while starting")
            dead = [c.name for c in self.children if not c.alive()]
            if dead:
                raise StartupError(f"{', '.join(dead)} exited during startup (see its output)")
            if time.monotonic() > deadline:
                raise StartupError(f"{what} not ready after {timeout:.0f} s")
            time.sleep(0.2)

    def _http_ready(self, url: str) -> Callable[[], bool]:
        def ready() -> bool:
            try:
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        return ready

    def start_service(
        self, name: str, args: list[str], ready_url: str | None, env: dict[str, str] | None = None
    ) -> None:
        child = Child(name, [sys.executable, *args], self._env(env))
        child.start(self.out)
        self.children.append(child)
        if ready_url:
            self._wait(self._http_ready(ready_url), name, 120)

    def run(self) -> int:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per readiness poll else
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        s = self.settings
        api_url = f"http://{s.api_host}:{s.api_port}"
        ui_url = f"http://{s.ui_host}:{s.ui_port}"
        try:
            self.check_ports()
            self.start_redis()
            self.start_service("api", ["-m", "inferlog", "api"], f"{api_url}/ready")
            # The UI reaches the API on API_PORT unless API_URL says otherwise (config.py).
            self.start_service("ui", ["-m", "inferlog.ui"], f"{ui_url}/")
            self.start_service("pipeline", ["-m", "logs_pipeline", "run"], None)
        except StartupError as exc:
            log.error("%s", exc)
            self.stop_all()
            return 1
        sink = s.elasticsearch_url or f"NDJSON files in {s.indices_dir}"
        self.out.write(
            "\n  inferlog is running (Ctrl-C stops everything)\n"
            f"    UI        {ui_url}\n"
            f"    API       {api_url}   (docs: {api_url}/docs)\n"
            f"    records   {s.redis_stream} -> logs pipeline -> {sink}\n\n"
        )
        self.out.flush()
        code = 0
        try:
            while not self.stopping.wait(0.2):
                if not self._keep_children_alive():
                    code = 1
                    break
        finally:  # whatever happens here, no child is left behind
            self.stop_all()
        return code

    def _keep_children_alive(self) -> bool:
        """Restart children that exited; False when one keeps exiting right after its start."""
        now = time.monotonic()
        for child in self.children:
            if child.alive():
                up = now - child.started_at
                if up > START_GRACE:
                    child.quick_exits = 0
                if up > STABLE_AFTER:
                    child.crashes = 0
                continue
            if child.restart_at is None:  # it has just exited, or could not be started
                returncode = child.process.returncode if child.process else None
                child.kill_leftovers()
                ran = now - child.started_at
                child.crashes += 1
                child.quick_exits = child.quick_exits + 1 if ran < START_GRACE else 0
                if child.quick_exits >= MAX_QUICK_EXITS:
                    log.error(
                        "%s exited %d times in a row within %.0f s of starting (last code %s): "
                        "stopping everything; see its output above",
                        child.name,
                        child.quick_exits,
                        START_GRACE,
                        returncode,
                    )
                    return False
                delay = min(FIRST_RESTART_DELAY * 2 ** (child.crashes - 1), MAX_RESTART_DELAY)
                log.warning(
                    "%s exited with code %s after %.0f s: restarting it in %.0f s",
                    child.name,
                    returncode,
                    ran,
                    delay,
                )
                child.restart_at = now + delay
            elif now >= child.restart_at:
                try:
                    process = child.start(self.out)
                except OSError as exc:  # no memory to fork, say: counts as a failed start
                    log.error("%s could not be started: %s", child.name, exc)
                    child.process, child.restart_at = None, None
                    continue
                log.info("%s restarted (pid %d)", child.name, process.pid)
        return True

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if not self.stopping.is_set():  # a second Ctrl-C while stopping says nothing new
            log.info("%s: stopping", signal.Signals(signum).name)
        self.stopping.set()

    def stop_all(self) -> None:
        """UI first, then the API (it flushes its records), the pipeline, Redis last."""
        order = {"ui": 0, "api": 1, "pipeline": 2, "redis": 3}
        for child in sorted(self.children, key=lambda c: order.get(c.name, 9)):
            child.stop()
        for stop in self.redis_stoppers:
            stop()
