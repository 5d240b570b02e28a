"""The telemetry middleware (pure ASGI: cheaper than BaseHTTPMiddleware): one draft per request.

For every HTTP request it
- gives a transaction id: a well-formed client `X-Request-ID` is kept so callers can follow
  their own id through the logs, anything else gets a new UUID; echoed as `X-Request-ID`;
- measures the wall-clock time and the request and response body sizes;
- turns an unhandled exception into a JSON 500 (logged once, with the id), so that answer also
  carries the id and no traceback reaches the client;
- updates the Prometheus metrics and hands a `Draft` to the shipper: never waits on Redis.

Routes add what only they know to `scope["state"]`: the inference (`inference`) and, for
errors, `error` (type and message).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inferlog.api.errors import error_response
from inferlog.telemetry.drafts import Draft, InferenceDraft
from inferlog.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = b"x-request-id"
_WELL_FORMED = re.compile(rb"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def transaction_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == REQUEST_ID_HEADER and _WELL_FORMED.match(value):
            return value.decode("ascii")
    return str(uuid.uuid4())


def transaction_id(scope: Scope) -> str:
    return str(scope["state"]["transaction_id"])


def elapsed_ms(scope: Scope) -> float:
    return (time.perf_counter() - scope["state"]["started"]) * 1000


def record_inference(scope: Scope, inference: InferenceDraft) -> None:
    scope["state"]["inference"] = inference


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


class TelemetryMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        submit: Callable[[Draft], None] | None,
        metrics: Metrics | None,
    ) -> None:
        self.app = app
        self.submit = submit
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        started = state["started"] = time.perf_counter()
        timestamp = dt.datetime.now(dt.UTC)
        tid = state["transaction_id"] = transaction_id_from(scope["headers"])
        id_header = (REQUEST_ID_HEADER, tid.encode("ascii"))
        sizes = {"request": 0, "response": 0}
        status = 500
        response_started = False

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                sizes["request"] += len(message.get("body", b""))
            return message

        async def observing_send(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), id_header]
            elif message["type"] == "http.response.body":
                sizes["response"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, observing_send)
        except Exception as exc:
            log.exception(
                "unhandled error in %s %s (transaction %s)", scope["method"], scope["path"], tid
            )
            if response_started:
                raise
            state["error"] = {"type": type(exc).__name__, "message": str(exc)[:500]}
            response = error_response(
                scope,
                500,
                "internal_error",
                "internal error; the service log has the details under this transaction id",
            )
            await response(scope, receive, observing_send)
        finally:
            seconds = time.perf_counter() - started
            self._observe(scope, state, timestamp, status, sizes, seconds)

    def _observe(
        self,
        scope: Scope,
        state: dict[str, Any],
        timestamp: dt.datetime,
        status: int,
        sizes: dict[str, int],
        seconds: float,
    ) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        inference: InferenceDraft | None = state.get("inference")
        if self.metrics is not None:
            self.metrics.observe_request(route, scope["method"], status, seconds)
            if inference is not None:
                capture = inference.capture
                self.metrics.observe_inference(route, capture.inference_ms / 1000, capture.profiled)
        if self.submit is None:
            return
        error = state.get("error")
        client = scope.get("client")
        self.submit(
            Draft(
                timestamp=timestamp,
                transaction_id=state["transaction_id"],
                method=scope["method"],
                path=scope["path"],
                status=status,
                request_bytes=sizes["request"],
                response_bytes=sizes["response"],
                duration_ns=int(seconds * 1e9),
                client_ip=client[0] if client else None,
                user_agent=_header(scope["headers"], b"user-agent"),
                error_type=error["type"] if error else None,
                error_message=error["message"] if error else None,
                inference=inference,
            )
        )
