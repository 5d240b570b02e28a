"""A loopback HTTP proxy in front of the Elasticsearch-compatible test server (osmem-server).

It does two test-only jobs, so the product code talks to it unmodified, over HTTP, with the
official client:
- the shim: osmem answers 406 to the client's `application/vnd.elasticsearch+json;
  compatible-with=8` media type, so the proxy rewrites it to plain JSON / NDJSON. osmem has
  no index lifecycle management and no security: the proxy keeps `PUT _ilm/policy/<name>`,
  `PUT _security/role/<name>` and `PUT _security/user/<name>` bodies itself
  (`ilm_policies`, `roles`, `users`) and takes the `index.lifecycle.*` settings out of index
  templates (keeping them in `lifecycle_settings`), as Elasticsearch would store them. It
  notes every request's method and path (`requests`);
- fault injection, on bulk requests only, without forwarding what it refuses:
  `fail(n, status)` answers the next n with that status (401 expired credentials, 403 missing
  privileges, 429 or 503 an overloaded cluster); `limit_body(n)` answers 413 to bodies over n
  bytes (a proxy's body limit); `refuse_containing(marker)` answers 400 to bodies that contain
  it (a document the cluster cannot parse); `fail_items(n, status)` forwards the next bulk
  request and reports its first n items as failed with that status (a busy shard).
"""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# What Elasticsearch answers, in substance, for each injected status.
INJECTED = {"type": "injected", "reason": "test"}
ERRORS = {
    400: {"type": "parse_exception", "reason": "request body is malformed"},
    401: {"type": "security_exception", "reason": "unable to authenticate user [pipeline]"},
    403: {
        "type": "security_exception",
        "reason": "action [indices:data/write/bulk] is unauthorized for user [pipeline]",
    },
    413: {"type": "content_too_long", "reason": "request entity too large"},
    429: {"type": "es_rejected_execution_exception", "reason": "rejected execution"},
    503: {"type": "unavailable_shards_exception", "reason": "primary shard is not active"},
}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class SearchProxy:
    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self.upstream_host = target.hostname or "127.0.0.1"
        self.upstream_port = target.port or 80
        self._lock = threading.Lock()
        self._failures: list[int] = []
        self._pass_first = 0
        self.max_body: int | None = None
        self.poison: bytes | None = None
        self.item_failures: list[tuple[int, int]] = []  # (items, status) per bulk response
        self.ilm_policies: dict[str, dict[str, object]] = {}
        self.roles: dict[str, dict[str, object]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.users: dict[str, dict[str, object]] = {}
        self.lifecycle_settings: dict[str, dict[str, object]] = {}
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
                proxy.requests.append((self.command, self.path.split("?")[0]))
                if self.path.startswith("/_security/") and self.command in ("PUT", "POST"):
                    # osmem has no security: the bodies are kept as Elasticsearch keeps them.
                    kind, _, name = (
                        self.path.split("?")[0].removeprefix("/_security/").partition("/")
                    )
                    kept = proxy.roles if kind == "role" else proxy.users
                    kept[name] = json.loads(body or b"{}")
                    self._reply(
                        200, {"role": {"created": True}} if kind == "role" else {"created": True}
                    )
                    return
                if self.path.startswith("/_ilm/policy/") and self.command == "PUT":
                    name = self.path.split("?")[0].removeprefix("/_ilm/policy/")
                    proxy.ilm_policies[name] = json.loads(body or b"{}")
                    self._reply(200, {"acknowledged": True})
                    return
                if self.path.startswith("/_index_template/") and self.command == "PUT" and body:
                    template = json.loads(body)
                    settings = template.get("template", {}).get("settings", {})
                    name = self.path.split("?")[0].removeprefix("/_index_template/")
                    proxy.lifecycle_settings[name] = {
                        key: settings.pop(key) for key in list(settings) if "lifecycle" in key
                    }
                    body = json.dumps(template).encode()
                if "_bulk" in self.path:
                    status = proxy._take_failure(body or b"")
                    if status is not None:
                        self._reply(
                            status, {"error": ERRORS.get(status, INJECTED), "status": status}
                        )
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
                    if "_bulk" in self.path and response.status == 200:
                        payload = proxy._fail_items(payload)
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

    def _take_failure(self, body: bytes) -> int | None:
        with self._lock:
            self.bulk_requests += 1
            if self.max_body is not None and len(body) > self.max_body:
                self.refused_bulk_requests += 1
                return 413
            if self.poison is not None and self.poison in body:
                self.refused_bulk_requests += 1
                return 400
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

    def _fail_items(self, payload: bytes) -> bytes:
        with self._lock:
            if not self.item_failures:
                return payload
            count, status = self.item_failures.pop(0)
        answer = json.loads(payload)
        for item in answer["items"][:count]:
            info = next(iter(item.values()))
            info.update(status=status, error=ERRORS[status])
            info.pop("result", None)
        answer["errors"] = True
        return json.dumps(answer).encode()

    def fail_items(self, count: int, status: int) -> None:
        with self._lock:
            self.item_failures.append((count, status))

    def limit_body(self, size: int | None) -> None:
        self.max_body = size

    def refuse_containing(self, marker: bytes | None) -> None:
        self.poison = marker

    def heal(self) -> None:
        with self._lock:
            self._failures.clear()
            self._pass_first = 0
            self.max_body = self.poison = None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
