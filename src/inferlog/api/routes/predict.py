"""Prediction endpoints: one case, its probabilities, and vectorised batches (JSON or CSV)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, TypeVar

import numpy as np
import pydantic_core
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from inferlog.api import csv_codec
from inferlog.api.dependencies import PredictorDep, SettingsDep
from inferlog.api.errors import LISTED_ERRORS, InputError, error_responses, field_errors
from inferlog.api.schemas import (
    EXAMPLE_CASE,
    BatchResponse,
    Case,
    CasePrediction,
    FieldError,
    PredictionResponse,
    ProbabilitiesResponse,
    TopFeature,
)
from inferlog.api.security import ClientKey
from inferlog.features import FEATURE_NAMES, matrix_of
from inferlog.ml.predictor import Prediction, Predictor
from inferlog.telemetry.drafts import InferenceDraft
from inferlog.telemetry.middleware import elapsed_ms, record_inference, transaction_id
from inferlog.telemetry.profiler import InferenceProfiler

router = APIRouter(
    tags=["predictions"], dependencies=[ClientKey], responses=error_responses(401, 403, 413, 422)
)
# One case is under 1 KB of JSON (2 KB indented). A larger body for /predict or
# /predict_proba gets 413 before it is parsed: 4 MB of unknown keys cost 5.7 s of validation
# errors (bench/request_costs.py).
CASE_BODY_BYTES = 16_384
T = TypeVar("T")


def as_matrix(cases: list[BaseModel]) -> np.ndarray:
    return matrix_of(case.__dict__ for case in cases)


def prediction_fields(p: Prediction) -> dict[str, Any]:
    return {
        **p.verdict("probability_malignant"),
        "top_features": [
            TopFeature(name=c.name, value=c.value, contribution=c.contribution)
            for c in p.top_features
        ],
    }


def run_model(
    request: Request,
    predictor: Predictor,
    model_call: Callable[[np.ndarray], T],
    x: np.ndarray,
    batch: bool,
) -> tuple[T, InferenceDraft]:
    """The model call, under the profiler; the inference is noted for the request record."""
    profiler: InferenceProfiler = request.app.state.profiler
    result, capture = profiler.run(model_call, x)
    inference = InferenceDraft(
        model_name=predictor.name,
        model_version=predictor.version,
        inputs=x,
        batch=batch,
        capture=capture,
    )
    record_inference(request.scope, inference)
    return result, inference


def predict_cases(
    request: Request, predictor: Predictor, x: np.ndarray, batch: bool
) -> list[Prediction]:
    predictions, inference = run_model(request, predictor, predictor.predict, x, batch)
    inference.predictions = predictions
    return predictions


@router.post("/predict", response_model=PredictionResponse)
async def predict(case: Case, request: Request, predictor: PredictorDep) -> PredictionResponse:
    """Classify one case: label, probability of malignancy, risk level and why."""
    prediction = predict_cases(request, predictor, as_matrix([case]), batch=False)[0]
    return PredictionResponse(
        **prediction_fields(prediction),
        transaction_id=transaction_id(request.scope),
        model_version=predictor.version,
        latency_ms=elapsed_ms(request.scope),
    )


@router.post("/predict_proba", response_model=ProbabilitiesResponse)
async def predict_proba(
    case: Case,
    request: Request,
    predictor: PredictorDep,
) -> ProbabilitiesResponse:
    """The probabilities of both classes for one case."""
    x = as_matrix([case])
    probabilities, inference = run_model(request, predictor, predictor.probabilities, x, False)
    p = inference.probability_malignant = float(probabilities[0])
    return ProbabilitiesResponse(
        transaction_id=transaction_id(request.scope),
        model_version=predictor.version,
        probabilities={"malignant": p, "benign": 1.0 - p},
    )


_CSV_EXAMPLE = ",".join(FEATURE_NAMES) + "\n" + ",".join(str(v) for v in EXAMPLE_CASE.values())

# Both bodies carry a list of cases; the CSV one as a header row of the feature names, then
# a row per case. The largest list, MAX_BATCH_SIZE, is set per server (openapi_document.py).
_CASES = {"type": "array", "items": {"$ref": "#/components/schemas/Case"}, "minItems": 1}
BATCH_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": dict(_CASES), "example": [EXAMPLE_CASE]},
            "text/csv": {"schema": dict(_CASES), "example": _CSV_EXAMPLE},
        },
    }
}


@cache
def batch_adapter(max_cases: int) -> TypeAdapter[list[Any]]:
    return TypeAdapter(Annotated[list[Case], Field(min_length=1, max_length=max_cases)])


def validated_batch(body: bytes, max_cases: int) -> list[Any]:
    """The cases of a JSON batch body, or an InputError. The size is checked before any case
    is validated: 2 MB of empty objects would otherwise be 660,000 validations."""
    try:
        data = pydantic_core.from_json(body)
    except ValueError as exc:
        raise InputError([FieldError(field="body", reason=f"invalid JSON: {exc}")]) from exc
    if isinstance(data, list) and len(data) > max_cases:
        reason = f"{len(data)} cases; at most {max_cases} per batch"
        raise InputError([FieldError(field="body", reason=reason)])
    try:
        return batch_adapter(max_cases).validate_python(data)
    except ValidationError as exc:
        raise InputError(first_batch_errors(exc, data), exc.error_count()) from exc


def first_batch_errors(exc: ValidationError, data: Any) -> list[FieldError]:
    """The first LISTED_ERRORS problems of a refused batch. Converting every error of 1000
    wrong cases (30,000) took longer than the whole request may: past the listed number,
    the cases are validated again one by one, only until that many are found."""
    if exc.error_count() <= LISTED_ERRORS:
        return field_errors(exc.errors(include_url=False))
    found: list[FieldError] = []
    for index, item in enumerate(data):  # a list: it got that far
        try:
            Case.model_validate(item)
        except ValidationError as case_exc:
            found += field_errors(case_exc.errors(include_url=False), index=index)
            if len(found) >= LISTED_ERRORS:
                break
    return found[:LISTED_ERRORS]


@router.post(
    "/predict/batch",
    response_model=BatchResponse,
    openapi_extra=BATCH_OPENAPI,
    responses={
        200: {"content": {"text/csv": {"example": _CSV_EXAMPLE + ",malignant,0.99,..."}}},
        **error_responses(415),
    },
)
async def predict_batch(
    request: Request, predictor: PredictorDep, settings: SettingsDep
) -> BatchResponse | Response:
    """Classify up to `MAX_BATCH_SIZE` cases with one model call.

    Send a JSON list of cases, or a CSV body (`Content-Type: text/csv`, header row = feature
    names) to get CSV back with the prediction columns appended.
    """
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    body = await request.body()
    if content_type == "text/csv":
        parsed = csv_codec.parse_cases(body, settings.max_batch_size)
        predictions = predict_cases(request, predictor, parsed.matrix, batch=True)
        return Response(
            csv_codec.write_results(parsed, predictions),
            media_type="text/csv",
            headers={"X-Model-Version": predictor.version},
        )
    if content_type not in ("application/json", ""):
        raise HTTPException(415, f"unsupported Content-Type {content_type!r}: use JSON or text/csv")
    cases = validated_batch(body, settings.max_batch_size)
    predictions = predict_cases(request, predictor, as_matrix(cases), batch=True)
    return BatchResponse(
        transaction_id=transaction_id(request.scope),
        model_version=predictor.version,
        count=len(predictions),
        predictions=[CasePrediction(**prediction_fields(p)) for p in predictions],
        latency_ms=elapsed_ms(request.scope),
    )
