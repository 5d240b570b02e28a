"""What a request leaves for its record, and how the record is built from it.

While a request runs, the middleware and the route only collect references (the validated
inputs, the predictions, the raw profile) into a `Draft`. When the response is complete, the
middleware builds the record (`record_json`: profile statistics, conversion, JSON) and hands
it to the shipper, before the last bytes of the response go out: the request pays for its own
record, so the work cannot pile up under load (see `shipper.py`).

The record is built as plain data and serialised by pydantic-core without validation:
validating costs five times the serialisation (`bench/telemetry_costs.py`). `RequestRecord`
stays the contract: the tests validate the records the API writes, and the logs pipeline
validates every record it reads.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pydantic_core

from inferlog.bounded_text import shortened
from inferlog.features import FEATURE_NAMES
from inferlog.ml.predictor import Prediction
from inferlog.telemetry.profiler import Capture, summarize
from inferlog.telemetry.record import SCHEMA

CLIENT_CLOSED_REQUEST = 499  # the client left before the answer (nginx's code; no HTTP one)


@dataclass
class InferenceDraft:
    model_name: str
    model_version: str
    inputs: np.ndarray  # (n_cases, 30) in feature-spec order
    batch: bool
    capture: Capture
    predictions: list[Prediction] | None = None
    probability_malignant: float | None = None


@dataclass
class Draft:
    timestamp: dt.datetime
    transaction_id: str
    method: str
    path: str
    request_id: str | None = None
    status: int = 500
    request_bytes: int = 0
    response_bytes: int = 0
    duration_ns: int = 0
    client_ip: str | None = None
    user_agent: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    inference: InferenceDraft | None = field(default=None, repr=False)


# What a client sends reaches the records only log-safe: control characters (line breaks
# that would forge log lines, escape sequences that would drive a terminal) written as
# escapes, and each field capped, so one request cannot make a record of megabytes.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
PATH_CHARS = 1024
USER_AGENT_CHARS = 512
MESSAGE_CHARS = 1024


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def log_safe(text: str, limit: int) -> str:
    """`text` with control characters escaped (`\\n`, `\\x1b`), cut to `limit` characters
    with a note of how many were left out."""
    if _UNSAFE.search(text):
        text = _UNSAFE.sub(_escape, text)
    return shortened(text, limit)


def _ip_or_none(value: str | None) -> str | None:
    """`client.ip` is an IP field: a host name (test clients, odd proxies) is left out."""
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None


def _without_none(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def _level(status: int) -> str:
    if status >= 500:
        return "ERROR"
    if status >= 400:
        return "WARNING"
    return "INFO"


def _event_outcome(status: int) -> Literal["success", "failure", "unknown"]:
    if status == CLIENT_CLOSED_REQUEST:
        return "unknown"
    return "failure" if status >= 400 else "success"


def _outcome(p: Prediction) -> dict[str, Any]:
    return p.verdict("probability")


def _message(draft: Draft, path: str, error_message: str | None) -> str:
    head = f"{draft.method} {path} {draft.status} {draft.duration_ns / 1e6:.1f} ms"
    ml = draft.inference
    if draft.error_type:
        return log_safe(f"{head} {draft.error_type}: {error_message}", MESSAGE_CHARS)
    if ml is None:
        return head
    if ml.predictions is None:
        return f"{head} p={ml.probability_malignant:.2f}"
    if ml.batch:
        malignant = sum(p.label == "malignant" for p in ml.predictions)
        return f"{head} {len(ml.predictions)} cases ({malignant} malignant)"
    p = ml.predictions[0]
    return f"{head} {p.label} p={p.probability_malignant:.2f}"


@dataclass(frozen=True)
class RecordShape:
    """What every record of this API carries besides the request: who wrote it, and how much
    of an inference it keeps."""

    service_name: str
    service_version: str
    host_name: str
    top_functions: int  # PROFILING_TOP_N
    max_cases: int  # RECORD_MAX_CASES


def _omitted(predictions: list[Prediction] | None, cases: int) -> dict[str, Any]:
    """The cases of a batch past the record's share: counted, and their labels tallied, so the
    statistics stay exact."""
    omitted: dict[str, Any] = {"cases": cases}
    if predictions is not None:
        malignant = sum(p.label == "malignant" for p in predictions)
        omitted["labels"] = {"malignant": malignant, "benign": len(predictions) - malignant}
    return omitted


def _ml_section(ml: InferenceDraft, latency_ms: float, shape: RecordShape) -> dict[str, Any]:
    batch_size = len(ml.inputs)
    kept = min(batch_size, shape.max_cases)
    rows = [dict(zip(FEATURE_NAMES, row, strict=True)) for row in ml.inputs[:kept].tolist()]
    section: dict[str, Any] = {
        "model": {"name": ml.model_name, "version": ml.model_version},
        "batch_size": batch_size,
        "input": rows if ml.batch else rows[0],
        "profile": {**summarize(ml.capture, shape.top_functions), "latency_ms": latency_ms},
    }
    if ml.predictions is not None:
        outcomes = [_outcome(p) for p in ml.predictions[:kept]]
        section["prediction"] = outcomes if ml.batch else outcomes[0]
    if kept < batch_size:
        rest = None if ml.predictions is None else ml.predictions[kept:]
        section["omitted"] = _omitted(rest, batch_size - kept)
    if ml.probability_malignant is not None:
        p = ml.probability_malignant
        section["probabilities"] = {"malignant": p, "benign": 1.0 - p}
    return section


def build_record(draft: Draft, shape: RecordShape) -> dict[str, Any]:
    """The record of one request, as plain data in the shape of `RequestRecord`."""
    request: dict[str, Any] = {"method": draft.method, "body": {"bytes": draft.request_bytes}}
    if draft.request_id is not None:  # well-formed only (the middleware checks it)
        request["id"] = draft.request_id
    path = log_safe(draft.path, PATH_CHARS)
    error_message = (
        None if draft.error_message is None else log_safe(draft.error_message, MESSAGE_CHARS)
    )
    user_agent = None if draft.user_agent is None else log_safe(draft.user_agent, USER_AGENT_CHARS)
    document: dict[str, Any] = {
        "@timestamp": draft.timestamp,
        "schema": SCHEMA,
        "log": {"level": _level(draft.status)},
        "message": _message(draft, path, error_message),
        "transaction": {"id": draft.transaction_id},
        "service": {"name": shape.service_name, "version": shape.service_version},
        "host": {"name": shape.host_name},
        "http": {
            "request": request,
            "response": {"status_code": draft.status, "body": {"bytes": draft.response_bytes}},
        },
        "url": {"path": path},
        "client": _without_none(ip=_ip_or_none(draft.client_ip)),
        "user_agent": _without_none(original=user_agent),
        "event": {"duration": draft.duration_ns, "outcome": _event_outcome(draft.status)},
    }
    if draft.error_type:
        document["error"] = {"type": draft.error_type, "message": error_message or ""}
    if draft.inference is not None:
        document["ml"] = _ml_section(draft.inference, draft.duration_ns / 1e6, shape)
    return document


def record_json(draft: Draft, shape: RecordShape) -> str:
    document = build_record(draft, shape)
    return pydantic_core.to_json(document).decode()
