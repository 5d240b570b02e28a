"""`make secrets`: the passwords in `.env`, as the files docker-compose.yml mounts as secrets.

Compose reads `.env` itself for the variables it interpolates (Elasticsearch's and Kibana's
passwords); the secret files must hold the same values. python-dotenv reads `.env` with the
same rules (quotes, `#` comments, CRLF line ends), so a quoted password is the same password
in both. The directory is its owner's only (0700); its files are 0644, since the containers'
own non-root users read them through a bind mount.
"""

from __future__ import annotations

import re
from pathlib import Path

from dotenv import dotenv_values

from inferlog.private_files import private_dir

SECRET_VARIABLES = (
    "REDIS_PASSWORD",
    "ELASTIC_PASSWORD",
    "KIBANA_PASSWORD",
    "PIPELINE_ELASTICSEARCH_PASSWORD",
)
# It goes into the apps' REDIS_URL and into Redis's own configuration line, unescaped.
REDIS_PASSWORD = re.compile(r"[A-Za-z0-9._~-]+")


class SecretsError(ValueError):
    """What to fix in `.env`; safe to show (no value in it)."""


def secret_files(env_file: Path) -> dict[str, str]:
    """File name -> content: one file per password, and the apps' REDIS_URL."""
    if not env_file.is_file():
        raise SecretsError(f"no {env_file}: copy .env.example to it and set its passwords")
    values = dotenv_values(env_file)
    missing = [name for name in SECRET_VARIABLES if not values.get(name)]
    if missing:
        raise SecretsError(f"set {', '.join(missing)} in {env_file}")
    files = {name.lower(): str(values[name]) for name in SECRET_VARIABLES}
    if not REDIS_PASSWORD.fullmatch(files["redis_password"]):
        raise SecretsError("REDIS_PASSWORD may hold letters, digits and . _ ~ - only")
    files["redis_url"] = f"redis://:{files['redis_password']}@redis:6379/0"
    return files


def write_secrets(env_file: Path, directory: Path) -> list[Path]:
    written = []
    for name, content in secret_files(env_file).items():
        path = private_dir(directory) / name
        path.write_text(content)
        path.chmod(0o644)
        written.append(path)
    return written
