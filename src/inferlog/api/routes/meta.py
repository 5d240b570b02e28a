"""Service description, liveness, readiness and the model card."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from inferlog import __version__
from inferlog.api.dependencies import PredictorDep, SettingsDep
from inferlog.features import FEATURES

router = APIRouter(tags=["service"])


@router.get("/", summary="Service name, versions and links")
async def root(request: Request, settings: SettingsDep) -> dict[str, Any]:
    predictor = request.app.state.predictor
    return {
        "service": settings.service_name,
        "version": __version__,
        "model_version": predictor.version if predictor else None,
        "links": {
            "docs": "/docs",
            "openapi": "/openapi.json",
            "health": "/health",
            "ready": "/ready",
            "model_info": "/model-info",
            "predict": "/predict",
            "predict_proba": "/predict_proba",
            "predict_batch": "/predict/batch",
            "examples": "/examples",
        },
    }


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness: the model is loaded; `degraded` when telemetry has a problem",
    responses={503: {"description": "not ready"}},
)
async def ready(request: Request) -> JSONResponse:
    """200 once the model is loaded. Predictions do not depend on telemetry, so a telemetry
    problem (Redis unreachable, spool not writable, a failing shipper) answers 200 with
    `status: degraded` and the problem: a load balancer keeps sending traffic, a person or a
    monitor sees what is wrong."""
    predictor = request.app.state.predictor
    if predictor is None:
        return JSONResponse({"status": "not ready", "reason": "model not loaded"}, 503)
    body: dict[str, Any] = {"status": "ready", "model_version": predictor.version}
    shipper = request.app.state.shipper
    if shipper is not None:
        problem = shipper.counters().problem
        body["telemetry"] = {"healthy": problem is None, "problem": problem}
        if problem is not None:
            body["status"] = "degraded"
    return JSONResponse(body)


@router.get("/model-info", summary="The model card and the feature schema")
async def model_info(predictor: PredictorDep) -> dict[str, Any]:
    stats = predictor.reference["features"]
    features = [
        {
            **asdict(f),
            "training_min": stats[f.name]["min"],
            "training_max": stats[f.name]["max"],
            "training_std": stats[f.name]["std"],
        }
        for f in FEATURES
    ]
    return {"model_card": predictor.card, "features": features}
