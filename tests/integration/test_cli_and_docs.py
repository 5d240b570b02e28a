"""The API as a user starts it (`python -m inferlog`), and the README's promises."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import httpx
import pytest

from inferlog.config import Settings
from inferlog.ml.artifacts import ARTIFACT_FILE, CARD_FILE
from tests.servers import answers, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def start_api(command: str, model_dir: Path, port: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "API_PORT": str(port),
        "UI_PORT": str(free_port()),
        "MODEL_DIR": str(model_dir),
        "DATA_DIR": str(model_dir.parent / "data"),
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing there: records spool
        "LOG_LEVEL": "INFO",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "inferlog", command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    out, _ = process.communicate(timeout=20)
    return out


def test_readme_figures_match_the_model_card(model_dir: Path) -> None:
    card = json.loads((model_dir / CARD_FILE).read_text())
    metrics = card["metrics_held_out"]
    cm = metrics["confusion_matrix"]
    assert f"held-out ROC AUC {metrics['roc_auc']:.3f}" in README
    recall = f"malignant recall {metrics['recall_malignant']:.3f}"
    assert (
        f"{recall} ({cm['true_positives']} of {cm['true_positives'] + cm['false_negatives']})"
        in (README)
    )
    assert f"precision {metrics['precision_malignant']:.2f}" in README
    assert f"threshold {card['threshold']['value']:.3f}" in README
    # The version is the artifact's hash: the same on every run on one machine, but floating
    # point in training can differ in the last bits between CPU kinds (model/README.md), so the
    # README's example answer shows the shape of a version rather than this machine's.
    shown = re.findall(r'"model_version": "([^"]*)"', README)
    assert shown
    assert all(re.fullmatch(r"[0-9a-f]{12}", version) for version in shown)
    assert len(card["version"]) == 12


def test_the_ui_and_simulate_reach_the_api_on_api_port_unless_api_url_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("API_URL", raising=False)
    monkeypatch.delenv("API_PORT", raising=False)
    local = Settings(_env_file=None, api_port=8123)
    assert local.api_url == "http://127.0.0.1:8123"
    given = Settings(_env_file=None, api_port=8123, api_url="http://api:8000")
    assert given.api_url == "http://api:8000"


def test_docker_secret_files_give_settings_their_values_after_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inferlog import config

    (tmp_path / "redis_url").write_text("redis://:from-file@redis:6379/0\n")
    (tmp_path / "elasticsearch_password").write_text("es-from-file")
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("ELASTICSEARCH_PASSWORD", raising=False)
    monkeypatch.setattr(config, "SECRETS_DIR", tmp_path)
    read = Settings(_env_file=None)
    assert read.redis_url.get_secret_value() == "redis://:from-file@redis:6379/0"
    assert read.elasticsearch_password is not None
    assert read.elasticsearch_password.get_secret_value() == "es-from-file"
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6390/0")  # the environment wins
    assert Settings(_env_file=None).redis_url.get_secret_value() == "redis://127.0.0.1:6390/0"
    monkeypatch.setattr(config, "SECRETS_DIR", tmp_path / "absent")  # no directory: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Settings(_env_file=None).redis_url.get_secret_value() == "redis://127.0.0.1:6390/0"


def test_every_setting_is_in_env_example_and_the_readme_table() -> None:
    env_example = (ROOT / ".env.example").read_text()
    for name in Settings.model_fields:
        variable = name.upper()
        assert re.search(rf"^{variable}=", env_example, re.M), f"{variable} not in .env.example"
        assert f"| `{variable}` |" in README, f"{variable} not in the README table"


def test_the_api_refuses_a_busy_port_with_a_clear_message(model_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        process = start_api("api", model_dir, busy.getsockname()[1])
        out, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "already in use" in out
    assert "Traceback" not in out


def test_the_api_refuses_a_tampered_model_with_a_clear_message(
    model_dir: Path, tmp_path: Path
) -> None:
    tampered = tmp_path / "model"
    shutil.copytree(model_dir, tampered)
    (tampered / ARTIFACT_FILE).write_bytes(b"not the trained model")
    process = start_api("api", tampered, free_port())
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "refusing to load" in out
    assert "Traceback" not in out


def test_run_trains_a_missing_model_then_serves(tmp_path: Path) -> None:
    port = free_port()
    process = start_api("run", tmp_path / "model", port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{base}/ready"), 120, process)
        version = json.loads((tmp_path / "model" / CARD_FILE).read_text())["version"]
        assert httpx.get(f"{base}/ready").json()["model_version"] == version
    finally:
        out = stop(process)
    assert "training it first" in out
