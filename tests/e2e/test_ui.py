"""The UI in a real browser, against a running API and UI on loopback."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import time
from functools import partial
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from inferlog.features import FEATURE_NAMES
from inferlog.ml import dataset
from tests.e2e.conftest import KEYED, KIBANA_URL, Process
from tests.servers import wait_until
from tests.traffic import offline_traffic


def open_tab(page: Page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def wait_for_record(api: Process, transaction_id: str) -> httpx.Response:
    url = f"{api.url}/logs/{transaction_id}"
    wait_until(lambda: httpx.get(url, headers=KEYED).status_code == 200, 15)
    return httpx.get(url, headers=KEYED)


def cases_csv(n: int) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FEATURE_NAMES, lineterminator="\n")
    writer.writeheader()
    writer.writerows(dataset.held_out_cases()[:n])
    return buffer.getvalue()


def test_predict_right_after_loading_the_malignant_case_shows_the_label_the_api_gives(
    page: Page, api: Process, screenshots: Path
) -> None:
    case = httpx.get(
        f"{api.url}/examples", headers=KEYED, params={"label": "malignant", "n": 1}
    ).json()[0]
    expected = httpx.post(f"{api.url}/predict", headers=KEYED, json=case).json()["label"]
    assert expected == "malignant"
    # Predict at once, without waiting for the loaded values to reach the form.
    page.get_by_role("button", name="Load a malignant case").click()
    page.locator("#predict-button").click()
    expect(page.locator("#answer-label")).to_have_text(expected.upper())
    expect(page.locator("#field-radius_mean input")).to_have_value(str(case["radius_mean"]))
    transaction_id = page.locator("#transaction-id").inner_text()
    expect(page.locator("#probability")).to_contain_text("threshold")
    page.screenshot(path=screenshots / "predict.png", full_page=True)
    record = wait_for_record(api, transaction_id)
    assert record.status_code == 200
    assert record.json()["ml"]["input"] == case  # the values on screen were the ones sent
    assert record.json()["ml"]["prediction"]["label"] == expected


def bars(page: Page) -> list[dict[str, str]]:
    """The contribution chart's drawn bars (zero-height anchors left out), left to right."""
    drawn: list[dict[str, str]] = page.eval_on_selector_all(
        "#contributions .mark-rect.role-mark path",
        """paths => paths
            .map(p => ({box: p.getBBox(), label: p.getAttribute('aria-label') || '',
                        fill: p.getAttribute('fill')}))
            .filter(b => b.box.height > 0.5)
            .sort((a, b) => a.box.x - b.box.x)
            .map(b => ({label: b.label, fill: b.fill}))""",
    )
    return drawn


def shows_bars(page: Page, wanted: list[str]) -> bool:
    labels = [b["label"] for b in bars(page)]
    return len(labels) == len(wanted) and all(
        w in label for w, label in zip(wanted, labels, strict=True)
    )


def test_the_contribution_chart_colours_each_direction_and_its_legend_names_both(
    page: Page, api: Process, screenshots: Path
) -> None:
    for label in ("benign", "malignant"):  # each answer redraws the chart
        case = httpx.get(
            f"{api.url}/examples", headers=KEYED, params={"label": label, "n": 1}
        ).json()[0]
        answer = httpx.post(f"{api.url}/predict", headers=KEYED, json=case).json()
        page.get_by_role("button", name=f"Load a {label} case").click()
        page.locator("#predict-button").click()
        expect(page.locator("#answer-label")).to_have_text(label.upper())
        chart = page.locator("#contributions")
        expect(chart.locator(".role-legend-label text")).to_have_count(2)
        legend = chart.locator(".role-legend-label text").all_text_contents()
        assert sorted(legend) == ["towards benign", "towards malignant"]
        swatches = chart.locator(".role-legend-symbol path").evaluate_all(
            "paths => paths.map(p => p.getAttribute('fill'))"
        )
        assert dict(zip(legend, swatches, strict=True)) == {
            "towards malignant": "#c0392b",
            "towards benign": "#27ae60",
        }
        wanted = [f"{rank}. {f['name']};" for rank, f in enumerate(answer["top_features"], 1)]

        wait_until(partial(shows_bars, page, wanted), 15)  # not the previous answer's bars
        drawn = bars(page)
        for bar, feature in zip(drawn, answer["top_features"], strict=True):
            assert feature["name"] in bar["label"]
            towards = "towards malignant" if feature["contribution"] > 0 else "towards benign"
            assert towards in bar["label"], (bar, feature)
            assert bar["fill"] == ("#c0392b" if feature["contribution"] > 0 else "#27ae60")
        assert "undefined" not in " ".join(legend + [b["label"] for b in drawn])
    page.screenshot(path=screenshots / "predict-contributions.png", full_page=True)


def test_a_value_outside_the_bounds_is_refused_before_any_request(page: Page, api: Process) -> None:
    before = requests_served(api, "POST", "/predict")
    field = page.locator("#field-radius_mean input")
    field.fill("1000")
    page.locator("#predict-button").click()
    expect(page.get_by_text(re.compile("greater than maximum value", re.I)).first).to_be_visible()
    # A request the UI made would have been answered, and counted, before the message shows.
    assert requests_served(api, "POST", "/predict") == before
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
    wait_until(lambda: int(count.inner_text()) >= before + 3, 15)  # the UI's polls count too
    assert int(page.locator("#prediction-count").inner_text()) >= 3
    latency = page.locator("#latency-plot")
    for percentile in ("p50", "p95", "p99"):  # the legend names each series
        expect(latency).to_contain_text(percentile)
    expect(page.locator("#throughput-plot")).to_contain_text("Predictions per minute")
    labels = page.locator("#labels-plot")  # the three cases hold both labels
    expect(labels).to_contain_text("benign", timeout=10_000)
    expect(labels).to_contain_text("malignant", timeout=10_000)
    page.screenshot(path=screenshots / "monitoring.png", full_page=True)


def test_the_logs_tab_shows_the_latest_records_when_opened_and_the_model_tab_its_card(
    page: Page, api: Process, screenshots: Path
) -> None:
    response = httpx.post(f"{api.url}/predict", headers=KEYED, json=dataset.held_out_cases()[5])
    transaction_id = response.json()["transaction_id"]
    wait_for_record(api, transaction_id)
    open_tab(page, "Logs")  # nothing else clicked
    expect(page.locator("#logs-table")).to_contain_text(transaction_id)
    page.locator("#logs-tid input, #logs-tid textarea").first.fill("no-such-transaction")
    page.locator("#logs-refresh").click()
    expect(page.locator("#logs-error")).to_contain_text("No request matches these filters")
    open_tab(page, "Model")
    expect(page.locator("#model-card")).to_contain_text("Held-out metrics")
    expect(page.locator("#model-card")).to_contain_text("Confusion matrix")
    page.screenshot(path=screenshots / "model.png", full_page=True)


def test_the_logs_live_toggle_shows_new_requests_without_a_click(page: Page, api: Process) -> None:
    open_tab(page, "Logs")
    page.locator("#logs-live input").check()
    response = httpx.post(f"{api.url}/predict", headers=KEYED, json=dataset.held_out_cases()[9])
    expect(page.locator("#logs-table")).to_contain_text(
        response.json()["transaction_id"], timeout=10_000
    )


def requests_served(api: Process, method: str, route: str) -> float:
    """Requests the API has answered on a route, counted as it answers (/metrics)."""
    text = httpx.get(f"{api.url}/metrics").text
    labels = f'method="{method}",route="{route}"'
    pattern = rf"^inferlog_http_requests_total\{{{re.escape(labels)},[^}}]*\}} (\S+)$"
    return sum(float(n) for n in re.findall(pattern, text, re.M))


def test_the_monitoring_tab_polls_only_while_it_is_open(page: Page, api: Process) -> None:
    open_tab(page, "Monitoring")
    expect(page.locator("#request-count")).to_have_text(re.compile(r"\d+"))
    open_tab(page, "Predict")
    time.sleep(3.5)  # a poll sent as the tab closed lands within a polling period
    before = requests_served(api, "GET", "/logs/stats")
    time.sleep(7.0)  # an absence to show: no poll for two polling periods and more
    assert requests_served(api, "GET", "/logs/stats") == before
    open_tab(page, "Monitoring")
    # One on opening, then every 3 s.
    wait_until(lambda: requests_served(api, "GET", "/logs/stats") >= before + 2, 15)


def test_selecting_a_logs_row_explains_that_request_as_get_logs_id_records_it(
    page: Page, api: Process, screenshots: Path
) -> None:
    case = dataset.held_out_cases()[7]
    transaction_id = httpx.post(f"{api.url}/predict", headers=KEYED, json=case).json()[
        "transaction_id"
    ]
    record = wait_for_record(api, transaction_id).json()
    open_tab(page, "Logs")
    page.locator(f'#logs-table [role=gridcell][data-col="1"]:has-text("{transaction_id}")').click()
    expect(page.locator("#request-tid")).to_have_text(transaction_id)
    summary = page.locator("#request-summary")
    expect(summary).to_contain_text("POST /predict")
    label = record["ml"]["prediction"]["label"]
    expect(page.locator("#request-label")).to_contain_text(label)
    profile = record["ml"]["profile"]
    expect(summary).to_contain_text(f"CPU {profile['cpu_ms']:.2f} ms")
    expect(summary).to_contain_text(f"RSS {profile['rss_mb']:.1f} MB")
    rows = page.locator("#profile-chart [data-function]")
    expect(rows).to_have_count(len(profile["top_functions"]))
    shown = rows.evaluate_all(
        "rows => rows.map(r => [r.dataset.function, Number(r.dataset.selfMs),"
        " Number(r.dataset.cumulativeMs)])"
    )
    assert shown == [
        [f["function"], round(f["tottime_ms"], 3), round(f["cumtime_ms"], 3)]
        for f in profile["top_functions"]
    ]
    visible = rows.first.locator("em").all_inner_texts()  # the numbers a person reads
    first = profile["top_functions"][0]
    assert visible == [f"{first['tottime_ms']:.3f} ms", f"{first['cumtime_ms']:.3f} ms"]
    table = page.locator("#profile-table")
    for function in profile["top_functions"]:
        expect(table).to_contain_text(function["function"])
    expect(page.locator("#request-inputs")).to_contain_text("radius_mean")
    link = page.locator("#kibana-link")
    href = link.get_attribute("href") or ""
    assert href.startswith(f"{KIBANA_URL}/app/discover#/")
    assert transaction_id in href
    assert "inferlog-ml-api-logs" in href
    page.screenshot(path=screenshots / "logs-request.png", full_page=True)


def test_the_predict_answer_links_to_its_own_request_in_the_logs_tab(page: Page) -> None:
    page.get_by_role("button", name="Load a benign case").click()
    page.locator("#predict-button").click()
    expect(page.locator("#answer-label")).to_have_text("BENIGN")
    transaction_id = page.locator("#transaction-id").inner_text()
    page.locator("#show-request").click()
    expect(page.get_by_role("tab", name="Logs")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#request-tid")).to_have_text(transaction_id)
    expect(page.locator("#profile-chart [data-function]").first).to_be_visible()


TAB_ERRORS = {
    "Monitoring": "#monitoring-error",
    "Logs": "#logs-error",
    "Drift": "#drift-error",
    "Model": "#model-error",
}


def test_with_the_api_stopped_every_tab_says_so_then_recovers(
    page: Page, api: Process, screenshots: Path, tmp_path: Path
) -> None:
    upload = tmp_path / "cases.csv"
    upload.write_text(cases_csv(3))
    api.stop()
    try:
        page.locator("#predict-button").click()
        expect(page.locator("#predict-error")).to_contain_text("not reachable")
        open_tab(page, "Batch")
        page.locator("#batch-upload input[type=file]").set_input_files(str(upload))
        expect(page.locator("#batch-error")).to_contain_text("not reachable")
        for tab, error in TAB_ERRORS.items():
            open_tab(page, tab)
            expect(page.locator(error)).to_contain_text("not reachable")
        page.screenshot(path=screenshots / "api-down.png", full_page=True)
    finally:
        api.start()
    for tab, error in TAB_ERRORS.items():  # opening a tab again asks again
        open_tab(page, tab)
        expect(page.locator(error)).not_to_contain_text("not reachable")
    expect(page.locator("#model-card")).to_contain_text("Held-out metrics")
    open_tab(page, "Predict")
    page.locator("#predict-button").click()
    expect(page.locator("#predict-error")).to_be_empty()
    expect(page.locator("#answer")).to_contain_text("Transaction id")


def test_the_drift_tab_shows_the_drifted_feature_when_opened_and_plots_it(
    page: Page, api: Process, screenshots: Path
) -> None:
    traffic = offline_traffic(seed=21, drift={"compactness_worst": 2.5})
    for _ in range(12):  # batches of 20: every case in its record (RECORD_MAX_CASES)
        batch = [traffic.case() for _ in range(20)]
        assert httpx.post(f"{api.url}/predict/batch", headers=KEYED, json=batch).status_code == 200
    wait_until(lambda: httpx.get(f"{api.url}/drift", headers=KEYED).json()["cases"] >= 240, 30)
    open_tab(page, "Drift")  # nothing else clicked
    table = page.locator("#drift-table")
    # The API may have just restarted (the test before): its reader process, which computes
    # /drift, takes seconds to import scipy and scikit-learn here.
    expect(table.locator("tr.drifted")).to_contain_text("compactness_worst", timeout=30_000)
    page.locator("#drift-feature input").fill("compactness_worst")
    page.locator("#drift-feature input").press("Enter")
    page.locator("#drift-summary").click()  # closes the dropdown
    expect(page.locator("#drift-plot")).to_contain_text("reference")
    page.screenshot(path=screenshots / "drift.png", full_page=True)


def test_the_environment_the_ui_runs_from_holds_none_of_the_model_side(ui_python: str) -> None:
    # Every browser test above ran against a UI started from this environment (`ui_python`).
    model_side = ("sklearn", "scipy", "joblib", "redis", "elasticsearch", "uvloop")
    probe = subprocess.run(
        [
            ui_python,
            "-c",
            "import importlib.util, sys\n"
            f"print(*[m for m in {model_side!r} if importlib.util.find_spec(m)], sep=',')\n"
            "import inferlog.ui.app\n"
            "print(*sorted(m for m in sys.modules if m.startswith('inferlog.') and "
            "not m.startswith(('inferlog.ui', 'inferlog.features', 'inferlog.kibana_links'))))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    installed, imported = probe.stdout.split("\n")[:2]
    assert installed == ""  # none of the model, Redis or Elasticsearch side, nor the API server
    assert imported == ""  # and the UI imports no other part of the project
