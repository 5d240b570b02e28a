"""The Wisconsin diagnostic breast-cancer data bundled with scikit-learn, and its fixed split.

The data ships inside scikit-learn (a CSV in the package): nothing is ever downloaded.
Positive class = malignant, which is target 0 in scikit-learn's encoding: `y` here is 1 for
malignant so that `predict_proba(x)[:, 1]` is the probability of malignancy.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

SEED = 42
TEST_SIZE = 0.2
SOURCE = "sklearn.datasets.load_breast_cancer (Wisconsin diagnostic breast cancer, UCI)"
GROUP_SUFFIXES = {"mean": "mean", "error": "se", "worst": "worst"}


def machine_name(sklearn_name: str) -> str:
    """`mean radius` -> `radius_mean`, `radius error` -> `radius_se`, `worst area` -> ..."""
    words = sklearn_name.split()
    if words[0] in ("mean", "worst"):
        group, measure = words[0], words[1:]
    else:
        group, measure = words[-1], words[:-1]
    return "_".join([*measure, GROUP_SUFFIXES[group]])


@dataclass(frozen=True)
class Dataset:
    feature_names: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray  # 1 = malignant, 0 = benign

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.x, dtype=np.float64).tobytes())
        digest.update(np.ascontiguousarray(self.y, dtype=np.int64).tobytes())
        return digest.hexdigest()


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


@cache
def load() -> Dataset:
    bunch = load_breast_cancer()
    names = tuple(machine_name(str(n)) for n in bunch.feature_names)
    y = (bunch.target == 0).astype(np.int64)
    x = bunch.data.astype(np.float64)
    x.setflags(write=False)
    y.setflags(write=False)
    return Dataset(feature_names=names, x=x, y=y)


@cache
def split() -> Split:
    """Stratified 80/20 hold-out split with a fixed seed: the same cases on every run."""
    data = load()
    x_train, x_test, y_train, y_test = train_test_split(
        data.x, data.y, test_size=TEST_SIZE, stratify=data.y, random_state=SEED
    )
    return Split(x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test)


def held_out_cases(label: str | None = None) -> list[dict[str, float]]:
    """Real held-out cases (never trained on) in split order, optionally of one label."""
    data, held_out = load(), split()
    keep = np.ones(len(held_out.y_test), dtype=bool)
    if label is not None:
        keep = held_out.y_test == (1 if label == "malignant" else 0)
    return [
        dict(zip(data.feature_names, row, strict=True)) for row in held_out.x_test[keep].tolist()
    ]


@cache
def held_out_examples() -> dict[str, dict[str, float]]:
    """One real held-out case of each label (the first in split order)."""
    return {label: held_out_cases(label)[0] for label in ("malignant", "benign")}
