"""One JSON error shape for every failure: 4xx name the field and the reason.

Unexpected exceptions are answered 500 by the transaction middleware with the same shape and
nothing internal (the traceback goes to the service log, under the transaction id)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from inferlog.api.schemas import ErrorResponse, FieldError
from inferlog.bounded_text import shortened

_REASONS = {
    "missing": "missing field",
    "extra_forbidden": "unknown field",
    "finite_number": "not a finite number",
    "float_type": "not a number",
}


class BodyTooLargeError(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")


class InputError(Exception):
    """Invalid input found by a route itself (CSV rows, batch limits): answered 422.
    `errors` may be the first of `total` problems: the rest are counted, not described."""

    def __init__(self, errors: list[FieldError], total: int | None = None) -> None:
        self.total = len(errors) if total is None else total
        super().__init__(f"{self.total} invalid field(s)")
        self.errors = errors


# An answer's cost is bounded whatever the input: a header of two million unknown columns or
# a key of megabytes gives a short answer, not every problem in full.
LISTED_ERRORS = 50

# The error answers a route can give, for its OpenAPI document (all in the ErrorResponse shape).
_ERROR_DESCRIPTIONS = {
    401: "no X-API-Key header, where this server needs a key",
    403: "an X-API-Key that is not a key of the role this route needs",
    404: "no such record in the live window",
    413: "body too large: over 16 KiB for one case, MAX_BODY_BYTES for a batch",
    415: "neither JSON nor CSV",
    422: "invalid input, every bad field named",
    503: "Redis is unreachable, or the reader process stopped; try again",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {
        code: {"model": ErrorResponse, "description": _ERROR_DESCRIPTIONS[code]} for code in codes
    }


TEXT_CHARS = 256


def error_response(
    scope: Scope,
    status: int,
    code: str,
    message: str,
    errors: list[FieldError] | None = None,
    total: int | None = None,
) -> JSONResponse:
    state = scope.setdefault("state", {})
    errors = errors or []
    total = len(errors) if total is None else total
    body = ErrorResponse(
        error=code,
        message=shortened(message, 4 * TEXT_CHARS),
        transaction_id=state.get("transaction_id"),
        errors=[
            e.model_copy(
                update={
                    "field": shortened(e.field, TEXT_CHARS),
                    "reason": shortened(e.reason, TEXT_CHARS),
                }
            )
            for e in errors[:LISTED_ERRORS]
        ],
        omitted=max(0, total - min(len(errors), LISTED_ERRORS)),
    )
    # For the request record; the 500 path sets the exception type itself.
    state.setdefault("error", {"type": code, "message": body.message})
    return JSONResponse(body.model_dump(mode="json"), status_code=status)


def field_errors(raw: Sequence[Any], index: int | None = None) -> list[FieldError]:
    """Pydantic / FastAPI error dicts -> `FieldError`s (location prefix and batch index split;
    `index`: the case's, for the errors of one case validated on its own)."""
    errors = []
    for e in raw[:LISTED_ERRORS]:  # the rest are counted, not described
        loc = [part for part in e.get("loc", ()) if part not in ("body", "query", "path")]
        case = loc.pop(0) if loc and isinstance(loc[0], int) else index
        field = ".".join(str(part) for part in loc) or "body"
        kind = e.get("type", "")
        if kind == "json_invalid":
            detail = e.get("ctx", {}).get("error", "malformed")
            reason = f"invalid JSON: {detail}"
            case = None
        elif kind == "greater_than_equal":
            reason = f"impossible value: must be at least {e['ctx']['ge']}"
        elif kind == "less_than_equal":
            reason = f"implausible value: must be at most {e['ctx']['le']}"
        else:
            reason = _REASONS.get(kind, str(e.get("msg", "invalid value")))
        errors.append(FieldError(field=field, reason=reason, index=case))
    return errors


def _validation_message(errors: list[FieldError], total: int) -> str:
    fields = sorted({e.field for e in errors})
    shown = ", ".join(shortened(f, 64) for f in fields[:5])
    shown += " and more" if len(fields) > 5 or total > len(errors) else ""
    return f"{total} invalid field(s): {shown}"


def install_error_handlers(
    app: FastAPI, methods_of: Callable[[str], Iterable[str]] | None = None
) -> None:
    """`methods_of(path)`: every method the API serves at a path, for a 405's `Allow` (the
    router names only the first route that matched the path: `GET`, where `/logs` also takes
    `DELETE`)."""

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        raw = exc.errors()
        errors = field_errors(raw)
        message = _validation_message(errors, len(raw))
        return error_response(request.scope, 422, "validation_error", message, errors, len(raw))

    @app.exception_handler(InputError)
    async def on_input(request: Request, exc: InputError) -> JSONResponse:
        message = _validation_message(exc.errors, exc.total)
        return error_response(
            request.scope, 422, "validation_error", message, exc.errors, exc.total
        )

    @app.exception_handler(BodyTooLargeError)
    async def on_too_large(request: Request, exc: BodyTooLargeError) -> JSONResponse:
        return error_response(request.scope, 413, "body_too_large", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        phrase = HTTPStatus(exc.status_code).phrase
        code = phrase.lower().replace(" ", "_").replace("-", "_")
        message = exc.detail if isinstance(exc.detail, str) else phrase
        response = error_response(request.scope, exc.status_code, code, message)
        if exc.headers:
            response.headers.update(exc.headers)
        if exc.status_code == 405 and methods_of is not None:
            allowed = sorted(methods_of(request.url.path))
            if allowed:  # else the router's own (the app's routes)
                response.headers["Allow"] = ", ".join(allowed)
        return response
