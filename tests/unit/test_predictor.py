from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.special import logit

from inferlog.features import FEATURE_NAMES, FEATURES
from inferlog.ml import dataset
from inferlog.ml.artifacts import load_artifacts
from inferlog.ml.predictor import Predictor


def test_the_contributions_of_every_feature_add_up_to_the_log_odds(model_dir: Path) -> None:
    artifacts = load_artifacts(model_dir)
    explained = Predictor(artifacts, top_features=len(FEATURE_NAMES))
    intercept = artifacts.estimator[-1].intercept_[0]
    predictions = explained.predict(dataset.split().x_test[:20])
    for p in predictions:
        assert sorted(c.name for c in p.top_features) == sorted(FEATURE_NAMES)
        total = intercept + sum(c.contribution for c in p.top_features)
        assert total == pytest.approx(logit(p.probability_malignant), rel=1e-9)


def test_top_features_are_the_largest_contributions_in_order(
    predictor: Predictor, model_dir: Path
) -> None:
    x = dataset.split().x_test[:5]
    every = Predictor(load_artifacts(model_dir), top_features=len(FEATURE_NAMES)).predict(x)
    for row, prediction in enumerate(predictor.predict(x)):
        assert len(prediction.top_features) == predictor.top_features < len(FEATURE_NAMES)
        ranked = sorted(every[row].top_features, key=lambda c: abs(c.contribution), reverse=True)
        assert [c.name for c in prediction.top_features] == [
            c.name for c in ranked[: predictor.top_features]
        ]
        for c in prediction.top_features:
            assert c.value == x[row, FEATURE_NAMES.index(c.name)]


def test_label_follows_the_card_threshold(predictor: Predictor) -> None:
    x = dataset.split().x_test
    for p in predictor.predict(x):
        assert (p.label == "malignant") == (p.probability_malignant >= predictor.threshold)


def test_risk_levels_follow_the_card_bands(predictor: Predictor) -> None:
    bands = predictor.card["risk_bands"]
    assert predictor.risk_level(0.0) == "LOW"
    assert predictor.risk_level(bands["MEDIUM"]["from"]) == "MEDIUM"
    assert predictor.risk_level(bands["HIGH"]["from"]) == "HIGH"
    assert predictor.risk_level(1.0) == "HIGH"


def test_values_outside_the_training_range_are_flagged(predictor: Predictor) -> None:
    case = np.array([[f.default for f in FEATURES]])
    assert predictor.predict(case)[0].out_of_range_features == []
    radius = FEATURE_NAMES.index("radius_mean")
    case[0, radius] = dataset.split().x_train[:, radius].max() * 1.5
    assert predictor.predict(case)[0].out_of_range_features == ["radius_mean"]


def test_one_batch_equals_cases_one_by_one(predictor: Predictor) -> None:
    x = dataset.split().x_test[:30]
    batch = predictor.predict(x)
    singles = [predictor.predict(x[i : i + 1])[0] for i in range(len(x))]
    for b, s in zip(batch, singles, strict=True):
        # Vectorised BLAS may differ from the one-row path in the last bits, never more.
        assert b.probability_malignant == pytest.approx(s.probability_malignant, rel=1e-12)
        assert (b.label, b.risk_level, b.out_of_range_features) == (
            s.label,
            s.risk_level,
            s.out_of_range_features,
        )
        assert [c.name for c in b.top_features] == [c.name for c in s.top_features]
        assert [c.contribution for c in b.top_features] == pytest.approx(
            [c.contribution for c in s.top_features], rel=1e-12
        )


def test_probabilities_equal_the_fitted_pipeline(predictor: Predictor, model_dir: Path) -> None:
    pipeline = load_artifacts(model_dir).estimator
    x = dataset.split().x_test
    np.testing.assert_allclose(
        predictor.probabilities(x), pipeline.predict_proba(x)[:, 1], rtol=1e-12, atol=1e-15
    )
    single = [p.probability_malignant for p in predictor.predict(x)]
    np.testing.assert_allclose(single, pipeline.predict_proba(x)[:, 1], rtol=1e-12, atol=1e-15)
