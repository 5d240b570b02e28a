"""API keys: admin endpoints always need one; prediction routes only with REQUIRE_API_KEY."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Security
from fastapi.security import APIKeyHeader

from inferlog.api.dependencies import SettingsDep
from inferlog.config import Settings

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
ApiKey = Annotated[str | None, Security(api_key_header)]


def _check(provided: str | None, settings: Settings) -> None:
    if not provided:
        raise HTTPException(401, "missing X-API-Key header", headers={"WWW-Authenticate": "ApiKey"})
    # Compare with every key, in constant time, so timing tells nothing about which is close.
    matches = [
        hmac.compare_digest(provided.encode(), key.get_secret_value().encode())
        for key in settings.api_keys
    ]
    if not any(matches):
        raise HTTPException(403, "invalid API key")


async def require_admin(provided: ApiKey, settings: SettingsDep) -> None:
    _check(provided, settings)


async def require_client_key(provided: ApiKey, settings: SettingsDep) -> None:
    if settings.require_api_key:
        _check(provided, settings)


AdminOnly = Depends(require_admin)
ClientKey = Depends(require_client_key)
