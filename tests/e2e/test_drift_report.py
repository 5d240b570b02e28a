"""The drift report, from pipeline output to an HTML file that a real Chromium displays."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient
from playwright.sync_api import Browser

from inferlog.api.app import create_app
from inferlog.config import Settings
from inferlog.ml.predictor import Predictor
from logs_pipeline.__main__ import main as pipeline_cli
from logs_pipeline.__main__ import make_pipeline
from tests.servers import TEST_CLIENT_HOSTS, RedisServer
from tests.traffic import offline_traffic


def test_the_report_shows_a_plot_per_feature_and_names_the_drifted_ones(
    redis_server: RedisServer,
    model_dir: Path,
    predictor: Predictor,
    tmp_path: Path,
    browser: Browser,
    screenshots: Path,
    monkeypatch,
) -> None:
    settings = Settings(
        model_dir=model_dir,
        data_dir=tmp_path,
        redis_url=redis_server.url,
        redis_stream=f"drift:{time.monotonic_ns()}",
        allowed_hosts=TEST_CLIENT_HOSTS,
    )
    traffic = offline_traffic(seed=11, drift={"smoothness_mean": 2.0, "area_worst": -1.5})
    app = create_app(settings, predictor)
    with TestClient(app) as client:
        cases = [traffic.case() for _ in range(200)]
        for start in range(0, 200, 50):
            assert client.post("/predict/batch", json=cases[start : start + 50]).is_success
        assert app.state.shipper.wait_idle(20)
    pipeline = make_pipeline(settings)  # no ELASTICSEARCH_URL: NDJSON files
    pipeline.collector.ensure_group()
    while pipeline.step(block=False):
        pass

    report = tmp_path / "drift.html"
    for name, value in (
        ("MODEL_DIR", str(model_dir)),
        ("DATA_DIR", str(tmp_path)),
        ("ELASTICSEARCH_URL", ""),
    ):
        monkeypatch.setenv(name, value)
    from inferlog.config import get_settings

    get_settings.cache_clear()
    try:
        assert pipeline_cli(["drift-report", "--out", str(report)]) == 0
    finally:
        get_settings.cache_clear()

    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    try:
        page.goto(report.as_uri())
        verdict = page.locator("#verdict").inner_text()
        assert "smoothness_mean" in verdict
        assert "area_worst" in verdict
        assert page.locator("tr.drifted").count() == 2
        images = page.locator("figure.plot img")
        assert images.count() == 31  # 30 features and the probability
        widths = images.evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
        assert all(w > 100 for w in widths)
        page.screenshot(path=screenshots / "drift-report.png", full_page=False)
    finally:
        page.close()
