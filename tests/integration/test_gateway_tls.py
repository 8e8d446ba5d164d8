"""TLS and mutual TLS on both gateway ports, with certificates from a throwaway CA."""

from __future__ import annotations

import grpc
import httpx
import pytest

from pipeline.config.settings import Settings
from tests.integration.conftest import running_gateway, trusting
from tests.integration.test_gateway import EXPORT_METHOD, PROTOBUF, build_request

pytestmark = pytest.mark.integration


def https_url(settings: Settings) -> str:
    return f"https://127.0.0.1:{settings.gateway_http_port}/v1/traces"


def grpc_export(settings: Settings, credentials: grpc.ChannelCredentials, body: bytes) -> bytes:
    target = f"127.0.0.1:{settings.gateway_grpc_port}"
    with grpc.secure_channel(target, credentials) as channel:
        return channel.unary_unary(EXPORT_METHOD)(body, timeout=10)


def test_tls(pipeline_settings: Settings, pki):
    body = build_request(2).SerializeToString()
    with running_gateway(
        pipeline_settings, gateway_tls_cert=pki["cert"], gateway_tls_key=pki["key"]
    ) as gateway:
        reply = httpx.post(https_url(gateway), content=body, headers=PROTOBUF, verify=trusting(pki))
        assert reply.status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.post(https_url(gateway), content=body, headers=PROTOBUF)  # unknown CA
        credentials = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
        grpc_export(gateway, credentials, body)


def test_mutual_tls(pipeline_settings: Settings, pki):
    body = build_request(2).SerializeToString()
    with running_gateway(
        pipeline_settings,
        gateway_tls_cert=pki["cert"],
        gateway_tls_key=pki["key"],
        gateway_tls_client_ca=pki["ca"],
    ) as gateway:
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            httpx.post(https_url(gateway), content=body, headers=PROTOBUF, verify=trusting(pki))
        with_client_cert = trusting(pki)
        with_client_cert.load_cert_chain(pki["client_cert"], pki["client_key"])
        with httpx.Client(verify=with_client_cert) as session:
            assert (
                session.post(https_url(gateway), content=body, headers=PROTOBUF).status_code == 200
            )

        ca = pki["ca"].read_bytes()
        with pytest.raises(grpc.RpcError) as refused:
            grpc_export(gateway, grpc.ssl_channel_credentials(root_certificates=ca), body)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        mutual = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=pki["client_key"].read_bytes(),
            certificate_chain=pki["client_cert"].read_bytes(),
        )
        grpc_export(gateway, mutual, body)
