from __future__ import annotations

import numpy as np

from inferlog.features import FEATURE_NAMES, FEATURES, GROUPS, MEASUREMENTS, SPEC_FILE
from inferlog.ml import dataset
from inferlog.ml.feature_spec import build_spec, spec_json


def test_the_shipped_spec_file_is_what_the_data_set_gives() -> None:
    assert SPEC_FILE.read_text() == spec_json(build_spec()), (
        "feature_spec.json is stale: run python -m inferlog.ml.feature_spec"
    )


def test_spec_has_the_thirty_dataset_columns_in_dataset_order() -> None:
    assert dataset.load().feature_names == FEATURE_NAMES
    assert len(FEATURES) == 30
    assert len(set(FEATURE_NAMES)) == 30


def test_every_measurement_appears_once_per_group() -> None:
    for group in GROUPS:
        in_group = [f.name for f in FEATURES if f.group == group]
        assert in_group == [f"{m.key}_{group}" for m in MEASUREMENTS]


def test_bounds_contain_every_real_case_with_room_to_spare() -> None:
    x = dataset.load().x
    for column, spec in enumerate(FEATURES):
        assert spec.lower == 0.0
        assert x[:, column].min() >= spec.lower
        assert spec.upper >= 3 * x[:, column].max()
        assert spec.upper < 3.2 * x[:, column].max()


def test_defaults_are_training_split_medians() -> None:
    train = dataset.split().x_train
    medians = np.median(train, axis=0)
    assert [f.default for f in FEATURES] == medians.tolist()


def test_every_feature_has_a_human_label_and_unit() -> None:
    for spec in FEATURES:
        assert spec.label
        assert spec.unit
        assert spec.description
        assert spec.label != spec.name


def test_machine_names_follow_measure_then_group() -> None:
    assert dataset.machine_name("mean concave points") == "concave_points_mean"
    assert dataset.machine_name("fractal dimension error") == "fractal_dimension_se"
    assert dataset.machine_name("worst area") == "area_worst"


def test_malignant_is_the_positive_class() -> None:
    data = dataset.load()
    assert data.y.sum() == 212
    assert len(data.y) == 569
