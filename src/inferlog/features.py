"""The feature spec: the single source of truth for the 30 input measurements.

API schemas, the UI form, the CSV columns and the Elasticsearch mapping all derive from
`FEATURES`, read from `feature_spec.json` (written from the data set by
`python -m inferlog.ml.feature_spec`; a test checks that it still matches). The ten
measurements of a cell nucleus are described once below; each is reported three times (mean,
standard error and worst = mean of the three largest values over the nuclei in the image),
which gives the 30 features in scikit-learn's column order.

Bounds: a value below `lower` (negative sizes) or above `upper` is impossible and refused.
`upper` is 3x the largest value in the whole data set, rounded up to two significant digits:
generous enough for real cases outside the training range, which are accepted and flagged.
Defaults are training-split medians.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

Group = Literal["mean", "se", "worst"]

GROUPS: tuple[Group, ...] = ("mean", "se", "worst")
GROUP_LABELS: dict[Group, str] = {"mean": "mean", "se": "standard error", "worst": "worst"}
GROUP_DESCRIPTIONS: dict[Group, str] = {
    "mean": "mean over the nuclei in the image",
    "se": "standard error over the nuclei in the image",
    "worst": "mean of the three largest values in the image",
}


@dataclass(frozen=True)
class Measurement:
    key: str
    label: str
    unit: str
    description: str


# Units: the measurements come from digitised microscope images; lengths are in image units
# (the data set does not state a physical scale).
MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement("radius", "Radius", "image units", "mean distance from centre to perimeter"),
    Measurement("texture", "Texture", "grey levels", "standard deviation of grey-scale values"),
    Measurement("perimeter", "Perimeter", "image units", "length of the nucleus contour"),
    Measurement("area", "Area", "image units²", "area inside the contour"),
    Measurement("smoothness", "Smoothness", "ratio", "local variation in radius lengths"),
    Measurement("compactness", "Compactness", "ratio", "perimeter² / area - 1"),
    Measurement("concavity", "Concavity", "ratio", "severity of concave portions of the contour"),
    Measurement(
        "concave_points", "Concave points", "ratio", "number of concave portions of the contour"
    ),
    Measurement("symmetry", "Symmetry", "ratio", "symmetry of the nucleus"),
    Measurement(
        "fractal_dimension",
        "Fractal dimension",
        "ratio",
        "coastline approximation - 1",
    ),
)


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    label: str
    unit: str
    group: Group
    description: str
    lower: float
    upper: float
    default: float


SPEC_FILE = Path(__file__).with_name("feature_spec.json")


def load_spec(path: Path = SPEC_FILE) -> tuple[FeatureSpec, ...]:
    """The spec as written from the data set (`python -m inferlog.ml.feature_spec`): read, not
    computed, so that processes without scikit-learn (the UI) share it."""
    return tuple(FeatureSpec(**entry) for entry in json.loads(path.read_text()))


FEATURES: tuple[FeatureSpec, ...] = load_spec()
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURES_BY_NAME: dict[str, FeatureSpec] = {f.name: f for f in FEATURES}


_IN_SPEC_ORDER = operator.itemgetter(*FEATURE_NAMES)


def matrix_of(cases: Iterable[Mapping[str, float]]) -> np.ndarray:
    """Cases (feature name -> value) as an (n, 30) matrix in spec order; (0, 30) for none."""
    # itemgetter: one C call per case rather than 30 lookups (a /drift over a full window has
    # 200,000 cases: 0.7 s instead of 1.0 s).
    rows = [_IN_SPEC_ORDER(case) for case in cases]
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))
