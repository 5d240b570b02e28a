"""Refuse request bodies above `MAX_BODY_BYTES` (or a route's own, lower limit) with 413,
declared or streamed."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inferlog.api.errors import BodyTooLargeError, error_response


class BodyLimitMiddleware:
    """Checks Content-Length up front and counts streamed bytes for chunked bodies.

    A streamed body that passes the limit raises `BodyTooLargeError` from `receive`, inside
    the route. Whatever the route or the framework makes of that exception (FastAPI turns any
    error while reading a body into a 400), the answer the client gets is the 413: this
    middleware sends it in place of the app's own response.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, path_limits: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = {path: min(n, max_bytes) for path, n in (path_limits or {}).items()}

    async def _answer_413(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        message = str(BodyTooLargeError(limit))
        # The record says 413 too, whatever error the app noted on its way.
        scope.setdefault("state", {})["error"] = {"type": "body_too_large", "message": message}
        await error_response(scope, 413, "body_too_large", message)(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope["path"], self.max_bytes)
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._answer_413(scope, receive, send, limit)
                return
        received = 0
        exceeded = answered = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLargeError(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if not exceeded:
                await send(message)
            elif not answered and message["type"] == "http.response.start":
                answered = True
                await self._answer_413(scope, receive, send, limit)
            # The app's own answer to the exception is dropped: the client has the 413.

        await self.app(scope, counting_receive, guarded_send)
