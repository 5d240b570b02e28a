"""API keys, in two roles.

- `API_KEYS`: admin keys. Everything, `DELETE /logs` included, which needs one always.
- `API_READ_KEYS`: read keys. The read routes (`/logs`, `/logs/{id}`, `/logs/stats`, `/drift`:
  they return every request's inputs) and, with `REQUIRE_API_KEY=true`, the prediction routes.

Read routes need a key (either role) as soon as any key is configured or `REQUIRE_API_KEY=true`;
with no key configured and `REQUIRE_API_KEY=false` (the local demo) they are open. `/health`,
`/ready`, `/model-info`, `/metrics` and `/docs` stay open: they hold no inputs.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Security
from fastapi.security import APIKeyHeader
from pydantic import SecretStr

from inferlog.api.dependencies import SettingsDep
from inferlog.config import Settings

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
ApiKey = Annotated[str | None, Security(api_key_header)]


def _check(provided: str | None, keys: Iterable[SecretStr], role: str) -> None:
    if not provided:
        raise HTTPException(401, "missing X-API-Key header", headers={"WWW-Authenticate": "ApiKey"})
    # Compare with every key, in constant time, so timing tells nothing about which is close.
    matches = [
        hmac.compare_digest(provided.encode(), key.get_secret_value().encode()) for key in keys
    ]
    if not any(matches):
        raise HTTPException(403, f"this X-API-Key is not a valid {role} key")


def _any_key(settings: Settings) -> list[SecretStr]:
    return [*settings.api_keys, *settings.api_read_keys]


async def require_admin(provided: ApiKey, settings: SettingsDep) -> None:
    if not settings.api_keys:
        raise HTTPException(403, "no admin key is configured on this server (set API_KEYS)")
    _check(provided, settings.api_keys, "admin")


def read_key_needed(settings: Settings) -> bool:
    return bool(_any_key(settings)) or settings.require_api_key


def client_key_needed(settings: Settings) -> bool:
    return settings.require_api_key


async def require_read_key(provided: ApiKey, settings: SettingsDep) -> None:
    if read_key_needed(settings):
        _check(provided, _any_key(settings), "read or admin")


async def require_client_key(provided: ApiKey, settings: SettingsDep) -> None:
    if client_key_needed(settings):
        _check(provided, _any_key(settings), "read or admin")


def key_is_optional(dependencies: set[Any], settings: Settings) -> bool:
    """Whether a route with these dependencies answers without a key under `settings` (for
    its OpenAPI document: the same rules as the dependencies above)."""
    if require_admin in dependencies:
        return False
    if require_read_key in dependencies:
        return not read_key_needed(settings)
    return not client_key_needed(settings)


AdminOnly = Depends(require_admin)
ReadKey = Depends(require_read_key)
ClientKey = Depends(require_client_key)
