from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inferlog.ml.artifacts import ARTIFACT_FILE, CARD_FILE, ModelLoadError, load_artifacts


@pytest.fixture
def model_copy(model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    return target


def test_a_tampered_artifact_refuses_to_load(model_copy: Path) -> None:
    artifact = model_copy / ARTIFACT_FILE
    artifact.write_bytes(artifact.read_bytes() + b"\x00")
    with pytest.raises(ModelLoadError, match=r"refusing to load .* sha256"):
        load_artifacts(model_copy)


def test_a_replaced_artifact_is_never_unpickled(model_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    # Unpickling this would call open(marker, "w") and create the file.
    payload = f"cbuiltins\nopen\n(S'{marker}'\nS'w'\ntR.".encode()
    (model_copy / ARTIFACT_FILE).write_bytes(payload)
    with pytest.raises(ModelLoadError, match="changed or replaced"):
        load_artifacts(model_copy)
    assert not marker.exists()


def test_a_missing_model_says_how_to_train(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="make model"):
        load_artifacts(tmp_path)


def test_a_missing_artifact_is_named(model_copy: Path) -> None:
    (model_copy / ARTIFACT_FILE).unlink()
    with pytest.raises(ModelLoadError, match=r"missing although model_card\.json describes it"):
        load_artifacts(model_copy)


def test_the_untouched_model_loads_with_its_card_version(model_copy: Path) -> None:
    loaded = load_artifacts(model_copy)
    assert loaded.version == loaded.card["version"]
    assert (model_copy / CARD_FILE).exists()
