"""Predictions with explanations: the narrow interface the API calls.

`Predictor.predict` takes a (n_cases, 30) float matrix in feature-spec order and makes one model
call for the whole batch. Explanations are exact for the linear model: with standardised inputs
z = (x - mean) / scale, the log-odds of malignancy are `intercept + sum(coef * z)`, so each
feature's signed contribution is `coef * z` (relative to an average training case).

z is computed once, with the fitted scaler's own mean and scale, and feeds both the fitted
LogisticRegression and the explanation. That is the pipeline's arithmetic (a test checks equal
probabilities) without the pipeline's per-call validation, which doubled the calls the profiler
instruments on every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from inferlog.features import FEATURE_NAMES
from inferlog.ml.artifacts import ModelArtifacts, ModelLoadError

Label = Literal["malignant", "benign"]
RiskLevel = Literal["LOW", "MEDIUM", "HIGH"]


@dataclass(frozen=True)
class Contribution:
    name: str
    value: float
    contribution: float


@dataclass(frozen=True)
class Prediction:
    label: Label
    probability_malignant: float
    threshold: float
    risk_level: RiskLevel
    top_features: list[Contribution]
    out_of_range_features: list[str]

    def verdict(self, probability_key: str) -> dict[str, Any]:
        """The answer without its explanation; the probability's name differs between an API
        answer (`probability_malignant`) and a request record (`probability`)."""
        # Plain attribute access: dataclasses.asdict deep-copies, a visible cost per request.
        return {
            "label": self.label,
            probability_key: self.probability_malignant,
            "threshold": self.threshold,
            "risk_level": self.risk_level,
            "out_of_range_features": self.out_of_range_features,
        }


class Predictor:
    def __init__(self, artifacts: ModelArtifacts, top_features: int = 5) -> None:
        card = artifacts.card
        if tuple(card["feature_names"]) != FEATURE_NAMES:
            raise ModelLoadError(
                "the model was trained on other features than the feature spec: retrain it"
            )
        self.name = artifacts.name
        self.version = artifacts.version
        self.card = card
        self.reference = artifacts.reference
        self.threshold = float(card["threshold"]["value"])
        self.high_risk_from = float(card["risk_bands"]["HIGH"]["from"])
        self.top_features = top_features
        self._scaler, self._linear = _linear_parts(artifacts.estimator)
        stats = artifacts.reference["features"]
        self._train_min = np.array([stats[n]["min"] for n in FEATURE_NAMES])
        self._train_max = np.array([stats[n]["max"] for n in FEATURE_NAMES])

    def standardise(self, x: np.ndarray) -> np.ndarray:
        z: np.ndarray = (x - self._scaler.mean_) / self._scaler.scale_
        return z

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """P(malignant) for each row: one model call."""
        p: np.ndarray = self._linear.predict_proba(self.standardise(x))[:, 1]
        return p

    def risk_level(self, probability: float) -> RiskLevel:
        if probability < self.threshold:
            return "LOW"
        if probability < self.high_risk_from:
            return "MEDIUM"
        return "HIGH"

    def predict(self, x: np.ndarray) -> list[Prediction]:
        z = self.standardise(x)
        proba = self._linear.predict_proba(z)[:, 1]
        contributions = z * self._linear.coef_[0]
        outside = (x < self._train_min) | (x > self._train_max)
        k = min(self.top_features, x.shape[1])
        top = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :k]
        predictions = []
        for row, p in enumerate(proba.tolist()):
            predictions.append(
                Prediction(
                    label="malignant" if p >= self.threshold else "benign",
                    probability_malignant=p,
                    threshold=self.threshold,
                    risk_level=self.risk_level(p),
                    top_features=[
                        Contribution(
                            name=FEATURE_NAMES[i],
                            value=float(x[row, i]),
                            contribution=float(contributions[row, i]),
                        )
                        for i in top[row]
                    ],
                    out_of_range_features=[
                        FEATURE_NAMES[i] for i in np.flatnonzero(outside[row]).tolist()
                    ],
                )
            )
        return predictions


def _linear_parts(estimator: object) -> tuple[StandardScaler, LogisticRegression]:
    if (
        isinstance(estimator, Pipeline)
        and len(estimator.steps) == 2
        and isinstance(estimator.steps[0][1], StandardScaler)
        and isinstance(estimator.steps[1][1], LogisticRegression)
    ):
        return estimator.steps[0][1], estimator.steps[1][1]
    raise ModelLoadError(
        f"no exact explainer for {type(estimator).__name__}: inferlog serves a "
        "StandardScaler + LogisticRegression pipeline"
    )
