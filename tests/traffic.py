"""Simulated traffic without a running API: the same held-out cases and training spread that
`GET /examples` and `GET /model-info` give `inferlog simulate`."""

from __future__ import annotations

from inferlog.features import FEATURES
from inferlog.ml import dataset
from inferlog.simulate import FeatureRange, Traffic


def offline_traffic(seed: int, drift: dict[str, float] | None = None) -> Traffic:
    std = dataset.split().x_train.std(axis=0, ddof=1)
    features = [
        FeatureRange(f.name, f.lower, f.upper, float(std[i])) for i, f in enumerate(FEATURES)
    ]
    return Traffic(dataset.held_out_cases(), features, seed=seed, drift=drift or {})
