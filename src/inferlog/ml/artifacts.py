"""The files of `model/`, and loading them safely.

The artifact is a pickle: unpickling runs code, so its sha256 is checked against the model card
before `joblib.load` ever sees it. A missing file or a mismatch is a `ModelLoadError` with a
message that says what to do.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib

ARTIFACT_FILE = "model.joblib"
CARD_FILE = "model_card.json"
REFERENCE_FILE = "reference_stats.json"


class ModelLoadError(RuntimeError):
    """The model directory cannot be served as it is."""


@dataclass(frozen=True)
class ModelArtifacts:
    estimator: Any
    card: dict[str, Any]
    reference: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.card["name"])

    @property
    def version(self) -> str:
        return str(self.card["version"])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelLoadError(
            f"{path} is missing: train the model first (`make model` or `python -m inferlog train`)"
        ) from exc
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path} is not valid JSON ({exc}): retrain the model") from exc
    return data


def load_artifacts(model_dir: Path) -> ModelArtifacts:
    card = _read_json(model_dir / CARD_FILE)
    reference = _read_json(model_dir / REFERENCE_FILE)
    artifact_path = model_dir / card["artifact"]["file"]
    try:
        payload = artifact_path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelLoadError(
            f"{artifact_path} is missing although {CARD_FILE} describes it: retrain the model"
        ) from exc
    actual = hashlib.sha256(payload).hexdigest()
    expected = card["artifact"]["sha256"]
    if actual != expected:
        raise ModelLoadError(
            f"refusing to load {artifact_path}: its sha256 is {actual[:12]}…, the model card "
            f"expects {expected[:12]}… (version {card.get('version')}). The artifact was changed "
            "or replaced after training; retrain the model or restore the original file."
        )
    # The checked bytes themselves: reading the file again could load another one.
    estimator = joblib.load(io.BytesIO(payload))
    return ModelArtifacts(estimator=estimator, card=card, reference=reference)
