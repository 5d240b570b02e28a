"""A loopback HTTP proxy in front of the Elasticsearch-compatible test server (osmem-server).

It does two test-only jobs, so the product code talks to it unmodified, over HTTP, with the
official client:
- the shim: osmem answers 406 to the client's `application/vnd.elasticsearch+json;
  compatible-with=8` media type, so the proxy rewrites it to plain JSON / NDJSON;
- fault injection: `fail(n, status)` answers the next n bulk requests with that status
  (429, 503...) without forwarding them, like an overloaded cluster.
"""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class SearchProxy:
    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self.upstream_host = target.hostname or "127.0.0.1"
        self.upstream_port = target.port or 80
        self._lock = threading.Lock()
        self._failures: list[int] = []
        self._pass_first = 0
        self.bulk_requests = 0
        self.refused_bulk_requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                return

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if "_bulk" in self.path:
                    status = proxy._take_failure()
                    if status is not None:
                        self._reply(status, {"error": {"type": "injected", "reason": "test"}})
                        return
                headers = {}
                for key, value in self.headers.items():
                    if key.lower() in _HOP_BY_HOP:
                        continue
                    if key.lower() in ("content-type", "accept") and "compatible-with" in value:
                        value = (
                            "application/x-ndjson" if "x-ndjson" in value else "application/json"
                        )
                    headers[key] = value
                upstream = http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=60
                )
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    self.send_response(response.status)
                    for key, value in response.getheaders():
                        if key.lower() not in _HOP_BY_HOP:
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                finally:
                    upstream.close()

            def _reply(self, status: int, document: dict[str, object]) -> None:
                payload = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            # http.server dispatches on these names.
            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _take_failure(self) -> int | None:
        with self._lock:
            self.bulk_requests += 1
            if self._pass_first:
                self._pass_first -= 1
                return None
            if self._failures:
                self.refused_bulk_requests += 1
                return self._failures.pop(0)
            return None

    def fail(self, count: int, status: int, after: int = 0) -> None:
        """Answer `count` bulk requests with `status`, after letting `after` more through."""
        with self._lock:
            self._pass_first = after
            self._failures += [status] * count

    def heal(self) -> None:
        with self._lock:
            self._failures.clear()
            self._pass_first = 0

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
