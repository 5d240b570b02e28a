"""The API's HTTP protocol: uvicorn's (httptools), plus limits on a request's head.

- **A deadline.** uvicorn times out idle keep-alive connections, but not a connection that has
  sent part of a request's headers (or nothing at all): such sockets stay open for good, and
  enough of them use up the process's file descriptors, so `/health` fails (slowloris). Here
  the head of each request must be complete within API_HEADER_TIMEOUT_SECONDS of the
  connection opening, or of the request's first byte on a kept-alive connection; else the
  connection is closed. (Not while reading is paused behind an earlier request's answer:
  then the wait is the server's.)
- **A size.** httptools buffers a head without a limit (uvicorn's
  `h11_max_incomplete_event_size` applies to h11 only). A head larger than
  API_MAX_HEADER_BYTES gets a 431, before the request reaches the app; requests before it
  on the connection get their answers first, then the connection is closed. The size is the
  request line's target and the headers, counted as the parser hands them over, and, while a
  head is still incomplete after a read, the bytes read since it began: httptools holds a
  header's bytes until the header ends, so one endless header is cut off as soon as a read
  passes the limit. In the read where a head begins, what the parser handed over before it
  (an earlier body, earlier heads) is left out.
- **Trailers.** A chunked body may end with trailer headers, which httptools buffers the same
  way. Past the body's bytes and its chunks' framing, a request may send at most
  API_MAX_HEADER_BYTES more; beyond that the connection is closed.

A refused request never reaches the app, so it has no record; the API's log does not list it
either (uvicorn answers malformed requests the same way).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from inferlog.config import get_settings

HEADER_LINE_OVERHEAD = 4  # ": " and CRLF, which the parser does not hand over
REQUEST_LINE_OVERHEAD = 32  # method, version, spaces and the blank line
CHUNK_OVERHEAD = 24  # a chunk's size line and CRLFs, without extensions


def too_large_response(limit: int) -> bytes:
    body = json.dumps(
        {
            "error": "request_header_fields_too_large",
            "message": f"the request's head is larger than {limit} bytes",
            "transaction_id": None,
            "errors": [],
            "omitted": 0,
        }
    ).encode()
    head = (
        "HTTP/1.1 431 Request Header Fields Too Large\r\n"
        "content-type: application/json\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class HeaderLimitsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self._header_deadline = settings.api_header_timeout_seconds
        self._max_head_bytes = settings.api_max_header_bytes
        self._header_timer: asyncio.TimerHandle | None = None
        self._in_head = self._in_body = False
        self._head_bytes = 0  # the target and headers the parser has handed over
        self._read_in_head = 0  # bytes read since the head began, while it is incomplete
        self._past_body = 0  # bytes of a request after its head that are neither body nor framing
        self._began_in_read = False
        self._accounted_in_read = 0  # bytes of the current read the parser has accounted for
        self._refused = False

    # -- the deadline ---------------------------------------------------------------------

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self._header_deadline, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.flow.read_paused:  # we are not reading: waiting on our own answer
            self._arm()
        elif not self.transport.is_closing():
            self.transport.close()

    # -- refusing -------------------------------------------------------------------------

    def _answering(self) -> bool:
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def _refuse(self) -> None:
        """431 once the requests before this one have their answers, then close."""
        self._refused = True
        self._disarm()
        self.flow.pause_reading()
        if not self._answering():
            self._answer_431()

    def _answer_431(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(too_large_response(self._max_head_bytes))
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refused and not self._answering():
            self._answer_431()

    def _should_upgrade(self) -> bool:
        return not self._refused and super()._should_upgrade()

    # -- counting -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, from the event loop; uvicorn narrows the base signature.
        super().connection_made(cast(asyncio.Transport, transport))
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._began_in_read, self._accounted_in_read = False, 0
        super().data_received(data)
        if self._refused:
            return
        unaccounted = max(0, len(data) - self._accounted_in_read)
        if self._in_head:
            if self._began_in_read:
                self._read_in_head = unaccounted
            else:
                self._read_in_head += len(data)
            if max(self._head_bytes, self._read_in_head) > self._max_head_bytes:
                self._refuse()
        elif self._in_body:
            self._past_body += unaccounted
            if self._past_body > self._max_head_bytes:  # trailers, chunk extensions
                self._refused = True
                self.transport.close()

    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        self._in_head = self._began_in_read = True
        self._head_bytes = self._read_in_head = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        if not self._refused:
            super().on_url(url)
            self._head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._refused:
            super().on_header(name, value)
            self._head_bytes += len(name) + len(value) + HEADER_LINE_OVERHEAD

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        self._in_head = False
        if self._head_bytes > self._max_head_bytes:
            self._refuse()  # the request is not started
            return
        self._accounted_in_read += self._head_bytes + REQUEST_LINE_OVERHEAD
        self._in_body, self._past_body = True, 0
        super().on_headers_complete()

    def on_chunk_header(self) -> None:
        self._accounted_in_read += CHUNK_OVERHEAD

    def on_body(self, body: bytes) -> None:
        self._accounted_in_read += len(body)
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        if not self._refused:
            super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
