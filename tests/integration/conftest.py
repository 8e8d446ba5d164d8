"""One real local stack per test session, and one gateway + worker on private topics."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import trustme
from opensearchpy import OpenSearch

from pipeline.config.settings import Settings
from pipeline.local.run import free_port, start_component, stop_components, wait_until
from pipeline.local.stack import stack_up

DECISION_WAIT = 3.0


@pytest.fixture(scope="session")
def stack() -> Settings:
    """The local stack (started if needed; left running for the next session)."""
    settings = Settings()
    stack_up(settings, progress=False)
    return settings


@pytest.fixture(scope="session")
def pipeline_settings(stack: Settings, tmp_path_factory) -> Iterator[Settings]:
    """A gateway and a worker on topics of their own, with a short decision_wait."""
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("spansieve"),
        topic_prefix=f"it-{uuid.uuid4().hex[:8]}",
        partitions=4,
        decision_wait=DECISION_WAIT,
        sampling_percentage=0.0,
        gateway_http_port=free_port(),
        gateway_grpc_port=free_port(),
        gateway_metrics_port=free_port(),
        worker_web_port=free_port(),
    )
    children = [start_component("gateway", settings), start_component("worker", settings)]
    try:
        health = f"http://127.0.0.1:{settings.gateway_metrics_port}/healthz"
        worker = f"http://127.0.0.1:{settings.worker_web_port}/metrics"
        assert wait_until(lambda: httpx.get(health).status_code == 200, "gateway", 60)
        assert wait_until(lambda: httpx.get(worker).status_code == 200, "worker", 120)
        yield settings
    finally:
        stop_components(children)


@contextmanager
def running_gateway(base: Settings, **overrides) -> Iterator[Settings]:
    """A gateway process with its own ports (and any other settings changed)."""
    settings = base.model_copy(
        update={
            "gateway_http_port": free_port(),
            "gateway_grpc_port": free_port(),
            "gateway_metrics_port": free_port(),
            **overrides,
        }
    )
    child = start_component("gateway", settings)
    try:
        health = f"http://127.0.0.1:{settings.gateway_metrics_port}/readyz"
        if not wait_until(lambda: httpx.get(health).status_code == 200, "gateway", 60):
            raise RuntimeError(f"gateway did not get ready; see {settings.state_dir}/logs")
        yield settings
    finally:
        stop_components([child])


@contextmanager
def running_query(
    settings: Settings, timeout: float = 30, verify: ssl.SSLContext | bool = True
) -> Iterator[httpx.Client]:
    """A `spansieve query` process on ``settings.query_port``, and a client of it (over
    TLS when the settings name a certificate; ``verify`` then trusts its CA)."""
    child = start_component("query", settings)
    scheme = "https" if settings.query_tls_cert else "http"
    base = f"{scheme}://127.0.0.1:{settings.query_port}"
    try:
        ready = wait_until(
            lambda: httpx.get(f"{base}/healthz", verify=verify).status_code == 200, "query", 60
        )
        assert ready, f"query server did not start; see {settings.state_dir}/logs/query.log"
        with httpx.Client(base_url=base, timeout=timeout, verify=verify) as client:
            yield client
    finally:
        stop_components([child])


@pytest.fixture(scope="session")
def opensearch(stack: Settings) -> OpenSearch:
    return OpenSearch(hosts=[stack.opensearch_url])


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A CA made for the session, a server certificate for 127.0.0.1 and a client one."""
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client.example")
    files = {
        "ca": folder / "ca.pem",
        "cert": folder / "server.pem",
        "key": folder / "server.key",
        "client_cert": folder / "client.pem",
        "client_key": folder / "client.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    client.cert_chain_pems[0].write_to_path(str(files["client_cert"]))
    client.private_key_pem.write_to_path(str(files["client_key"]))
    return files


def trusting(pki: dict[str, Path]) -> ssl.SSLContext:
    """A client TLS context that trusts the session's CA."""
    return ssl.create_default_context(cafile=pki["ca"])
