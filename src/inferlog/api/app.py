"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from inferlog import __version__
from inferlog.api.body_limit import BodyLimitMiddleware
from inferlog.api.errors import install_error_handlers
from inferlog.api.routes import examples, meta, predict
from inferlog.config import Settings, get_settings
from inferlog.ml.artifacts import load_artifacts
from inferlog.ml.predictor import Predictor
from inferlog.telemetry.transaction import TransactionMiddleware

log = logging.getLogger(__name__)

DESCRIPTION = """
Classifies breast-cancer cell-nucleus measurements (the Wisconsin diagnostic data bundled with
scikit-learn) as malignant or benign, with the probability, a risk level and the features that
drove the answer. A demonstration of an observable inference service, **not a medical device**.

Every error answers with the same JSON shape; a 422 names each bad field and the reason.
"""


def load_predictor(settings: Settings) -> Predictor:
    artifacts = load_artifacts(settings.model_dir)
    predictor = Predictor(artifacts, top_features=settings.top_features)
    log.info("loaded model %s version %s", predictor.name, predictor.version)
    return predictor


def create_app(settings: Settings | None = None, predictor: Predictor | None = None) -> FastAPI:
    """Build the app. Without a `predictor`, the model is loaded from `MODEL_DIR` at startup;
    a missing or tampered artifact stops the startup with a clear error."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.predictor is None:
            app.state.predictor = load_predictor(settings)
        yield

    app = FastAPI(
        title="inferlog",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.predictor = predictor
    install_error_handlers(app)
    app.include_router(meta.router)
    app.include_router(predict.router)
    app.include_router(examples.router)
    # Added last = outermost: every response, 413s included, carries the transaction id.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(TransactionMiddleware)
    return app
