"""End-to-end fixtures: a real API and UI as processes on loopback, a real Chromium.

Chromium is Debian's (`/usr/bin/chromium`, driven by Playwright without `playwright install`).
Screenshots go to a temporary folder, printed at the end of the session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.servers import RedisServer, answers, free_port, require_binary, wait_until

# The end-to-end stack runs with keys required everywhere, as a shared deployment would: the UI
# sends its read key, and tests calling the API directly send it too.
ADMIN_KEY, READ_KEY = "e2e-admin-key", "e2e-read-key"
KEYED = {"X-API-Key": READ_KEY}
KIBANA_URL = "http://kibana.test:5601"  # only linked to, never opened
ROOT = Path(__file__).resolve().parents[2]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Process:
    """A server process that tests can stop and start again on the same port."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        url: str,
        ready_path: str,
        python: str = sys.executable,
    ) -> None:
        self.python = python
        self.args = args
        self.env = env
        self.url = url
        self.ready_path = ready_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> None:
        self.process = subprocess.Popen(
            [self.python, *self.args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: answers(self.url + self.ready_path), timeout, self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("screenshots")
    yield folder
    print(f"\nscreenshots in {folder}")


@pytest.fixture(scope="session")
def api(
    redis_server: RedisServer, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Process]:
    port = free_port()
    env = {
        **os.environ,
        "API_PORT": str(port),
        "MODEL_DIR": str(model_dir),
        "DATA_DIR": str(tmp_path_factory.mktemp("e2e-data")),
        "REDIS_URL": redis_server.url,
        "REDIS_STREAM": "e2e:requests",
        "LOG_LEVEL": "WARNING",
        "API_KEYS": ADMIN_KEY,
        "API_READ_KEYS": READ_KEY,
        "REQUIRE_API_KEY": "true",
    }
    server = Process(["-m", "inferlog", "api"], env, f"http://127.0.0.1:{port}", "/ready")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ui_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Python with what the UI image installs and nothing more: the project (editable, so
    this checkout) with its `ui` extra; no `service` extra (scikit-learn, SciPy, the Redis and
    Elasticsearch clients), no dev tools. The UI's browser tests run against it."""
    bootstrapped = ROOT / ".tools" / "bin" / "uv"  # where make installs it
    uv = os.environ.get("UV") or (str(bootstrapped) if bootstrapped.exists() else None)
    uv = uv or require_binary("uv")
    venv = tmp_path_factory.mktemp("ui-only") / ".venv"
    subprocess.run(
        [uv, "sync", "--locked", "--no-dev", "--extra", "ui", "--python", sys.executable, "-q"],
        cwd=ROOT,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never"},
        check=True,
        timeout=600,
    )
    return str(venv / "bin" / "python")


@pytest.fixture(scope="session")
def ui(api: Process, ui_python: str) -> Iterator[Process]:
    port = free_port()
    env = {
        **os.environ,
        "API_URL": api.url,
        "UI_API_KEY": READ_KEY,
        "UI_PORT": str(port),
        "KIBANA_URL": KIBANA_URL,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "LOG_LEVEL": "WARNING",
    }
    server = Process(["-m", "inferlog.ui"], env, f"http://127.0.0.1:{port}", "/", ui_python)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = require_binary("chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, ui: Process) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1300, "height": 1400}, accept_downloads=True)
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    opened.goto(ui.url, wait_until="load")
    opened.get_by_role("button", name="Load a malignant case").wait_for()
    yield opened
    context.close()
