"""Refuse request bodies above `MAX_BODY_BYTES` with 413, declared or streamed."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inferlog.api.errors import BodyTooLargeError, error_response


class BodyLimitMiddleware:
    """Checks Content-Length up front and counts streamed bytes for chunked bodies.

    The streamed case raises `BodyTooLargeError` from `receive`, inside the route, where the app's
    exception handler turns it into the same 413 answer.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                too_large = BodyTooLargeError(self.max_bytes)
                response = error_response(scope, 413, "body_too_large", str(too_large))
                await response(scope, receive, send)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)
