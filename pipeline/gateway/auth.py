"""API-key authentication for the gateway, with an optional service allow-list per key.

Keys come from SPANSIEVE_GATEWAY_API_KEYS (comma-separated) and/or a file with one key per
line, optionally followed by the service names that key may send
(``KEY frontend,checkout``). Presented keys are compared with every known key in constant
time, so response timing tells nothing about how much of a key was right.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path


class AuthConfigError(ValueError):
    """The API key file cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Principal:
    """Who sent a request: which key (by position) and which services it may send."""

    key_index: int
    allowed_services: frozenset[str] | None  # None: any service


def load_api_keys(inline: str, path: Path | None) -> list[tuple[bytes, frozenset[str] | None]]:
    keys: list[tuple[bytes, frozenset[str] | None]] = [
        (key.strip().encode(), None) for key in inline.split(",") if key.strip()
    ]
    if path is not None:
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise AuthConfigError(f"{path}: cannot read API key file: {exc}") from None
        for number, line in enumerate(lines, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            parts = text.split()
            if len(parts) > 2:
                raise AuthConfigError(
                    f"{path}:{number}: expected 'KEY' or 'KEY service1,service2', got {text!r}"
                )
            services = frozenset(s for s in parts[1].split(",") if s) if len(parts) == 2 else None
            keys.append((parts[0].encode(), services))
    return keys


class ApiKeyAuth:
    """Checks presented keys; disabled (everyone allowed) when no key is configured."""

    def __init__(self, keys: list[tuple[bytes, frozenset[str] | None]]) -> None:
        self._keys = keys

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def authenticate(self, authorization: str | None, api_key: str | None) -> Principal | None:
        """The principal for the request's credentials, or None when they are missing/wrong."""
        if not self._keys:
            return Principal(-1, None)
        presented = api_key
        if presented is None and authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer":
                presented = value.strip()
        if not presented:
            return None
        candidate = presented.encode()
        found: Principal | None = None
        for index, (key, services) in enumerate(self._keys):
            if hmac.compare_digest(candidate, key) and found is None:
                found = Principal(index, services)
        return found
