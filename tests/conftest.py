"""Shared fixtures: one model trained per test session into a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from osmem_server import OsmemServer

from inferlog.api.app import create_app
from inferlog.config import Settings
from inferlog.ml.artifacts import load_artifacts
from inferlog.ml.predictor import Predictor
from inferlog.ml.train import train
from tests.servers import TEST_CLIENT_HOSTS, RedisServer, free_port


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("model")
    train(directory)
    return directory


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def settings(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """API settings for in-process tests: Redis points at a closed port (records spool)."""
    return Settings(
        model_dir=model_dir,
        max_batch_size=50,
        max_body_bytes=200_000,
        data_dir=tmp_path_factory.mktemp("data"),
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        allowed_hosts=TEST_CLIENT_HOSTS,
    )


@pytest.fixture(scope="session")
def predictor(model_dir: Path) -> Predictor:
    return Predictor(load_artifacts(model_dir))


@pytest.fixture(scope="session")
def app(settings: Settings, predictor: Predictor) -> FastAPI:
    return create_app(settings, predictor)


@pytest.fixture(scope="session")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def osmem_server() -> Iterator[OsmemServer]:
    """The Elasticsearch-compatible test server (replaces the plugin's fixture, which leaves
    the process's stdout pipe open)."""
    server = OsmemServer.start(freeze=True)
    yield server
    server.close()
    if server.process.stdout is not None:
        server.process.stdout.close()
