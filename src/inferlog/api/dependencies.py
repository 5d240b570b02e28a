"""Shared route dependencies and helpers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from inferlog.config import Settings
from inferlog.ml.predictor import Predictor


async def get_predictor(request: Request) -> Predictor:
    predictor: Predictor | None = request.app.state.predictor
    if predictor is None:
        raise HTTPException(503, "the model is not loaded yet")
    return predictor


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


PredictorDep = Annotated[Predictor, Depends(get_predictor)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
