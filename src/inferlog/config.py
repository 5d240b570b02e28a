"""All configuration, in one settings object read from the environment and `.env`.

Every field is documented in `.env.example` and in the README's configuration table; a test
checks that the three agree.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    service_name: str = Field("inferlog-api", description="service.name in records and logs")
    api_host: str = Field("127.0.0.1", description="address the API binds to")
    api_port: int = Field(8000, ge=1, le=65535, description="port the API listens on")
    model_dir: Path = Field(Path("model"), description="directory of the model artifact and card")
    max_batch_size: int = Field(1000, ge=1, description="most cases in one batch request")
    max_body_bytes: int = Field(
        4_000_000, ge=1024, description="largest request body accepted, in bytes (else 413)"
    )
    top_features: int = Field(
        5, ge=1, le=30, description="contributing features returned per prediction"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="level of the service's own logs"
    )


@cache
def get_settings() -> Settings:
    return Settings()
