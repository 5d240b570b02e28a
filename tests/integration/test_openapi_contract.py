"""The OpenAPI document is the contract: schemathesis generates requests from it (valid and
invalid, every operation, the CSV batch body included) against the running API with a real
Redis, and runs all its checks on the answers: no 5xx, every status code, content type, header
and body as documented, valid data accepted, invalid data refused, security as declared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import RedisServer, api_process

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY, READ_KEY = "contract-admin-key", "contract-read-key"

CONFIGURATIONS = {
    # The local demo: no key anywhere; DELETE /logs refused (no admin key is configured).
    "no keys": ({}, []),
    # Read keys only: the reads need one, the predictions stay open (the document says which).
    "read keys": (
        {"API_READ_KEYS": READ_KEY},
        ["--header", f"X-API-Key: {READ_KEY}"],
    ),
    # Keys required everywhere, the admin key sent with every request.
    "keys required": (
        {"API_KEYS": ADMIN_KEY, "REQUIRE_API_KEY": "true"},
        ["--header", f"X-API-Key: {ADMIN_KEY}"],
    ),
}


@pytest.mark.parametrize("configuration", list(CONFIGURATIONS))
def test_the_running_api_does_what_its_openapi_document_says(
    configuration: str, model_dir: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    environment, options = CONFIGURATIONS[configuration]
    with api_process(
        model_dir,
        tmp_path / "data",
        redis_server.url,
        f"contract:{configuration}",
        extra={**environment, "LOG_LEVEL": "WARNING"},
    ) as api:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{api.base}/openapi.json",
                "--checks",
                "all",
                "--seed",
                "1",
                "--max-examples",
                "30",
                "--generation-database",
                "none",
                "--no-color",
                "--report",
                "har",
                "--report-har-path",
                str(tmp_path / "report.har"),
                *options,
            ],
            # The CSV batch body is written by tests/openapi_hooks.py.
            env={
                **os.environ,
                "SCHEMATHESIS_HOOKS": "tests.openapi_hooks",
                "PYTHONPATH": str(ROOT),
            },
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=240,
        )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-6000:]
    assert "14 selected / 14 total" in report  # every operation, none left out
    exchanges = json.loads((tmp_path / "report.har").read_text())["log"]["entries"]
    batch_answers = {
        (entry["request"].get("postData", {}).get("mimeType", ""), entry["response"]["status"])
        for entry in exchanges
        if entry["request"]["method"] == "POST" and entry["request"]["url"].endswith("/batch")
    }
    # Both bodies were sent valid, and refused when invalid.
    assert {("text/csv", 200), ("text/csv", 422)} <= batch_answers, batch_answers
    assert {("application/json", 200), ("application/json", 422)} <= batch_answers
