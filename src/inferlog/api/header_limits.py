"""The API's HTTP protocol: uvicorn's (httptools), plus limits on a request's headers.

- **A deadline.** uvicorn times out idle keep-alive connections, but not a connection that has
  sent part of a request's headers (or nothing at all): such sockets stay open for good, and
  enough of them use up the process's file descriptors, so `/health` fails (slowloris). Here
  the headers of each request must be complete within API_HEADER_TIMEOUT_SECONDS of the
  connection opening, or of the request's first byte on a kept-alive connection; else the
  connection is closed.
- **A size.** httptools buffers headers without a limit (h11's `h11_max_incomplete_event_size`
  does not apply to it): headers still incomplete after API_MAX_HEADER_BYTES get a 431 and the
  connection is closed. The count is checked after each read, so it may pass the limit by
  one read (64 KiB at most) before the answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from inferlog.config import get_settings

TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\nconnection: close\r\ncontent-length: 52\r\n\r\n"
    b'{"detail":"the request headers are too large (431)"}'
)


class HeaderLimitsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self._header_deadline = settings.api_header_timeout_seconds
        self._max_header_bytes = settings.api_max_header_bytes
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0  # read while the headers were incomplete

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self._header_deadline, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is None or self.transport.is_closing():
            return  # the headers are complete (a body is not counted)
        self._header_bytes += len(data)
        if self._header_bytes > self._max_header_bytes:
            self._disarm()
            self.transport.write(TOO_LARGE)
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
