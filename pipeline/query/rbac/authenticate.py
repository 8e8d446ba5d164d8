"""A request's principal: from a bearer token, or from a reverse proxy's headers.

* ``Authorization: Bearer <token>``: the tokens file says who it is and which roles it
  holds.
* Single sign-on: a proxy in front of the server authenticates people and passes the
  user and groups in headers (``X-Forwarded-User``, ``X-Forwarded-Groups``, comma
  separated, by default). Anyone could send those headers, so they count only on a
  connection from one of ``query_trusted_proxies``; from any other address they are
  ignored, counted and logged.
* Neither: the ``anonymous`` roles of the roles file, if it names any; otherwise no one
  (the guard answers 401).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import structlog
from prometheus_client import Counter

from pipeline.config.settings import Settings
from pipeline.query.rbac.access import Access
from pipeline.query.rbac.roles import RolesFile, TokenEntry, load_roles, load_tokens, token_digest

log = structlog.get_logger(__name__)

AUTH_FAILURES = Counter(
    "spansieve_query_auth_failures_total",
    "Query requests whose credentials were missing or not accepted, by reason "
    "(missing, bad_token, bad_scheme, untrusted_proxy)",
    ["reason"],
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> list[Network]:
    """Comma-separated addresses or CIDR blocks (``10.0.0.0/8, 127.0.0.1``)."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"query_trusted_proxies: {item!r} is not an IP address or CIDR block"
            ) from None
    return networks


@dataclass(frozen=True)
class Outcome:
    """The principal's access, or why there is none (``problem`` for the 401 message)."""

    access: Access | None
    problem: str = ""


class Authenticator:
    """Turns a request's credentials into an ``Access``."""

    def __init__(
        self,
        roles: RolesFile,
        tokens: Mapping[bytes, TokenEntry],
        trusted_proxies: Iterable[Network] = (),
        user_header: str = "X-Forwarded-User",
        groups_header: str = "X-Forwarded-Groups",
    ) -> None:
        self.roles = roles
        self.tokens = dict(tokens)
        self.trusted = list(trusted_proxies)
        self.user_header = user_header.lower()
        self.groups_header = groups_header.lower()
        self._by_user: dict[str, list[str]] = {}
        self._by_group: dict[str, list[str]] = {}
        for name, role in roles.roles.items():
            for user in role.users:
                self._by_user.setdefault(user, []).append(name)
            for group in role.groups:
                self._by_group.setdefault(group, []).append(name)
        # Token principals and the anonymous one are fixed: built once, reused per request.
        self._token_access = {
            digest: Access.of_roles(entry.name, entry.roles, roles.roles)
            for digest, entry in tokens.items()
        }
        self._anonymous = (
            Access.of_roles("anonymous", roles.anonymous, roles.roles) if roles.anonymous else None
        )

    def _trusted(self, host: str | None) -> bool:
        if not host or not self.trusted:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    def _proxy_user(self, user: str, groups: str) -> Access:
        names = list(self._by_user.get(user, ()))
        for group in (g.strip() for g in groups.split(",")):
            names.extend(self._by_group.get(group, ()))
        return Access.of_roles(user, names, self.roles.roles)

    def authenticate(self, headers: Mapping[str, str], client_host: str | None) -> Outcome:
        """``headers`` with lower-case names (Starlette's ``Headers`` are)."""
        authorization = headers.get("authorization")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer":
                AUTH_FAILURES.labels("bad_scheme").inc()
                return Outcome(None, f"unsupported authorization scheme {scheme!r}; use Bearer")
            access = self._token_access.get(token_digest(token.strip()))
            if access is None:
                AUTH_FAILURES.labels("bad_token").inc()
                return Outcome(None, "the bearer token is not valid")
            return Outcome(access)
        user = headers.get(self.user_header)
        if user:
            if self._trusted(client_host):
                return Outcome(self._proxy_user(user.strip(), headers.get(self.groups_header, "")))
            AUTH_FAILURES.labels("untrusted_proxy").inc()
            log.warning(
                "proxy user header from an untrusted address ignored",
                client=client_host,
                header=self.user_header,
            )
        if self._anonymous is not None:
            return Outcome(self._anonymous)
        AUTH_FAILURES.labels("missing").inc()
        return Outcome(None, "credentials required: send Authorization: Bearer <token>")


def authenticator(settings: Settings) -> Authenticator | None:
    """The query server's authenticator; None (RBAC off) without ``query_roles``. A
    tokens file or trusted proxies without roles is a mistake, refused with a ValueError."""
    if settings.query_roles is None:
        if settings.query_tokens_file is not None or settings.query_trusted_proxies.strip():
            raise ValueError(
                "query_tokens_file and query_trusted_proxies need query_roles (the roles "
                "YAML that says what each principal may see)"
            )
        return None
    roles = load_roles(settings.query_roles)
    tokens = (
        load_tokens(settings.query_tokens_file, set(roles.roles))
        if settings.query_tokens_file is not None
        else {}
    )
    return Authenticator(
        roles,
        tokens,
        parse_networks(settings.query_trusted_proxies),
        settings.query_proxy_user_header,
        settings.query_proxy_groups_header,
    )
