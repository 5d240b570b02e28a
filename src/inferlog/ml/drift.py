"""Data drift: do today's inputs still look like the training inputs?

For each feature, against the training sample saved with the model (`reference_stats.json`):
- the two-sample Kolmogorov-Smirnov test (`scipy.stats.ks_2samp`): statistic and p-value;
- the Wasserstein distance (`scipy.stats.wasserstein_distance`) in units of the reference
  standard deviation: how far the distribution moved, comparable across features.

A feature counts as drifted when both say so: the KS p-value is below `ALPHA` divided by the
number of features tested (Bonferroni: 30 tests at 0.05 would flag 1.5 features on identical
data), and the distance is at least `MIN_DISTANCE` reference standard deviations. The distance
guard matters: with many cases a KS test flags shifts too small to matter, and traffic drawn
from a small pool (the 114 held-out cases) differs from the training split by up to 0.4
standard deviations on some feature by chance alone (tests/unit/test_drift.py measures it).
The predicted probability of malignancy is tested the same way against the out-of-fold
training probabilities.
Below `min_cases` current cases there is no verdict: "not enough data".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from inferlog.features import FEATURE_NAMES

ALPHA = 0.05
MIN_DISTANCE = 0.5
HISTOGRAM_BINS = 20


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    ks_statistic: float
    p_value: float
    distance_std: float
    drifted: bool
    reference_mean: float
    current_mean: float


def compare(name: str, reference: np.ndarray, current: np.ndarray, tests: int) -> FeatureDrift:
    # Asymptotic p-values: scipy's default "exact" method costs O(n*m) per feature (0.34 s for
    # 31 tests of 5000 cases against 455) and differs little at these sizes
    # (tests/unit/test_drift.py measures it).
    result = stats.ks_2samp(reference, current, method="asymp")
    spread = float(reference.std()) or 1.0
    distance = float(stats.wasserstein_distance(reference, current)) / spread
    p_value = float(result.pvalue)
    return FeatureDrift(
        name=name,
        ks_statistic=float(result.statistic),
        p_value=p_value,
        distance_std=distance,
        drifted=p_value < ALPHA / tests and distance >= MIN_DISTANCE,
        reference_mean=float(reference.mean()),
        current_mean=float(current.mean()),
    )


def histogram(reference: np.ndarray, current: np.ndarray) -> dict[str, list[float]]:
    """Shares of reference and current values per bin, on bins spanning both."""
    low = float(min(reference.min(), current.min()))
    high = float(max(reference.max(), current.max()))
    edges = np.linspace(low, high if high > low else low + 1.0, HISTOGRAM_BINS + 1)
    ref_counts, _ = np.histogram(reference, edges)
    cur_counts, _ = np.histogram(current, edges)
    return {
        "edges": edges.tolist(),
        "reference": (ref_counts / len(reference)).tolist(),
        "current": (cur_counts / len(current)).tolist(),
    }


def reference_samples(reference_stats: dict[str, Any]) -> dict[str, np.ndarray]:
    samples = {n: np.asarray(reference_stats["features"][n]["sample"]) for n in FEATURE_NAMES}
    samples["probability_malignant"] = np.asarray(
        reference_stats["probability_malignant"]["sample"]
    )
    return samples


def drift_report(
    reference_stats: dict[str, Any],
    inputs: np.ndarray,
    probabilities: np.ndarray,
    min_cases: int,
    with_histograms: bool = True,
) -> dict[str, Any]:
    """The drift of each feature and of the predicted probability; `inputs` is (n, 30)."""
    cases = len(inputs)
    report: dict[str, Any] = {
        "cases": cases,
        "min_cases": min_cases,
        "method": {
            "test": "two-sample Kolmogorov-Smirnov (scipy.stats.ks_2samp)",
            "distance": "Wasserstein distance / reference standard deviation",
            "drifted_when": (
                f"p-value < {ALPHA} / {len(FEATURE_NAMES)} (Bonferroni) "
                f"and distance >= {MIN_DISTANCE}"
            ),
            "reference": "the training split saved with the model",
        },
    }
    if cases < min_cases:
        report.update(
            enough_data=False,
            message=f"not enough data: {cases} cases, at least {min_cases} needed",
        )
        return report
    samples = reference_samples(reference_stats)
    features = []
    histograms = {}
    for column, name in enumerate(FEATURE_NAMES):
        features.append(compare(name, samples[name], inputs[:, column], len(FEATURE_NAMES)))
        if with_histograms:
            histograms[name] = histogram(samples[name], inputs[:, column])
    probability = compare(
        "probability_malignant", samples["probability_malignant"], probabilities, 1
    )
    drifted = [f.name for f in features if f.drifted]
    report.update(
        enough_data=True,
        drifted_features=drifted,
        drifted_share=len(drifted) / len(features),
        features=[asdict(f) for f in features],
        probability=asdict(probability),
    )
    if with_histograms:
        histograms["probability_malignant"] = histogram(
            samples["probability_malignant"], probabilities
        )
        report["histograms"] = histograms
    return report
