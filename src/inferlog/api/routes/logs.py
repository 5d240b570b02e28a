"""The live window of request records, its statistics, and the Prometheus metrics.

Keyed reads (one record by transaction id, the statistics) run here with bounded Redis calls;
reads that scan the window run in the reader process (`telemetry/window_reader.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Annotated, Any

import redis
from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from inferlog.api.errors import error_responses
from inferlog.api.security import AdminOnly, ReadKey
from inferlog.moments import Moment
from inferlog.telemetry.live_log import LiveLog
from inferlog.telemetry.record import STATUS_PATTERN
from inferlog.telemetry.window_reader import LogFilter, ReaderError, WindowReader

router = APIRouter(tags=["logs"])
reads = APIRouter(tags=["logs"], dependencies=[ReadKey], responses=error_responses(401, 403, 503))


MAX_PAGE = 200

TransactionId = Annotated[str, Path(max_length=64, description="the record's transaction.id")]


def _live_log(request: Request) -> LiveLog:
    live: LiveLog = request.app.state.live_log
    return live


def _reader(request: Request) -> WindowReader:
    reader: WindowReader = request.app.state.window_reader
    return reader


@contextmanager
def redis_errors() -> Iterator[None]:
    """A 503 that says what failed, without the server's internals."""
    try:
        yield
    except (redis.RedisError, OSError) as exc:
        raise HTTPException(503, f"Redis is unreachable ({type(exc).__name__})") from exc
    except ReaderError as exc:
        raise HTTPException(503, str(exc)) from exc


def json_body(body: bytes) -> Response:
    return Response(content=body, media_type="application/json")


@reads.get("/logs", summary="Recent request records, newest first", responses=error_responses(422))
async def recent_logs(
    request: Request,
    # 200 records of the largest kind cost the reader ~50 ms to find and encode (4 MB), 1000
    # cost 250 ms (bench/request_costs.py); older records are in Elasticsearch.
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    since: Annotated[Moment, Query(description="ISO 8601 time, UTC if naive")] = None,
    status: Annotated[
        str | None, Query(pattern=STATUS_PATTERN, description="e.g. 422 or 4xx")
    ] = None,
    path: Annotated[str | None, Query(description="exact URL path, e.g. /predict")] = None,
    transaction_id: Annotated[
        str | None, Query(max_length=64, description="one record, by its transaction.id")
    ] = None,
    request_id: Annotated[
        str | None, Query(description="the client's own X-Request-ID (http.request.id)")
    ] = None,
) -> Any:
    keep = LogFilter(since=since, status=status, path=path, request_id=request_id)
    live = _live_log(request)
    if transaction_id is not None:  # a keyed lookup, not a scan
        with redis_errors():
            record = await live.find(transaction_id)
        records = [record] if record is not None and keep.keeps(record) else []
        return {
            "count": len(records),
            "window_seconds": live.window_seconds,
            "scanned": int(record is not None),
            "truncated": False,
            "records": records,
        }
    with redis_errors():
        return json_body(await _reader(request).logs(limit, keep))


@reads.get(
    "/logs/stats",
    summary="Statistics over the live window",
    description="While Redis is unreachable the statistics (kept in Redis) are left out: "
    "`redis_available` is false, `problem` says why, and the shipper's counters (this "
    "process's) still show what waits in the spool.",
)
async def log_stats(request: Request) -> dict[str, Any]:
    live = _live_log(request)
    shipper = request.app.state.shipper
    counters = asdict(shipper.counters()) if shipper else None
    with redis_errors():  # any other Redis error: a 503
        try:
            statistics = await live.statistics()
            stream = await live.stream_info()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            return {
                "window_seconds": live.window_seconds,
                "redis_available": False,
                "problem": f"Redis is unreachable ({type(exc).__name__}): "
                "no statistics until it is up",
                "shipper": counters,
                "stream": None,
            }
    return {
        "window_seconds": live.window_seconds,
        "redis_available": True,
        **statistics,
        "shipper": counters,
        "stream": stream,
    }


@reads.get(
    "/logs/{transaction_id}", summary="One request record", responses=error_responses(404, 422)
)
async def one_log(request: Request, transaction_id: TransactionId) -> dict[str, Any]:
    with redis_errors():
        record = await _live_log(request).find(transaction_id)
    if record is None:
        raise HTTPException(404, f"no record of transaction {transaction_id} in the live window")
    return record


@router.delete(
    "/logs",
    summary="Remove the records the logs pipeline has acknowledged (admin)",
    dependencies=[AdminOnly],
    responses=error_responses(401, 403, 503),
)
async def delete_logs(request: Request) -> dict[str, int]:
    with redis_errors():
        deletion: dict[str, int] = await _reader(request).delete_acknowledged()
    return deletion


class PrometheusText(Response):
    media_type = CONTENT_TYPE_LATEST


@router.get(
    "/metrics", summary="Prometheus metrics", tags=["service"], response_class=PrometheusText
)
async def metrics(request: Request) -> PrometheusText:
    return PrometheusText(generate_latest(request.app.state.metrics.registry))
