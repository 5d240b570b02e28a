"""All configuration, in one settings object read from the environment, `.env` and secret files.

Every field is documented in `.env.example` and in the README's configuration table; a test
checks that the three agree. Where `/run/secrets` exists (Docker's secrets), a file there named
after a field (`redis_url`, `elasticsearch_password`...) gives its value, after the
environment and `.env`: passwords stay out of `docker inspect`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

SECRETS_DIR = Path("/run/secrets")


class Settings(BaseSettings):
    # Empty values (as in a copied .env.example) mean "use the default".
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, env_ignore_empty=True
    )

    service_name: str = Field("inferlog-api", description="service.name in records and logs")
    api_host: str = Field("127.0.0.1", description="address the API binds to")
    api_port: int = Field(8000, ge=1, le=65535, description="port the API listens on")
    api_workers: int = Field(
        1, ge=1, le=64, description="API worker processes (each with its own spool file)"
    )
    api_header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="a request's headers must arrive within this (else the connection is "
        "closed: half-sent requests cannot hold sockets)",
    )
    api_max_header_bytes: int = Field(
        32_768,
        ge=1024,
        description="largest request head (request line and headers) accepted, in bytes; "
        "larger ones get 431 and the connection is closed",
    )
    api_keep_alive_seconds: int = Field(
        5, ge=1, description="an idle kept-alive connection is closed after this"
    )
    api_max_connections: int = Field(
        1000,
        ge=10,
        description="open connections per worker beyond which a new request is answered 503 "
        "at once (memory and file descriptors stay bounded)",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated host names the API answers to (the Host header; others "
        "get a 400, against DNS rebinding); unset: localhost, 127.0.0.1, ::1 and API_HOST",
    )
    forwarded_allow_ips: str = Field(
        "",
        description="proxies whose X-Forwarded-For / X-Forwarded-Proto are trusted (comma-"
        "separated IPs or networks, * for any); empty: none, the client is the peer address",
    )
    model_dir: Path = Field(Path("model"), description="directory of the model artifact and card")
    max_batch_size: int = Field(1000, ge=1, description="most cases in one batch request")
    record_max_cases: int = Field(
        20,
        ge=1,
        le=1000,
        description="most cases of a batch whose inputs and predictions its record keeps; the "
        "rest are counted (ml.omitted), so a record stays under ~25 KB",
    )
    max_body_bytes: int = Field(
        2_000_000,
        ge=1024,
        description="largest batch body accepted, in bytes (else 413); 1000 cases are ~0.8 MB "
        "of JSON. One case (/predict, /predict_proba): 16 KiB",
    )
    top_features: int = Field(
        5, ge=1, le=30, description="contributing features returned per prediction"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="level of the service's own logs"
    )

    # The UI: its own process, a client of the API over HTTP.
    api_url: str = Field(
        "http://127.0.0.1:8000",
        description="the API, as the UI and `simulate` reach it; unset: 127.0.0.1 on API_PORT",
    )
    ui_host: str = Field("127.0.0.1", description="address the UI binds to")
    ui_port: int = Field(7860, ge=1, le=65535, description="port the UI listens on")

    # Telemetry: profiling, request records, shipping to Redis.
    telemetry_enabled: bool = Field(
        True, description="record every request and ship it to Redis (false: no records at all)"
    )
    profiling_enabled: bool = Field(True, description="profile inferences with cProfile")
    profiling_sample_rate: float = Field(
        1.0, ge=0.0, le=1.0, description="share of inferences profiled (0.0 to 1.0)"
    )
    profiling_top_n: int = Field(
        10,
        ge=1,
        le=200,
        description="functions kept per profile: the top N by cumulative time, then the top N "
        "by self time not among them",
    )
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="Redis connection URL (a password goes in the URL; the redis-server "
        "`make run` starts then requires it)",
    )
    redis_stream: str = Field("inferlog:requests", description="stream key of the records")
    redis_group: str = Field("logs-pipeline", description="consumer group of the logs pipeline")
    stream_max_len: int = Field(
        200_000,
        ge=1000,
        description="hard cap on the stream length: ~720 MB of single-case records (~3.6 KB "
        "each), inside the default REDIS_MAXMEMORY",
    )
    redis_maxmemory: str = Field(
        "1gb",
        pattern=r"^[0-9]+([kKmMgG][bB]?)?$",
        description="memory budget of the redis-server `make run` starts (compose: the same "
        "variable); noeviction: a full Redis refuses XADD and the API spools",
    )
    live_window_seconds: int = Field(
        3600, ge=60, description="how far back /logs, /logs/stats and /drift look"
    )
    scan_max_records: int = Field(
        10_000,
        ge=100,
        description="most records a filtered /logs or /drift reads from the window (in the "
        "API's reader process)",
    )
    scan_max_bytes: int = Field(
        40_000_000,
        ge=10_000,
        description="most bytes of records a filtered /logs or /drift reads from the window "
        "(checked per record; 40 MB is 10,000 one-case records, 1,900 of the largest)",
    )
    drift_min_cases: int = Field(
        50, ge=10, description="fewest cases /drift and drift-report give a verdict on"
    )
    drift_max_cases: int = Field(
        2000,
        ge=100,
        description="most cases /drift compares, the newest first: against the 455 training "
        "cases more change the tests little (the effective sample size n*m/(n+m) is 370 at "
        "2000, 417 at 5000), and each costs its record's read",
    )
    data_dir: Path = Field(Path("data"), description="local data: the spool, NDJSON indices")
    shipper_batch_size: int = Field(200, ge=1, description="records per Redis pipeline")
    shipper_queue_size: int = Field(
        10_000, ge=1, description="records held in memory while the spool refuses writes"
    )
    spool_max_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024,
        description="size limit of each API process's spool files; beyond it records wait in "
        "memory, then are dropped and counted",
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="comma-separated admin keys (X-API-Key): every route, DELETE /logs included",
    )
    api_read_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="comma-separated read keys: /logs, /logs/stats, /drift (and predictions)",
    )
    require_api_key: bool = Field(
        False,
        description="require a key on the prediction and read routes even with no key set "
        "(needs API_KEYS or API_READ_KEYS)",
    )
    ui_api_key: SecretStr | None = Field(
        None, description="the key the UI sends to the API (a read key is enough)"
    )

    # Logs pipeline: Redis Stream -> Elasticsearch (or NDJSON files when no URL is set).
    elasticsearch_url: str | None = Field(
        None, description="Elasticsearch URL; unset: the pipeline writes NDJSON under DATA_DIR"
    )
    elasticsearch_username: str | None = Field(None, description="basic-auth user")
    elasticsearch_password: SecretStr | None = Field(None, description="basic-auth password")
    pipeline_elasticsearch_password: SecretStr | None = Field(
        None,
        description="when set, `setup` creates the role and user `inferlog-pipeline` (write "
        "the ml-api-* indices, nothing else) with this password, for the long-running pipeline",
    )
    elasticsearch_api_key: SecretStr | None = Field(None, description="API key (instead of basic)")
    elasticsearch_ca_certs: Path | None = Field(None, description="CA bundle for TLS")
    index_logs: str = Field("ml-api-logs", description="index of every request record")
    index_message: str = Field("ml-api-message", description="index of predicted cases")
    index_perfs: str = Field("ml-api-perfs", description="index of profiled requests")
    index_dead_letters: str = Field(
        "ml-api-dead-letters", description="index of records that can never be indexed"
    )
    pipeline_batch_size: int = Field(500, ge=1, description="stream entries per XREADGROUP")
    pipeline_block_ms: int = Field(1000, ge=1, description="how long XREADGROUP waits")
    pipeline_claim_idle_ms: int = Field(
        60_000, ge=1000, description="pending this long: claimed from a dead consumer"
    )
    retention_days: int = Field(
        30,
        ge=0,
        description="days the indices keep documents (an ILM policy `setup` installs: daily "
        "rollover, delete after this many days); 0: no policy (servers without ILM)",
    )
    pipeline_max_deliveries: int = Field(
        10,
        ge=2,
        description="an entry delivered more often than this without being acknowledged (a "
        "consumer crashing on it; also a pipeline stopped while the sink was down) goes to the "
        "dead letters, original kept",
    )
    pipeline_progress_seconds: float = Field(
        10.0, gt=0, description="interval of the `run` progress log line"
    )
    pipeline_rules: str | None = Field(
        None,
        description="JSON filter rules for ml-api-message / ml-api-perfs (see logs_pipeline/"
        "filter.py); unset: successful POSTs to the prediction routes",
    )

    kibana_url: str | None = Field(
        None,
        description="Kibana: `logs_pipeline setup` imports the saved objects there, and the UI "
        "links a request to Discover there (so for the UI: the address a browser opens)",
    )
    kibana_system_password: SecretStr | None = Field(
        None, description="when set, `setup` gives the kibana_system user this password"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Secret files only where the directory exists (pydantic-settings warns otherwise).
        sources: tuple[PydanticBaseSettingsSource, ...] = (
            init_settings,
            env_settings,
            dotenv_settings,
        )
        if SECRETS_DIR.is_dir():
            sources += (SecretsSettingsSource(settings_cls, secrets_dir=SECRETS_DIR),)
        return sources

    @field_validator("api_keys", "api_read_keys", "allowed_hosts", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @model_validator(mode="before")
    @classmethod
    def _local_hosts_by_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("allowed_hosts"):
            bind = str(data.get("api_host") or "127.0.0.1")
            hosts = ["localhost", "127.0.0.1", "::1"]
            # A wildcard address names no host (compared with, not bound to).
            if bind not in ("0.0.0.0", "::", *hosts):  # noqa: S104
                hosts.append(bind)
            data = {**data, "allowed_hosts": hosts}
        return data

    @model_validator(mode="before")
    @classmethod
    def _api_url_follows_api_port(cls, data: Any) -> Any:
        # `API_PORT=8100 make ui` (or `make simulate`) reaches the API started on that port.
        if isinstance(data, dict) and not data.get("api_url") and data.get("api_port"):
            data = {**data, "api_url": f"http://127.0.0.1:{data['api_port']}"}
        return data

    @model_validator(mode="after")
    def _keys_if_required(self) -> Settings:
        if self.require_api_key and not (self.api_keys or self.api_read_keys):
            raise ValueError("REQUIRE_API_KEY=true needs a key in API_KEYS or API_READ_KEYS")
        return self

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def indices_dir(self) -> Path:
        return self.data_dir / "indices"


@cache
def get_settings() -> Settings:
    return Settings()
