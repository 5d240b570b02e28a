"""The feature spec: the single source of truth for the 30 input measurements.

API schemas, the UI form, the CSV columns and the Elasticsearch mapping all derive from
`FEATURES`. The ten measurements of a cell nucleus are described once below; each is reported
three times (mean, standard error and worst = mean of the three largest values over the
nuclei in the image), which gives the 30 features in scikit-learn's column order.

Bounds: a value below `lower` (negative sizes) or above `upper` is impossible and refused.
`upper` is 3x the largest value in the whole data set, rounded up to two significant digits:
generous enough for real cases outside the training range, which are accepted and flagged.
Defaults are training-split medians.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from inferlog.ml import dataset

Group = Literal["mean", "se", "worst"]

GROUPS: tuple[Group, ...] = ("mean", "se", "worst")
GROUP_LABELS: dict[Group, str] = {"mean": "mean", "se": "standard error", "worst": "worst"}
GROUP_DESCRIPTIONS: dict[Group, str] = {
    "mean": "mean over the nuclei in the image",
    "se": "standard error over the nuclei in the image",
    "worst": "mean of the three largest values in the image",
}
_GROUP_BY_SUFFIX: dict[str, Group] = {g: g for g in GROUPS}


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

UPPER_BOUND_FACTOR = 3.0


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


def _round_up_2sig(value: float) -> float:
    exponent = math.floor(math.log10(value)) - 1
    step = 10.0**exponent
    return round(math.ceil(value / step) * step, max(0, -exponent))


def _build() -> tuple[FeatureSpec, ...]:
    data = dataset.load()
    train = dataset.split().x_train
    by_key = {m.key: m for m in MEASUREMENTS}
    specs = []
    for column, name in enumerate(data.feature_names):
        key, _, suffix = name.rpartition("_")
        measurement, group = by_key[key], _GROUP_BY_SUFFIX[suffix]
        specs.append(
            FeatureSpec(
                name=name,
                label=f"{measurement.label} ({GROUP_LABELS[group]})",
                unit=measurement.unit,
                group=group,
                description=f"{measurement.description}; {GROUP_DESCRIPTIONS[group]}",
                lower=0.0,
                upper=_round_up_2sig(UPPER_BOUND_FACTOR * float(data.x[:, column].max())),
                default=float(np.median(train[:, column])),
            )
        )
    return tuple(specs)


FEATURES: tuple[FeatureSpec, ...] = _build()
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURES_BY_NAME: dict[str, FeatureSpec] = {f.name: f for f in FEATURES}


_IN_SPEC_ORDER = operator.itemgetter(*FEATURE_NAMES)


def matrix_of(cases: Iterable[Mapping[str, float]]) -> np.ndarray:
    """Cases (feature name -> value) as an (n, 30) matrix in spec order; (0, 30) for none."""
    # itemgetter: one C call per case rather than 30 lookups (a /drift over a full window has
    # 200,000 cases: 0.7 s instead of 1.0 s).
    rows = [_IN_SPEC_ORDER(case) for case in cases]
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))


def defaults() -> dict[str, float]:
    return {f.name: f.default for f in FEATURES}
