from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from inferlog.features import FEATURE_NAMES, matrix_of
from inferlog.ml.artifacts import load_artifacts
from inferlog.ml.drift import ALPHA, MIN_DISTANCE, drift_report
from inferlog.ml.predictor import Predictor
from tests.traffic import offline_traffic


@pytest.fixture(scope="module")
def reference(model_dir: Path) -> dict[str, Any]:
    return load_artifacts(model_dir).reference


def simulated(n: int, seed: int, drift: dict[str, float] | None = None) -> np.ndarray:
    traffic = offline_traffic(seed, drift)
    return matrix_of(traffic.case() for _ in range(n))


def test_cases_sampled_from_the_training_reference_show_no_drift(
    reference: dict[str, Any], predictor: Predictor
) -> None:
    rng = np.random.default_rng(0)
    train = np.column_stack([reference["features"][n]["sample"] for n in FEATURE_NAMES])
    for _ in range(5):
        x = train[rng.integers(0, len(train), 300)]
        report = drift_report(reference, x, predictor.probabilities(x), 50)
        assert report["drifted_features"] == []
        assert report["probability"]["drifted"] is False


@pytest.mark.parametrize("seed", range(6))
def test_simulated_traffic_without_drift_stays_under_the_distance_guard(
    reference: dict[str, Any], predictor: Predictor, seed: int
) -> None:
    x = simulated(300, seed)
    report = drift_report(reference, x, predictor.probabilities(x), 50, with_histograms=False)
    assert report["drifted_features"] == []
    assert max(f["distance_std"] for f in report["features"]) < MIN_DISTANCE


@pytest.mark.parametrize(
    "drift",
    [{"radius_mean": 2.0}, {"texture_worst": 1.5, "symmetry_se": -1.5}, {"area_se": 3.0}],
)
def test_exactly_the_drifted_features_are_found(
    reference: dict[str, Any], predictor: Predictor, drift: dict[str, float]
) -> None:
    x = simulated(300, seed=3, drift=drift)
    report = drift_report(reference, x, predictor.probabilities(x), 50)
    assert sorted(report["drifted_features"]) == sorted(drift)
    assert report["drifted_share"] == pytest.approx(len(drift) / 30)
    histogram = report["histograms"][next(iter(drift))]
    assert sum(histogram["reference"]) == pytest.approx(1.0)
    assert len(histogram["edges"]) == len(histogram["current"]) + 1


def test_below_the_minimum_there_is_no_verdict(reference: dict[str, Any]) -> None:
    x = simulated(10, seed=1)
    report = drift_report(reference, x, np.full(10, 0.5), min_cases=50)
    assert report["enough_data"] is False
    assert "not enough data" in report["message"]
    assert "features" not in report


@pytest.mark.parametrize("cases", [50, 300, 2000])
@pytest.mark.parametrize("drift", [None, {"radius_mean": 0.3, "area_se": 0.3}])
def test_p_values_stay_within_a_hundredth_of_the_exact_test_with_the_same_verdicts(
    reference: dict[str, Any], predictor: Predictor, cases: int, drift: dict[str, float] | None
) -> None:
    x = simulated(cases, seed=1, drift=drift)
    report = drift_report(reference, x, predictor.probabilities(x), 50, with_histograms=False)
    threshold = ALPHA / len(FEATURE_NAMES)
    for column, feature in enumerate(report["features"]):
        sample = np.asarray(reference["features"][feature["name"]]["sample"])
        exact = stats.ks_2samp(sample, x[:, column], method="exact").pvalue
        assert feature["p_value"] == pytest.approx(exact, abs=0.01), feature["name"]
        assert (feature["p_value"] < threshold) == (exact < threshold), feature["name"]
