"""The UI in a real browser, against a running API and UI on loopback."""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import Path

import httpx2 as httpx
from playwright.sync_api import Page, expect

from inferlog.features import FEATURE_NAMES
from inferlog.ml import dataset
from tests.e2e.conftest import KEYED, Process


def open_tab(page: Page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def wait_for_record(api: Process, transaction_id: str) -> httpx.Response:
    deadline = time.monotonic() + 15
    while True:
        response = httpx.get(f"{api.url}/logs/{transaction_id}", headers=KEYED)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def cases_csv(n: int) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FEATURE_NAMES, lineterminator="\n")
    writer.writeheader()
    writer.writerows(dataset.held_out_cases()[:n])
    return buffer.getvalue()


def test_a_malignant_case_is_predicted_and_its_transaction_is_logged(
    page: Page, api: Process, screenshots: Path
) -> None:
    page.get_by_role("button", name="Load a malignant case").click()
    expect(page.locator("#field-radius_mean input")).to_have_value("20.94")
    page.locator("#predict-button").click()
    answer = page.locator("#answer")
    expect(answer).to_contain_text("MALIGNANT")
    transaction_id = page.locator("#transaction-id").inner_text()
    assert re.fullmatch(r"[0-9a-f-]{36}", transaction_id)
    expect(page.locator("#probability")).to_contain_text("threshold")
    page.screenshot(path=screenshots / "predict.png", full_page=True)
    record = wait_for_record(api, transaction_id)
    assert record.status_code == 200
    assert record.json()["ml"]["prediction"]["label"] == "malignant"
    assert record.json()["user_agent"]["original"].startswith("python-httpx")


def test_a_value_outside_the_bounds_is_refused_before_any_request(page: Page, api: Process) -> None:
    before = httpx.get(
        f"{api.url}/logs", headers=KEYED, params={"path": "/predict", "limit": 1000}
    ).json()
    field = page.locator("#field-radius_mean input")
    field.fill("1000")
    page.locator("#predict-button").click()
    expect(page.get_by_text(re.compile("greater than maximum value", re.I)).first).to_be_visible()
    time.sleep(1.0)
    after = httpx.get(
        f"{api.url}/logs", headers=KEYED, params={"path": "/predict", "limit": 1000}
    ).json()
    assert after["count"] == before["count"]
    expect(page.locator("#answer")).not_to_contain_text("MALIGNANT")


def test_a_csv_of_20_cases_gives_20_result_rows_to_download(
    page: Page, tmp_path: Path, screenshots: Path
) -> None:
    upload = tmp_path / "cases.csv"
    upload.write_text(cases_csv(20))
    open_tab(page, "Batch")
    page.locator("#batch-upload input[type=file]").set_input_files(str(upload))
    download_button = page.locator("#batch-download")
    expect(download_button).to_be_visible(timeout=30_000)
    expect(page.locator("#batch-summary")).to_contain_text("20 cases predicted")
    expect(page.locator("#batch-results")).to_contain_text("probability_malignant")
    page.screenshot(path=screenshots / "batch.png", full_page=True)
    with page.expect_download() as caught:
        download_button.click()
    rows = list(csv.DictReader(io.StringIO(Path(caught.value.path()).read_text())))
    assert len(rows) == 20
    assert {row["label"] for row in rows} <= {"malignant", "benign"}
    assert list(rows[0])[:30] == list(FEATURE_NAMES)


def test_a_bad_csv_shows_its_row_errors(page: Page, tmp_path: Path) -> None:
    header, *rows = (line.split(",") for line in cases_csv(3).splitlines())
    rows[1][0] = "abc"  # radius_mean of CSV row 3
    rows[2][3] = "-5"  # area_mean of CSV row 4
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(",".join(cells) for cells in [header, *rows]) + "\n")
    open_tab(page, "Batch")
    page.locator("#batch-upload input[type=file]").set_input_files(str(bad))
    errors = page.locator("#batch-error")
    expect(errors).to_contain_text("row 3, radius_mean: not a number: 'abc'")
    expect(errors).to_contain_text("row 4, area_mean")


def test_the_api_refuses_clients_without_a_key_while_the_ui_uses_its_own(
    page: Page, api: Process
) -> None:
    assert httpx.get(f"{api.url}/logs").status_code == 401
    assert httpx.post(f"{api.url}/predict", json=dataset.held_out_cases()[0]).status_code == 401
    page.get_by_role("button", name="Load a malignant case").click()
    expect(page.locator("#field-radius_mean input")).to_have_value("20.94")
    page.locator("#predict-button").click()
    expect(page.locator("#answer")).to_contain_text("MALIGNANT")


def test_the_monitoring_request_count_grows_after_predictions(
    page: Page, api: Process, screenshots: Path
) -> None:
    open_tab(page, "Monitoring")
    count = page.locator("#request-count")
    expect(count).to_have_text(re.compile(r"\d+"))
    before = int(count.inner_text())
    for case in dataset.held_out_cases()[:3]:
        assert httpx.post(f"{api.url}/predict", headers=KEYED, json=case).status_code == 200
    expect(count).not_to_have_text(str(before), timeout=15_000)
    assert int(count.inner_text()) >= before + 3
    assert int(page.locator("#prediction-count").inner_text()) >= 3
    latency = page.locator("#latency-plot")
    for percentile in ("p50", "p95", "p99"):  # the legend names each series
        expect(latency).to_contain_text(percentile)
    expect(page.locator("#throughput-plot")).to_contain_text("Predictions per minute")
    labels = page.locator("#labels-plot")  # the three cases hold both labels
    expect(labels).to_contain_text("benign", timeout=10_000)
    expect(labels).to_contain_text("malignant", timeout=10_000)
    page.screenshot(path=screenshots / "monitoring.png", full_page=True)


def test_the_logs_and_model_tabs_show_records_and_the_card(
    page: Page, api: Process, screenshots: Path
) -> None:
    response = httpx.post(f"{api.url}/predict", headers=KEYED, json=dataset.held_out_cases()[5])
    transaction_id = response.json()["transaction_id"]
    wait_for_record(api, transaction_id)
    open_tab(page, "Logs")
    page.locator("#logs-tid input, #logs-tid textarea").first.fill(transaction_id)
    page.locator("#logs-refresh").click()
    expect(page.locator("#logs-table")).to_contain_text(transaction_id)
    page.screenshot(path=screenshots / "logs.png", full_page=True)
    open_tab(page, "Model")
    expect(page.locator("#model-card")).to_contain_text("Held-out metrics")
    expect(page.locator("#model-card")).to_contain_text("Confusion matrix")
    page.screenshot(path=screenshots / "model.png", full_page=True)


def test_with_the_api_stopped_predicting_shows_a_message_then_recovers(
    page: Page, api: Process
) -> None:
    api.stop()
    try:
        page.locator("#predict-button").click()
        expect(page.locator("#predict-error")).to_contain_text("not reachable")
    finally:
        api.start()
    page.locator("#predict-button").click()
    expect(page.locator("#predict-error")).to_be_empty()
    expect(page.locator("#answer")).to_contain_text("Transaction id")


def test_the_drift_tab_highlights_the_drifted_feature_and_plots_it(
    page: Page, api: Process, screenshots: Path
) -> None:
    from inferlog.simulate import Traffic

    traffic = Traffic(seed=21, drift={"compactness_worst": 2.5})
    for _ in range(4):
        batch = [traffic.case() for _ in range(60)]
        assert httpx.post(f"{api.url}/predict/batch", headers=KEYED, json=batch).status_code == 200
    time.sleep(1.0)  # the shipper's flush interval
    open_tab(page, "Drift")
    page.locator("#drift-refresh").click()
    table = page.locator("#drift-table")
    # The API may have just restarted (the test before): its reader process, which computes
    # /drift, takes seconds to import scipy and scikit-learn here.
    expect(table.locator("tr.drifted")).to_contain_text("compactness_worst", timeout=30_000)
    page.locator("#drift-feature input").fill("compactness_worst")
    page.locator("#drift-feature input").press("Enter")
    page.locator("#drift-summary").click()  # closes the dropdown
    expect(page.locator("#drift-plot")).to_contain_text("reference")
    page.screenshot(path=screenshots / "drift.png", full_page=True)
