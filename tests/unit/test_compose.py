"""docker-compose.kafka.yml stays in step with pipeline/config/settings.py and the local stack.

Docker cannot run here, so these tests read the YAML only: the variables it sets must be
real settings, it must publish the same ports as the Docker-free stack (on 127.0.0.1
only), and the infrastructure images must be the ones the README promises.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config.settings import Settings

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.kafka.yml"
PROJECT_SERVICES = ("gateway", "worker", "query")
INFRA_SERVICES = ("kafka", "opensearch", "redis")
ENV_PREFIX = "SPANSIEVE_"

# Which Settings attributes name the host ports each service publishes.
PORT_FIELDS: dict[str, tuple[str, ...]] = {
    "kafka": ("kafka_port",),
    "opensearch": ("opensearch_port",),
    "redis": ("redis_port",),
    "gateway": ("gateway_grpc_port", "gateway_http_port", "gateway_metrics_port"),
    "worker": ("worker_web_port",),
    "query": ("query_port",),
}


@pytest.fixture
def defaults(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings() as shipped: no SPANSIEVE_* variable of the test run leaks in."""
    _clear_spansieve_env(monkeypatch)
    return Settings()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "the compose file must be a YAML mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _clear_spansieve_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whichever of the two compose forms it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def _published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) for every published port of a service."""
    result = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ip = str(entry.get("host_ip", ""))
            host, target = int(entry["published"]), int(entry["target"])
        else:
            spec = str(entry).split("/", 1)[0]
            parts = spec.rsplit(":", 2)
            assert len(parts) == 3, f"port {entry!r} names no host address"
            ip, host, target = parts[0], int(parts[1]), int(parts[2])
        result.append((ip, host, target))
    return result


def _env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def test_the_file_has_the_six_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {*INFRA_SERVICES, *PROJECT_SERVICES}


def test_every_spansieve_variable_is_a_setting(services: dict[str, dict[str, Any]]) -> None:
    known = {_env_name(field) for field in Settings.model_fields}
    named = set(re.findall(r"\bSPANSIEVE_[A-Z0-9_]+", COMPOSE_FILE.read_text(encoding="utf-8")))
    for service in services.values():
        named |= {key for key in _environment(service) if key.upper().startswith(ENV_PREFIX)}
    assert named, "the project services should be configured through SPANSIEVE_* variables"
    assert sorted(named - known) == []


def test_project_services_get_valid_settings(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in PROJECT_SERVICES:
        env = _environment(services[name])
        with monkeypatch.context() as patch:
            _clear_spansieve_env(patch)
            for key, value in env.items():
                patch.setenv(key, value)
            settings = Settings()  # raises if a value does not validate
        assert settings.kafka_bootstrap, name
        assert settings.opensearch_url.startswith("http://opensearch:"), name
        assert settings.redis_url.startswith("redis://redis:"), name


def test_containers_reach_kafka_on_an_advertised_listener(
    services: dict[str, dict[str, Any]],
) -> None:
    kafka_env = _environment(services["kafka"])
    advertised = {
        listener.split("://", 1)[1]
        for listener in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    }
    for name in PROJECT_SERVICES:
        bootstrap = _environment(services[name])["SPANSIEVE_KAFKA_BOOTSTRAP"]
        assert set(bootstrap.split(",")) <= advertised, name


def test_kafka_is_a_single_kraft_node(services: dict[str, dict[str, Any]]) -> None:
    env = _environment(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@")
    listener_names = {item.split("://", 1)[0] for item in env["KAFKA_LISTENERS"].split(",")}
    protocol_map = dict(
        item.split(":", 1) for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listener_names
    assert listener_names <= set(protocol_map)
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR",
    ):
        assert env[key] == "1", key


def test_published_ports_match_the_settings_defaults(
    services: dict[str, dict[str, Any]], defaults: Settings
) -> None:
    for name, fields in PORT_FIELDS.items():
        expected = {getattr(defaults, field) for field in fields}
        published = _published(services[name])
        assert {host for _, host, _ in published} == expected, name
        # Same number inside and out, so the services' own defaults hold in containers.
        assert all(host == target for _, host, target in published), name


def test_port_variables_agree_with_the_defaults(
    services: dict[str, dict[str, Any]], defaults: Settings
) -> None:
    for name in PROJECT_SERVICES:
        targets = {target for _, _, target in _published(services[name])}
        for key, value in _environment(services[name]).items():
            if key.startswith(ENV_PREFIX) and key.endswith("_PORT"):
                field = key.removeprefix(ENV_PREFIX).lower()
                assert int(value) == getattr(defaults, field), key
                assert int(value) in targets, f"{name} sets {key} but does not publish it"


def test_every_published_port_binds_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for ip, host, _ in _published(service):
            assert ip == "127.0.0.1", f"{name} publishes {host} on {ip or 'all interfaces'}"


def test_infrastructure_images(services: dict[str, dict[str, Any]]) -> None:
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", services["kafka"]["image"])
    assert re.fullmatch(
        r"opensearchproject/opensearch:\d+\.\d+\.\d+", services["opensearch"]["image"]
    )
    assert re.fullmatch(r"redis(:[\w.-]+)?", services["redis"]["image"])


def test_opensearch_runs_single_node_without_security(
    services: dict[str, dict[str, Any]],
) -> None:
    env = _environment(services["opensearch"])
    assert env["discovery.type"] == "single-node"
    assert env["DISABLE_SECURITY_PLUGIN"] == "true"
    assert env["DISABLE_INSTALL_DEMO_CONFIG"] == "true"
    assert "OPENSEARCH_JAVA_OPTS" in env


def test_project_services_run_the_console_script(services: dict[str, dict[str, Any]]) -> None:
    for name in PROJECT_SERVICES:
        service = services[name]
        assert service.get("build"), f"{name} should be built from the repository"
        command = service["command"]
        words = command.split() if isinstance(command, str) else command
        assert words[:2] == ["spansieve", name]
    assert _environment(services["gateway"])["SPANSIEVE_GATEWAY_HOST"] == "0.0.0.0"


def test_dependencies_wait_for_healthy_services(services: dict[str, dict[str, Any]]) -> None:
    for name in PROJECT_SERVICES:
        depends_on = services[name]["depends_on"]
        assert isinstance(depends_on, dict) and depends_on, name
        for dependency, spec in depends_on.items():
            assert spec["condition"] == "service_healthy", f"{name} -> {dependency}"
            assert "healthcheck" in services[dependency], dependency
