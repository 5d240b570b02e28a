"""The telemetry middleware (pure ASGI: cheaper than BaseHTTPMiddleware): one record per request.

For every HTTP request it
- gives a transaction id, always a new UUID made here: no client can make two requests share
  a record or a document id. A well-formed client `X-Request-ID` is kept as `http.request.id`
  (searchable in `/logs`) and echoed back; the response also carries `X-Transaction-ID`;
- measures the wall-clock time and the request and response body sizes;
- turns an unhandled exception into a JSON 500 (logged with the id), so that answer also
  carries the id and no traceback reaches the client;
- records a client that left before its answer as status 499 (`event.outcome: unknown`);
- when the response is complete, updates the Prometheus metrics and hands a `Draft` to
  `record`, before the last bytes of the response go out: once a client has its answer, the
  record is in the spool (see `shipper.py`). Never waits on Redis.

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
from inferlog.telemetry.drafts import CLIENT_CLOSED_REQUEST, Draft, InferenceDraft
from inferlog.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = b"x-request-id"
TRANSACTION_ID_HEADER = b"x-transaction-id"
_WELL_FORMED = re.compile(rb"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def client_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The client's `X-Request-ID`, if well-formed (anything else is ignored)."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER and _WELL_FORMED.match(value):
            return value.decode("ascii")
    return None


def transaction_id(scope: Scope) -> str:
    return str(scope["state"]["transaction_id"])


def elapsed_ms(scope: Scope) -> float:
    started: float = scope["state"]["started"]
    return (time.perf_counter() - started) * 1000


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
        record: Callable[[Draft], None] | None,
        metrics: Metrics | None,
    ) -> None:
        self.app = app
        self.record = record
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        started = state["started"] = time.perf_counter()
        timestamp = dt.datetime.now(dt.UTC)
        tid = state["transaction_id"] = str(uuid.uuid4())
        request_id = client_request_id(scope["headers"])
        id_headers = [
            (REQUEST_ID_HEADER, (request_id or tid).encode("ascii")),
            (TRANSACTION_ID_HEADER, tid.encode("ascii")),
        ]
        sizes = {"request": 0, "response": 0}
        status = 500
        response_started = finished = client_left = False

        def finish() -> None:
            nonlocal finished
            finished = True
            self._observe(
                scope,
                state,
                timestamp,
                request_id,
                CLIENT_CLOSED_REQUEST if client_left else status,
                sizes,
                time.perf_counter() - started,
            )

        async def counting_receive() -> Message:
            nonlocal client_left
            message = await receive()
            if message["type"] == "http.request":
                sizes["request"] += len(message.get("body", b""))
            elif message["type"] == "http.disconnect" and not finished:
                client_left = True
            return message

        async def observing_send(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), *id_headers]
            elif message["type"] == "http.response.body":
                sizes["response"] += len(message.get("body", b""))
                if not message.get("more_body", False) and not finished:
                    finish()  # the record is kept before the client has its answer
            await send(message)

        try:
            await self.app(scope, counting_receive, observing_send)
        except Exception as exc:
            if client_left:  # nobody to answer; whatever failed, failed because of that
                log.info("client left %s %s (transaction %s)", scope["method"], scope["path"], tid)
            else:
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
            if not finished:
                finish()

    def _observe(
        self,
        scope: Scope,
        state: dict[str, Any],
        timestamp: dt.datetime,
        request_id: str | None,
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
        if self.record is None:
            return
        error = state.get("error")
        if status == CLIENT_CLOSED_REQUEST:
            error = {
                "type": "client_closed_request",
                "message": "the client closed the connection before the answer was sent",
            }
        client = scope.get("client")
        self.record(
            Draft(
                timestamp=timestamp,
                transaction_id=state["transaction_id"],
                method=scope["method"],
                path=scope["path"],
                request_id=request_id,
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
