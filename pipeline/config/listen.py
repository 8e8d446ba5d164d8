"""Where a server listens and how it protects that port: the rules the gateway and the
query server share.

A server on a loopback address is reachable only from this machine. Beyond loopback it
must authenticate its clients and speak TLS, unless the operator says otherwise with an
``*_allow_insecure`` setting (then it logs a warning at start-up).
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class ExposureError(ValueError):
    """A server's listening settings are unsafe or inconsistent; the message says which."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(
    server: str,
    host: str,
    *,
    authentication: str,
    authenticated: bool,
    cert: Path | None,
    key: Path | None,
    allow_insecure: bool,
) -> None:
    """Refuse a listener beyond loopback without authentication and TLS unless
    ``{server}_allow_insecure`` is set; refuse a certificate without its key (or the
    reverse) always. ``authentication`` names what would authenticate (for the message)."""
    prefix = server.upper()
    if (cert is None) != (key is None):
        raise ExposureError(f"set both SPANSIEVE_{prefix}_TLS_CERT and _TLS_KEY, or neither")
    tls = cert is not None
    if is_loopback(host) or (authenticated and tls):
        return
    if not allow_insecure:
        missing = " and ".join(
            what for what, ok in ((authentication, authenticated), ("TLS", tls)) if not ok
        )
        raise ExposureError(
            f"{server}_host={host} is not loopback and {missing} "
            f"are not configured; configure them or pass --{server}-allow-insecure true"
        )
    log.warning(
        f"{server} exposed without full protection",
        host=host,
        authenticated=authenticated,
        tls=tls,
    )


def uvicorn_tls(cert: Path | None, key: Path | None, client_ca: Path | None) -> dict[str, Any]:
    """uvicorn's TLS arguments: none without a certificate; with ``client_ca``, clients
    must present a certificate signed by it (mutual TLS)."""
    if cert is None:
        return {}
    options: dict[str, Any] = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    if client_ca is not None:
        options["ssl_ca_certs"] = str(client_ca)
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return options
