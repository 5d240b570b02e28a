"""The OpenAPI document as this server is configured.

FastAPI declares a security scheme on every route that reads `X-API-Key`, which OpenAPI reads
as required. Under the settings, the prediction routes need no key unless
`REQUIRE_API_KEY=true`, and the read routes none while no key is configured: those operations
list "no key" (an empty security requirement) as the alternative it is. A batch's largest
size is `MAX_BATCH_SIZE`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from inferlog.api.security import key_is_optional
from inferlog.config import Settings


def _calls(dependant: Dependant) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def openapi_document(
    app: FastAPI, settings: Settings, routes: Iterable[BaseRoute]
) -> dict[str, Any]:
    """`routes`: the API's (`app.api_routes()`)."""
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    for route in routes:
        if not (isinstance(route, APIRoute) and route.include_in_schema):
            continue
        if not key_is_optional(set(_calls(route.dependant)), settings):
            continue
        for method in route.methods or ():
            operation = document["paths"][route.path_format][method.lower()]
            if "security" in operation:
                operation["security"] = [*operation["security"], {}]
    batch = document["paths"]["/predict/batch"]["post"]["requestBody"]["content"]
    for body in batch.values():
        body["schema"]["maxItems"] = settings.max_batch_size
    return document
