"""The live window of request records, and the Prometheus metrics."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Annotated, Any

import redis
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from inferlog.api.dependencies import as_utc
from inferlog.api.security import AdminOnly
from inferlog.telemetry import stats
from inferlog.telemetry.live_log import LiveLog
from inferlog.telemetry.record import STATUS_PATTERN, status_matches

router = APIRouter(tags=["logs"])


def _live_log(request: Request) -> LiveLog:
    return request.app.state.live_log


@contextmanager
def redis_errors() -> Iterator[None]:
    try:
        yield
    except (redis.RedisError, OSError) as exc:
        raise HTTPException(503, f"Redis is unreachable: {exc}") from exc


def _matches(
    record: dict[str, Any],
    status: str | None,
    path: str | None,
    transaction_id: str | None,
    request_id: str | None,
) -> bool:
    if transaction_id is not None and record["transaction"]["id"] != transaction_id:
        return False
    if request_id is not None and record["http"]["request"].get("id") != request_id:
        return False
    if path is not None and record["url"]["path"] != path:
        return False
    return status is None or status_matches(record["http"]["response"]["status_code"], status)


@router.get("/logs", summary="Recent request records, newest first")
async def recent_logs(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    since: Annotated[dt.datetime | None, Query(description="ISO 8601 time, UTC if naive")] = None,
    status: Annotated[
        str | None, Query(pattern=STATUS_PATTERN, description="e.g. 422 or 4xx")
    ] = None,
    path: Annotated[str | None, Query(description="exact URL path, e.g. /predict")] = None,
    transaction_id: str | None = None,
    request_id: Annotated[
        str | None, Query(description="the client's own X-Request-ID (http.request.id)")
    ] = None,
) -> dict[str, Any]:
    since = as_utc(since)
    live = _live_log(request)
    with redis_errors():
        records = await live.recent(
            limit, since, keep=lambda r: _matches(r, status, path, transaction_id, request_id)
        )
    return {"count": len(records), "window_seconds": live.window_seconds, "records": records}


@router.get("/logs/stats", summary="Statistics over the live window")
async def log_stats(request: Request) -> dict[str, Any]:
    live = _live_log(request)
    settings = request.app.state.settings
    with redis_errors():
        records = await live.recent(settings.stats_max_records)
        stream = await live.stream_info()
    shipper = request.app.state.shipper
    return {
        "window_seconds": live.window_seconds,
        "records_read": len(records),
        "truncated": len(records) >= settings.stats_max_records,
        **stats.compute(records, live.window_seconds),
        "shipper": asdict(shipper.counters()) if shipper else None,
        "stream": stream,
    }


@router.get("/logs/{transaction_id}", summary="One request record")
async def one_log(request: Request, transaction_id: str) -> dict[str, Any]:
    with redis_errors():
        record = await _live_log(request).find(transaction_id)
    if record is None:
        raise HTTPException(404, f"no record of transaction {transaction_id} in the live window")
    return record


@router.delete(
    "/logs",
    summary="Remove the records the logs pipeline has acknowledged (admin)",
    dependencies=[AdminOnly],
)
async def delete_logs(request: Request) -> dict[str, int]:
    with redis_errors():
        deletion = await _live_log(request).delete_acknowledged()
    return {"removed": deletion.removed, "kept": deletion.kept}


@router.get("/metrics", summary="Prometheus metrics", tags=["service"])
async def metrics(request: Request) -> Response:
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
