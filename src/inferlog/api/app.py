"""The FastAPI application factory: routes, error handlers, telemetry, lifecycle."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import sklearn
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import BaseRoute, Route

from inferlog import __version__
from inferlog.api.body_limit import BodyLimitMiddleware
from inferlog.api.docs_page import swagger_ui_page
from inferlog.api.errors import install_error_handlers
from inferlog.api.openapi_document import openapi_document
from inferlog.api.routes import drift, examples, logs, meta, predict
from inferlog.config import Settings, get_settings
from inferlog.ml.artifacts import load_artifacts
from inferlog.ml.predictor import Predictor
from inferlog.telemetry.drafts import Draft, RecordShape, record_json
from inferlog.telemetry.live_log import LiveLog, connect
from inferlog.telemetry.metrics import Metrics
from inferlog.telemetry.middleware import TelemetryMiddleware
from inferlog.telemetry.profiler import InferenceProfiler
from inferlog.telemetry.shipper import Shipper
from inferlog.telemetry.spool import Spool
from inferlog.telemetry.stats import route_matcher
from inferlog.telemetry.window_reader import Window, WindowReader

log = logging.getLogger(__name__)

DESCRIPTION = """
Classifies breast-cancer cell-nucleus measurements (the Wisconsin diagnostic data bundled with
scikit-learn) as malignant or benign, with the probability, a risk level and the features that
drove the answer. A demonstration of an observable inference service, **not a medical device**.

Every request is profiled and recorded; records go to a Redis Stream (see `/logs`).
Every error answers with the same JSON shape; a 422 names each bad field and the reason.
"""


def load_predictor(settings: Settings) -> Predictor:
    artifacts = load_artifacts(settings.model_dir)
    predictor = Predictor(artifacts, top_features=settings.top_features)
    log.info("loaded model %s version %s", predictor.name, predictor.version)
    return predictor


def make_shipper(settings: Settings) -> Shipper:
    return Shipper(
        stream=settings.redis_stream,
        spool=Spool(settings.spool_dir, settings.spool_max_bytes),
        batch_size=settings.shipper_batch_size,
        memory_size=settings.shipper_queue_size,
        stream_max_len=settings.stream_max_len,
        window_seconds=settings.live_window_seconds,
    )


def make_recorder(settings: Settings, shipper: Shipper) -> Callable[[Draft], None]:
    """Builds each request's record and hands it to the shipper; a failure costs the record
    (counted as `failed`, logged with its cause), never the response."""
    shape = RecordShape(
        service_name=settings.service_name,
        service_version=__version__,
        host_name=socket.gethostname(),
        top_functions=settings.profiling_top_n,
        max_cases=settings.record_max_cases,
    )

    def record(draft: Draft) -> None:
        try:
            line = record_json(draft, shape)
        except Exception:
            shipper.count_failed()
            log.exception("could not build the record of transaction %s", draft.transaction_id)
            return
        shipper.submit(line)

    return record


def window_of(settings: Settings) -> Window:
    return Window(
        redis_url=settings.redis_url.get_secret_value(),
        stream=settings.redis_stream,
        group=settings.redis_group,
        window_seconds=settings.live_window_seconds,
        max_records=settings.scan_max_records,
        max_bytes=settings.scan_max_bytes,
    )


ROUTERS = (meta.router, predict.router, examples.router, logs.reads, logs.router, drift.router)


def api_routes() -> list[BaseRoute]:
    """The API's routes as its routers hold them (the app wraps the routers it includes)."""
    return [route for router in ROUTERS for route in router.routes]


def known_routes() -> list[tuple[str, re.Pattern[str], set[str]]]:
    """The API's routes, for naming them in the live statistics."""
    return [
        (route.path, route.path_regex, route.methods or set())
        for route in api_routes()
        if isinstance(route, Route)
    ]


def create_server_app() -> FastAPI:
    """The app as a server runs it (the uvicorn factory): its reader process starts with it,
    so the first `/drift` does not wait seconds for the process's imports."""
    return create_app(start_reader=True)


def create_app(
    settings: Settings | None = None,
    predictor: Predictor | None = None,
    start_reader: bool = False,
) -> FastAPI:
    """Build the app. Without a `predictor`, the model is loaded from `MODEL_DIR` at startup;
    a missing or tampered artifact stops the startup with a clear error. The reader process
    starts on first use unless `start_reader`."""
    settings = settings or get_settings()
    shipper = make_shipper(settings) if settings.telemetry_enabled else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Inputs reach the model validated (typed, finite, complete): skip scikit-learn's own
        # repeated checks on this thread, which runs every inference (its config is per thread).
        sklearn.set_config(assume_finite=True, skip_parameter_validation=True)
        if app.state.predictor is None:
            app.state.predictor = load_predictor(settings)
        model = app.state.predictor
        metrics.model.info({"name": model.name, "version": model.version})
        # The Redis client belongs to the running loop: created here, closed here.
        client = connect(settings.redis_url.get_secret_value())
        app.state.live_log = LiveLog(
            client,
            settings.redis_stream,
            settings.redis_group,
            settings.live_window_seconds,
            settings.pipeline_claim_idle_ms,
        )
        app.state.window_reader = WindowReader(
            window_of(settings), model.reference, settings.log_level
        )
        if start_reader:
            app.state.window_reader.start()
        if shipper is not None:
            shipper.start(client, route_matcher(known_routes()))
        try:
            yield
        finally:
            if shipper is not None:
                await shipper.stop()
            await client.aclose()
            app.state.window_reader.close()

    app = FastAPI(
        title="inferlog",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served below, its scripts pinned by integrity
        redoc_url=None,
        openapi_url=None,  # served below, its security as configured
    )

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return swagger_ui_page("/openapi.json", "inferlog API")

    document: dict[str, Any] = {}  # built on first use, once every route is in

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        if not document:
            document.update(openapi_document(app, settings, api_routes()))
        return JSONResponse(document)

    metrics = Metrics(lambda: shipper.counters() if shipper else None)
    app.state.settings = settings
    app.state.predictor = predictor
    app.state.shipper = shipper
    app.state.metrics = metrics
    app.state.profiler = InferenceProfiler(
        enabled=settings.telemetry_enabled and settings.profiling_enabled,
        sample_rate=settings.profiling_sample_rate,
    )
    routes = known_routes()
    install_error_handlers(
        app, lambda path: {m for _, regex, methods in routes if regex.match(path) for m in methods}
    )
    for router in ROUTERS:
        app.include_router(router)
    # Added last = outermost: every response, 413s included, carries the transaction id
    # and yields a record.
    # Inside the telemetry: a request for an unknown host is refused (400) and still recorded.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        path_limits=dict.fromkeys(("/predict", "/predict_proba"), predict.CASE_BODY_BYTES),
    )
    app.add_middleware(
        TelemetryMiddleware,
        record=make_recorder(settings, shipper) if shipper else None,
        metrics=metrics,
    )
    return app
