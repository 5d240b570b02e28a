"""Transaction ids and request clocks, as a pure ASGI middleware (cheaper than BaseHTTPMiddleware).

A well-formed client `X-Request-ID` is kept so a caller can follow its own id through the logs;
anything else gets a new UUID. The id is echoed as `X-Request-ID` on every response, and an
unhandled exception becomes a JSON 500 here (logged once, with the id), so that answer carries
the id too and no traceback ever reaches the client.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inferlog.api.errors import error_response

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


class TransactionMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        state["started"] = time.perf_counter()
        tid = transaction_id_from(scope["headers"])
        state["transaction_id"] = tid
        header = (REQUEST_ID_HEADER, tid.encode("ascii"))
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception(
                "unhandled error in %s %s (transaction %s)", scope["method"], scope["path"], tid
            )
            if response_started:
                raise
            response = error_response(
                scope,
                500,
                "internal_error",
                "internal error; the service log has the details under this transaction id",
            )
            await response(scope, receive, send_with_id)
