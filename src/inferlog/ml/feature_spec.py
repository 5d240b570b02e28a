"""Writes `inferlog/feature_spec.json` from the data set: names in scikit-learn's column
order, labels and units from `features.MEASUREMENTS`, bounds, training-split medians.

    python -m inferlog.ml.feature_spec      # after a change to the data set or the rules

The spec is read at import by every process; computing it needs scikit-learn's data, which
the UI does not carry. tests/unit/test_features.py checks that the file is what this writes.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from inferlog.features import (
    GROUP_DESCRIPTIONS,
    GROUP_LABELS,
    GROUPS,
    MEASUREMENTS,
    SPEC_FILE,
    FeatureSpec,
    Group,
)
from inferlog.ml import dataset

UPPER_BOUND_FACTOR = 3.0


def round_up_2sig(value: float) -> float:
    exponent = math.floor(math.log10(value)) - 1
    step = 10.0**exponent
    return round(math.ceil(value / step) * step, max(0, -exponent))


def build_spec() -> tuple[FeatureSpec, ...]:
    data = dataset.load()
    train = dataset.split().x_train
    by_key = {m.key: m for m in MEASUREMENTS}
    groups: dict[str, Group] = {g: g for g in GROUPS}
    specs = []
    for column, name in enumerate(data.feature_names):
        key, _, suffix = name.rpartition("_")
        measurement, group = by_key[key], groups[suffix]
        specs.append(
            FeatureSpec(
                name=name,
                label=f"{measurement.label} ({GROUP_LABELS[group]})",
                unit=measurement.unit,
                group=group,
                description=f"{measurement.description}; {GROUP_DESCRIPTIONS[group]}",
                lower=0.0,
                upper=round_up_2sig(UPPER_BOUND_FACTOR * float(data.x[:, column].max())),
                default=float(np.median(train[:, column])),
            )
        )
    return tuple(specs)


def spec_json(specs: tuple[FeatureSpec, ...]) -> str:
    return json.dumps([asdict(s) for s in specs], indent=2, ensure_ascii=False) + "\n"


def write_spec(path: Path = SPEC_FILE) -> None:
    path.write_text(spec_json(build_spec()))


if __name__ == "__main__":
    write_spec()
