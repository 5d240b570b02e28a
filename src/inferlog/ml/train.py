"""Deterministic training: compare candidates, choose a threshold, write `model/`.

Steps, all on the fixed stratified split of `dataset`:
1. Candidates (scaled logistic regression, histogram gradient boosting) are compared by 5-fold
   cross-validated ROC AUC on the training split and by single-row `predict_proba` latency.
   Among the candidates whose mean AUC is within one standard deviation of the best, the simplest
   wins: the AUCs are statistically indistinguishable, and a simpler model is faster to serve
   and easier to explain.
2. The decision threshold is chosen on out-of-fold probabilities of the training split: the
   highest threshold whose out-of-fold malignant recall reaches `TARGET_RECALL`, because a missed
   malignancy costs more than a false alarm.
3. The chosen model is refitted on the whole training split and evaluated once on the held-out
   split it never saw.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import StratifiedKFold, cross_val_predict, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from inferlog.ml import dataset
from inferlog.ml.artifacts import ARTIFACT_FILE, CARD_FILE, REFERENCE_FILE

log = logging.getLogger(__name__)

MODEL_NAME = "breast-cancer-malignancy"
TARGET_RECALL = 0.98
HIGH_RISK_PRECISION = 0.99
CV_FOLDS = 5
LATENCY_CALLS = 300
REFERENCE_QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)


def _logistic_regression() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))


def _gradient_boosting() -> BaseEstimator:
    return HistGradientBoostingClassifier(random_state=dataset.SEED)


CANDIDATES: dict[str, Callable[[], BaseEstimator]] = {
    "logistic_regression": _logistic_regression,
    "hist_gradient_boosting": _gradient_boosting,
}


@dataclass(frozen=True)
class CandidateResult:
    name: str
    cv_roc_auc_mean: float
    cv_roc_auc_std: float
    single_row_latency_ms_p50: float


def _cv() -> StratifiedKFold:
    return StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=dataset.SEED)


def single_row_latency_ms(model: Any, rows: np.ndarray, calls: int = LATENCY_CALLS) -> float:
    """Median wall time of `predict_proba` on one numpy row, as the API calls it."""
    timings = []
    for i in range(calls):
        row = rows[i % len(rows)].reshape(1, -1)
        start = time.perf_counter()
        model.predict_proba(row)
        timings.append(time.perf_counter() - start)
    return float(np.median(timings) * 1000)


def compare_candidates(x: np.ndarray, y: np.ndarray) -> list[CandidateResult]:
    results = []
    for name, factory in CANDIDATES.items():
        log.info("cross-validating %s (%d folds)", name, CV_FOLDS)
        scores = cross_val_score(factory(), x, y, cv=_cv(), scoring="roc_auc")
        fitted = factory().fit(x, y)
        results.append(
            CandidateResult(
                name=name,
                cv_roc_auc_mean=float(scores.mean()),
                cv_roc_auc_std=float(scores.std()),
                single_row_latency_ms_p50=single_row_latency_ms(fitted, x),
            )
        )
    return results


def choose_candidate(results: list[CandidateResult]) -> tuple[CandidateResult, str]:
    """The simplest candidate whose AUC is within one standard deviation of the best.

    `CANDIDATES` is ordered simplest first. Latency is recorded and reported but does not decide:
    on a shared machine it is noisy, and the choice (hence the artifact) must be deterministic.
    """
    best = max(results, key=lambda r: r.cv_roc_auc_mean)
    floor = best.cv_roc_auc_mean - best.cv_roc_auc_std
    chosen = next(r for r in results if r.cv_roc_auc_mean >= floor)
    reason = (
        f"{chosen.name}: the simplest candidate whose cross-validated ROC AUC "
        f"({chosen.cv_roc_auc_mean:.4f}) is within one standard deviation of the best "
        f"({best.name}, {best.cv_roc_auc_mean:.4f} ± {best.cv_roc_auc_std:.4f})"
    )
    others = [r for r in results if r is not chosen]
    if others:
        fastest_other = min(others, key=lambda r: r.single_row_latency_ms_p50)
        speedup = fastest_other.single_row_latency_ms_p50 / chosen.single_row_latency_ms_p50
        reason += f"; {speedup:.1f}x the single-row speed of {fastest_other.name}"
    if chosen.name == "logistic_regression":
        reason += "; a linear model gives exact per-feature explanations"
    return chosen, reason


def choose_threshold(y: np.ndarray, oof: np.ndarray, target_recall: float) -> float:
    """Highest threshold t such that recall of `oof >= t` on the positive class >= target."""
    positives = np.sort(oof[y == 1])
    # Keeping the k highest-scored positives gives recall k/n; t = the k-th highest score.
    needed = int(np.ceil(target_recall * len(positives)))
    return float(positives[len(positives) - needed])


def choose_high_risk_cut(y: np.ndarray, oof: np.ndarray, threshold: float) -> float:
    """Lowest cut above the threshold from which every higher cut keeps precision >= target."""
    # One pass over the sorted scores gives the precision at every cut.
    precision, _, cuts = precision_recall_curve(y, oof)
    above = cuts >= threshold
    candidates, precisions = cuts[above], precision[:-1][above]
    if not len(candidates):
        return threshold
    failing = np.flatnonzero(precisions < HIGH_RISK_PRECISION)
    if not len(failing):
        return float(candidates[0])
    # The cut just above the highest one that fails (the highest cut, if it fails itself).
    return float(candidates[min(failing[-1] + 1, len(candidates) - 1)])


def held_out_metrics(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, Any]:
    predicted = (proba >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, predicted, labels=[0, 1]).ravel()
    return {
        "n_cases": len(y),
        "roc_auc": float(roc_auc_score(y, proba)),
        "accuracy": float(accuracy_score(y, predicted)),
        "recall_malignant": float(recall_score(y, predicted)),
        "precision_malignant": float(precision_score(y, predicted)),
        "confusion_matrix": {
            "labels": ["benign", "malignant"],
            "rows": "true label",
            "columns": "predicted label",
            "matrix": [[int(tn), int(fp)], [int(fn), int(tp)]],
            "true_positives": int(tp),
            "false_negatives": int(fn),
            "false_positives": int(fp),
            "true_negatives": int(tn),
        },
    }


def reference_statistics(
    x: np.ndarray, feature_names: tuple[str, ...], proba: np.ndarray
) -> dict[str, Any]:
    def describe(values: np.ndarray) -> dict[str, Any]:
        return {
            "count": len(values),
            # The values themselves: two-sample drift tests compare live inputs with them.
            "sample": values.tolist(),
            "min": float(values.min()),
            "max": float(values.max()),
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)),
            "quantiles": dict(
                zip(
                    map(str, REFERENCE_QUANTILES),
                    np.quantile(values, REFERENCE_QUANTILES).tolist(),
                    strict=True,
                )
            ),
        }

    return {
        "source": "training split",
        "features": {name: describe(x[:, i]) for i, name in enumerate(feature_names)},
        "probability_malignant": describe(proba),
    }


def _serialise(model: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def train(model_dir: Path, target_recall: float = TARGET_RECALL) -> dict[str, Any]:
    """Train, evaluate and write the artifact, the model card and the reference statistics."""
    data = dataset.load()
    split = dataset.split()
    results = compare_candidates(split.x_train, split.y_train)
    chosen, reason = choose_candidate(results)
    factory = CANDIDATES[chosen.name]

    log.info("choosing the threshold on out-of-fold predictions of %s", chosen.name)
    oof = cross_val_predict(
        factory(), split.x_train, split.y_train, cv=_cv(), method="predict_proba"
    )[:, 1]
    threshold = choose_threshold(split.y_train, oof, target_recall)
    high_cut = choose_high_risk_cut(split.y_train, oof, threshold)

    log.info("fitting %s on the training split", chosen.name)
    model = clone(factory()).fit(split.x_train, split.y_train)
    artifact = _serialise(model)
    sha256 = hashlib.sha256(artifact).hexdigest()
    held_out = held_out_metrics(split.y_test, model.predict_proba(split.x_test)[:, 1], threshold)

    card = {
        "name": MODEL_NAME,
        "version": sha256[:12],
        "algorithm": chosen.name,
        "positive_class": "malignant",
        "feature_names": list(data.feature_names),
        "artifact": {"file": ARTIFACT_FILE, "sha256": sha256, "bytes": len(artifact)},
        "training": {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "scikit_learn_version": sklearn.__version__,
            "python_version": platform.python_version(),
            "seed": dataset.SEED,
        },
        "data": {
            "source": dataset.SOURCE,
            "sha256": data.sha256,
            "n_cases": len(data.y),
            "n_malignant": int(data.y.sum()),
            "split": {
                "method": "stratified hold-out",
                "test_size": dataset.TEST_SIZE,
                "seed": dataset.SEED,
                "n_train": len(split.y_train),
                "n_test": len(split.y_test),
            },
        },
        "selection": {
            "candidates": [r.__dict__ for r in results],
            "chosen": chosen.name,
            "reason": reason,
        },
        "threshold": {
            "value": threshold,
            "method": (
                f"highest threshold whose out-of-fold ({CV_FOLDS}-fold) malignant recall on the "
                f"training split is at least {target_recall}"
            ),
            "target_recall": target_recall,
            "out_of_fold_recall": float(recall_score(split.y_train, oof >= threshold)),
            "out_of_fold_precision": float(precision_score(split.y_train, oof >= threshold)),
        },
        "risk_bands": {
            "LOW": {"from": 0.0, "to": threshold, "meaning": "below the decision threshold"},
            "MEDIUM": {
                "from": threshold,
                "to": high_cut,
                "meaning": "malignant at the threshold; needs review",
            },
            "HIGH": {
                "from": high_cut,
                "to": 1.0,
                "meaning": (
                    f"out-of-fold precision at least {HIGH_RISK_PRECISION} from this probability"
                ),
            },
        },
        "metrics_held_out": held_out,
    }
    reference = reference_statistics(split.x_train, data.feature_names, oof)

    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / ARTIFACT_FILE).write_bytes(artifact)
    (model_dir / REFERENCE_FILE).write_text(json.dumps(reference, indent=2) + "\n")
    # The card goes last: a directory with a card always has the artifact it describes.
    (model_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    log.info(
        "wrote %s version %s: held-out ROC AUC %.4f, malignant recall %.3f at threshold %.3f",
        MODEL_NAME,
        card["version"],
        held_out["roc_auc"],
        held_out["recall_malignant"],
        threshold,
    )
    return card
