"""The request record, schema `inferlog.request/1`: one JSON document per HTTP request.

Shared by the API (producer) and the logs pipeline (consumer). Field names follow the Elastic
Common Schema where it has one (`@timestamp`, `http.request.method`, `event.duration`, ...),
as nested objects. Secrets (API keys, Redis URLs) are never part of it: only the user agent
is copied from the request headers.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_NAME = "inferlog.request"
SCHEMA_MAJOR = 1
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_MAJOR}"
RECORD_FIELD = "record"  # the field of a stream entry that holds the record's JSON
_SCHEMA_PATTERN = re.compile(rf"^{re.escape(SCHEMA_NAME)}/(\d+)(?:\.\d+)*$")


# A status filter: an exact code (`422`) or a class (`4xx`); used by /logs and the pipeline rules.
STATUS_PATTERN = r"^([1-5]\d\d|[1-5]xx)$"


def status_matches(status_code: int, wanted: str) -> bool:
    """Whether `status_code` matches `wanted` (see `STATUS_PATTERN`)."""
    code = str(status_code)
    return code[0] == wanted[0] if wanted.endswith("xx") else code == wanted


def schema_major(schema: object) -> int | None:
    """Major version of a schema string such as `inferlog.request/1`; None if not ours."""
    match = _SCHEMA_PATTERN.match(schema) if isinstance(schema, str) else None
    return int(match.group(1)) if match else None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Log(_Strict):
    level: Literal["INFO", "WARNING", "ERROR"]


class Transaction(_Strict):
    id: str


class Service(_Strict):
    name: str
    version: str


class Host(_Strict):
    name: str


class Body(_Strict):
    bytes: int = Field(ge=0)


class HttpRequest(_Strict):
    id: str | None = Field(None, description="the client's own X-Request-ID, when well-formed")
    method: str
    body: Body


class HttpResponse(_Strict):
    status_code: int = Field(ge=100, le=599)
    body: Body


class Http(_Strict):
    request: HttpRequest
    response: HttpResponse


class Url(_Strict):
    path: str


class Client(_Strict):
    ip: str | None = None


class UserAgent(_Strict):
    original: str | None = None


class Event(_Strict):
    duration: int = Field(ge=0, description="nanoseconds")
    outcome: Literal["success", "failure", "unknown"] | None = Field(
        None, description="ECS: failure for 4xx/5xx; unknown when the client left before the answer"
    )


class Error(_Strict):
    type: str
    message: str


class Model(_Strict):
    name: str
    version: str


class PredictionOutcome(_Strict):
    label: Literal["malignant", "benign"]
    probability: float = Field(ge=0.0, le=1.0)
    threshold: float
    risk_level: Literal["LOW", "MEDIUM", "HIGH"]
    out_of_range_features: list[str] = Field(default_factory=list)


class HotFunction(_Strict):
    function: str
    file: str
    line: int
    calls: int
    tottime_ms: float
    cumtime_ms: float


class Profile(_Strict):
    profiled: bool
    reason: str | None = Field(None, description="why the inference was not profiled")
    latency_ms: float = Field(ge=0, description="whole request, in the API")
    inference_ms: float = Field(ge=0, description="the model call")
    cpu_ms: float = Field(ge=0, description="CPU time of the thread running the model call")
    rss_mb: float = Field(ge=0, description="process resident memory after the model call")
    rss_delta_mb: float = Field(description="change of resident memory over the model call")
    function_calls: int = Field(0, ge=0)
    primitive_calls: int = Field(0, ge=0)
    top_functions: list[HotFunction] = Field(default_factory=list)


class OmittedCases(_Strict):
    """The cases of a batch past RECORD_MAX_CASES: their inputs and predictions are not in the
    record (the client had them in its answer), their number and labels are."""

    cases: int = Field(ge=1)
    labels: dict[Literal["malignant", "benign"], int] | None = None


class Ml(_Strict):
    model: Model
    batch_size: int = Field(ge=1, description="cases in the request, recorded or not")
    input: dict[str, float] | list[dict[str, float]]
    prediction: PredictionOutcome | list[PredictionOutcome] | None = None
    probabilities: dict[str, float] | None = None
    omitted: OmittedCases | None = None
    profile: Profile


class RequestRecord(_Strict):
    timestamp: dt.datetime = Field(alias="@timestamp")
    schema_: str = Field(SCHEMA, alias="schema")
    log: Log
    message: str
    transaction: Transaction
    service: Service
    host: Host
    http: Http
    url: Url
    client: Client
    user_agent: UserAgent
    event: Event
    error: Error | None = None
    ml: Ml | None = None

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)
