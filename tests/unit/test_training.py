from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from inferlog.ml import dataset
from inferlog.ml.artifacts import CARD_FILE, load_artifacts
from inferlog.ml.train import (
    HIGH_RISK_PRECISION,
    CandidateResult,
    choose_candidate,
    choose_high_risk_cut,
    choose_threshold,
    train,
)


@pytest.fixture(scope="module")
def card(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / CARD_FILE).read_text())


def test_training_twice_gives_the_same_version(
    model_dir: Path, card: dict[str, Any], tmp_path: Path
) -> None:
    again = train(tmp_path)
    assert again["version"] == card["version"]
    assert (tmp_path / "model.joblib").read_bytes() == (model_dir / "model.joblib").read_bytes()


def test_held_out_metrics_meet_the_bars(card: dict[str, Any]) -> None:
    metrics = card["metrics_held_out"]
    assert metrics["roc_auc"] >= 0.99
    assert metrics["recall_malignant"] >= 0.95


def test_card_metrics_match_a_recomputation_on_the_held_out_split(
    model_dir: Path, card: dict[str, Any]
) -> None:
    split = dataset.split()
    model = load_artifacts(model_dir).estimator
    proba = model.predict_proba(split.x_test)[:, 1]
    predicted = proba >= card["threshold"]["value"]
    metrics = card["metrics_held_out"]
    assert metrics["n_cases"] == len(split.y_test) == 114
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(split.y_test, proba))
    assert metrics["recall_malignant"] == pytest.approx(recall_score(split.y_test, predicted))
    assert metrics["precision_malignant"] == pytest.approx(precision_score(split.y_test, predicted))
    cm = metrics["confusion_matrix"]
    assert cm["false_negatives"] == int(((~predicted) & (split.y_test == 1)).sum())
    assert cm["true_positives"] + cm["false_negatives"] == int(split.y_test.sum())


def test_card_records_provenance_and_the_choice(card: dict[str, Any]) -> None:
    assert card["version"] == card["artifact"]["sha256"][:12]
    assert card["data"]["sha256"] == dataset.load().sha256
    assert card["training"]["scikit_learn_version"]
    assert len(card["selection"]["candidates"]) >= 2
    assert card["selection"]["chosen"] == card["algorithm"]
    assert "within one standard deviation" in card["selection"]["reason"]
    bands = card["risk_bands"]
    assert bands["LOW"]["to"] == bands["MEDIUM"]["from"] == card["threshold"]["value"]
    assert bands["MEDIUM"]["to"] == bands["HIGH"]["from"] <= 1.0


def test_threshold_is_the_highest_reaching_the_target_recall() -> None:
    y = np.array([1, 1, 1, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.7])
    assert choose_threshold(y, scores, 0.75) == 0.6
    assert choose_threshold(y, scores, 1.0) == 0.3
    assert recall_score(y, scores >= choose_threshold(y, scores, 0.75)) >= 0.75


def test_high_risk_cut_starts_where_precision_stays_above_target() -> None:
    y = np.array([1, 1, 1, 0, 1, 0])
    scores = np.array([0.95, 0.9, 0.85, 0.8, 0.5, 0.1])
    assert choose_high_risk_cut(y, scores, threshold=0.3) == 0.85


def high_risk_cut_by_definition(y: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """Every candidate cut from the top down, precision computed for each."""
    candidates = np.unique(scores[scores >= threshold])
    cut = float(candidates[-1]) if len(candidates) else threshold
    for t in candidates[::-1]:
        if precision_score(y, scores >= t, zero_division=0.0) < HIGH_RISK_PRECISION:
            break
        cut = float(t)
    return cut


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 20)), min_size=1, max_size=40).filter(
        lambda cases: any(positive for positive, _ in cases)
    ),
    st.integers(0, 20),
)
def test_high_risk_cut_is_the_cut_its_definition_gives(
    cases: list[tuple[bool, int]], threshold: int
) -> None:
    # Scores on a grid of 21 values: ties, cuts that fail at the top, none above the threshold.
    y = np.array([int(positive) for positive, _ in cases])
    scores = np.array([score / 20 for _, score in cases])
    expected = high_risk_cut_by_definition(y, scores, threshold / 20)
    assert choose_high_risk_cut(y, scores, threshold / 20) == expected


def test_simplest_candidate_wins_when_auc_is_within_one_std() -> None:
    simple = CandidateResult("simple", 0.990, 0.004, 0.2)
    complex_ = CandidateResult("complex", 0.993, 0.004, 0.6)
    assert choose_candidate([simple, complex_])[0] is simple
    clearly_better = CandidateResult("complex", 0.999, 0.001, 0.6)
    assert choose_candidate([simple, clearly_better])[0] is clearly_better
