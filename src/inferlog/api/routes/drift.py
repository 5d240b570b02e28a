"""`GET /drift`: the inputs of the live window (or a time range) against the training data."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request

from inferlog.api.dependencies import PredictorDep, SettingsDep, as_utc
from inferlog.api.routes.logs import redis_errors
from inferlog.features import matrix_of
from inferlog.ml.drift import drift_report

router = APIRouter(tags=["drift"])


def cases_of(record: dict[str, Any]) -> list[tuple[dict[str, float], float]]:
    """(input, probability of malignancy) for each case a successful prediction record holds."""
    ml = record.get("ml")
    if not ml or record["http"]["response"]["status_code"] >= 400:
        return []
    inputs = ml["input"] if isinstance(ml["input"], list) else [ml["input"]]
    if "prediction" in ml:
        outcomes = ml["prediction"] if isinstance(ml["prediction"], list) else [ml["prediction"]]
        probabilities = [o["probability"] for o in outcomes]
    else:
        probabilities = [ml["probabilities"]["malignant"]]
    return list(zip(inputs, probabilities, strict=True))


@router.get("/drift", summary="Per-feature drift of live inputs against the training data")
async def drift(
    request: Request,
    predictor: PredictorDep,
    settings: SettingsDep,
    since: Annotated[dt.datetime | None, Query(description="ISO 8601, UTC if naive")] = None,
    until: Annotated[dt.datetime | None, Query(description="ISO 8601, UTC if naive")] = None,
    histograms: Annotated[bool, Query(description="include per-feature histograms")] = True,
) -> dict[str, Any]:
    since, until = as_utc(since), as_utc(until)

    def keep(record: dict[str, Any]) -> bool:
        if until is None:
            return True
        return dt.datetime.fromisoformat(record["@timestamp"]) <= until

    with redis_errors():
        records = await request.app.state.live_log.recent(
            settings.stats_max_records, since, keep=keep
        )
    pairs = [pair for record in records for pair in cases_of(record)]
    inputs = matrix_of(case for case, _ in pairs)
    probabilities = np.array([p for _, p in pairs])
    report = drift_report(
        predictor.reference, inputs, probabilities, settings.drift_min_cases, histograms
    )
    return {"model_version": predictor.version, "records_read": len(records), **report}
