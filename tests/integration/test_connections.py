"""The API's connections as an attacker meets them: half-sent requests, spoofed proxy headers,
the server's name. A real `python -m inferlog api` process on loopback."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from inferlog.ml import dataset
from tests.servers import RedisServer, api_process, wait_until

HEADER_TIMEOUT = 1.0


@contextmanager
def api(
    model_dir: Path, tmp_path: Path, redis_url: str, trusted_proxies: str = ""
) -> Iterator[str]:
    name = f"connections-{time.monotonic_ns()}"
    extra = {
        "API_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "FORWARDED_ALLOW_IPS": trusted_proxies,  # empty: none, whatever this shell says
    }
    with api_process(model_dir, tmp_path / name, redis_url, name, extra=extra) as started:
        yield started.base


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_half_sent_requests_neither_starve_health_nor_stay_open(
    model_dir: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    with api(model_dir, tmp_path, redis_server.url) as url:
        port = int(url.rsplit(":", 1)[1])
        sockets = []
        for i in range(400):  # half of them send half a header, half send nothing at all
            sock = socket.create_connection(("127.0.0.1", port))
            if i % 2:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sockets.append(sock)
        try:
            started = time.monotonic()
            assert httpx.get(f"{url}/health", timeout=5).status_code == 200
            assert time.monotonic() - started < HEADER_TIMEOUT  # not after they were dropped
            wait_until(lambda: all(closed_by_server(s) for s in sockets), HEADER_TIMEOUT + 10)
        finally:
            for sock in sockets:
                sock.close()
        # A complete request on a kept-alive connection is served as before.
        with httpx.Client(base_url=url) as client:
            assert [client.get("/health").status_code for _ in range(3)] == [200] * 3


def send_all(sock: socket.socket, pieces: Iterable[bytes]) -> None:
    """Send until the server stops reading (it raises then) or the pieces run out."""
    for piece in pieces:
        sock.sendall(piece)


def read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def test_headers_past_the_size_limit_get_431_and_the_connection_is_closed(
    model_dir: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    with api(model_dir, tmp_path, redis_server.url) as url:
        port = int(url.rsplit(":", 1)[1])
        head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        big = b"X-Big: " + b"a" * 40_000
        for request in (head + big, head + big + b"\r\n\r\n"):  # unfinished, and complete
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(request)
                answer = read_until_closed(sock)
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
            assert b'"error": "request_header_fields_too_large"' in answer
        # Headers sent without end: the server stops reading long before 50 MB.
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(10)
            sock.sendall(head)
            more = (b"X-More-%d: %s\r\n" % (n, b"a" * 1000) for n in range(50_000))
            with pytest.raises((BrokenPipeError, ConnectionResetError)):
                send_all(sock, more)
        # Headers under the limit, and a body of any size up to MAX_BODY_BYTES, are served.
        assert httpx.get(f"{url}/health", headers={"X-Big": "a" * 20_000}).status_code == 200
        padded = [{"padding": "a" * 200_000}]
        assert httpx.post(f"{url}/predict/batch", json=padded).status_code == 422
        # A kept-alive client's next head, read together with the end of a large body, is not
        # charged for the body's bytes.
        body = json.dumps(padded).encode()
        first = b"POST /predict/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        first += b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(10)
            sock.sendall(first + body[:-40_000])
            time.sleep(0.5)  # read by now: the body's last 40 KB comes with half the next head
            sock.sendall(body[-40_000:] + head)
            time.sleep(0.5)
            sock.sendall(b"Connection: close\r\n\r\n")
            answers = read_until_closed(sock)
        statuses = re.findall(rb"HTTP/1.1 (\d{3}) ", answers)
        assert statuses == [b"422", b"200"], answers[:300]


def test_a_refused_head_answers_after_the_requests_before_it_and_runs_none_after_it(
    model_dir: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    with api(model_dir, tmp_path, redis_server.url) as url:
        port = int(url.rsplit(":", 1)[1])
        cases = dataset.held_out_cases()
        body = json.dumps([cases[n % len(cases)] for n in range(1000)]).encode()  # ~0.1 s
        batch = b"POST /predict/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        batch += b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        big = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n"
        after = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(batch + body + big + after)  # pipelined: one after the other
            answers = read_until_closed(sock)
        assert re.findall(rb"HTTP/1.1 (\d{3}) ", answers) == [b"200", b"431"]
        assert b'"count":1000' in answers.replace(b" ", b"")  # the batch's own answer, whole


def test_endless_trailers_after_a_chunked_body_are_cut_off(
    model_dir: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    with api(model_dir, tmp_path, redis_server.url) as url:
        port = int(url.rsplit(":", 1)[1])
        head = b"POST /predict/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        head += b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(10)
            sock.sendall(head + b"2\r\n[]\r\n0\r\nX-Trailer: ")
            with pytest.raises((BrokenPipeError, ConnectionResetError)):
                send_all(sock, (b"a" * 1000 for _ in range(50_000)))
        # Many small chunks are framing, not trailers: served.
        chunks = b"".join(b"1\r\n%s\r\n" % bytes([c]) for c in b"[" + b" " * 5000 + b"]")
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(10)
            sock.sendall(head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
            sock.sendall(chunks + b"0\r\n\r\n")
            answer = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 422 "), answer[:200]  # an empty batch: read whole


def client_ip(url: str) -> str:
    case = dataset.held_out_examples()["benign"]
    answer = httpx.post(f"{url}/predict", json=case, headers={"X-Forwarded-For": "6.6.6.6"})
    assert "server" not in answer.headers  # the server's name and version are not advertised
    tid = answer.json()["transaction_id"]
    wait_until(lambda: httpx.get(f"{url}/logs/{tid}").status_code == 200, 10)
    ip: str = httpx.get(f"{url}/logs/{tid}").json()["client"]["ip"]
    return ip


def test_x_forwarded_for_is_ignored_unless_its_proxy_is_trusted(
    model_dir: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    with api(model_dir, tmp_path, redis_server.url) as url:
        assert client_ip(url) == "127.0.0.1"  # the peer, not what the header claims
    with api(model_dir, tmp_path, redis_server.url, trusted_proxies="127.0.0.1") as url:
        assert client_ip(url) == "6.6.6.6"  # behind a proxy named in FORWARDED_ALLOW_IPS
