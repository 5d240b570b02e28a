"""`GET /drift`: the inputs of the live window (or a time range) against the training data.

The window is read and the tests run in the reader process (`telemetry/window_reader.py`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from inferlog.api.dependencies import PredictorDep, SettingsDep
from inferlog.api.errors import error_responses
from inferlog.api.routes.logs import json_body, redis_errors
from inferlog.api.security import ReadKey
from inferlog.moments import Moment

router = APIRouter(
    tags=["drift"], dependencies=[ReadKey], responses=error_responses(401, 403, 422, 503)
)


@router.get("/drift", summary="Per-feature drift of live inputs against the training data")
async def drift(
    request: Request,
    predictor: PredictorDep,
    settings: SettingsDep,
    since: Annotated[Moment, Query(description="ISO 8601, UTC if naive")] = None,
    until: Annotated[Moment, Query(description="ISO 8601, UTC if naive")] = None,
    histograms: Annotated[bool, Query(description="include per-feature histograms")] = True,
) -> Response:
    with redis_errors():
        body = await request.app.state.window_reader.drift(
            predictor.version,
            since,
            until,
            (settings.drift_min_cases, settings.drift_max_cases),
            histograms,
        )
    return json_body(body)
