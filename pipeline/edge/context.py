"""Edge hygiene for inbound trace propagation headers.

An application that faces clients it does not control must not let those clients pick its
trace id or its sampling decision.  A forged ``traceparent`` (or B3 header) makes the
OpenTelemetry instrumentation continue a trace the attacker chose, and a set *sampled* flag
makes a parent-based sampler record every such request.

The two middlewares here sit in front of an ASGI or WSGI application, outside of its
OpenTelemetry instrumentation.  For each request a :class:`TrustPolicy` decides whether the
propagation headers may be honoured:

* trusted: the request is passed on untouched;
* untrusted: every propagation header is removed, so the instrumentation starts a new root
  trace and its own sampler decides.  In ``"reroot"`` mode the removed values are handed to
  the application (ASGI ``scope["state"]``, WSGI ``environ``, key
  :data:`UNTRUSTED_CONTEXT_KEY`) as a ``{lower-case header name: value}`` dict, which
  :func:`untrusted_links` turns into span links.  In ``"drop"`` mode nothing is kept.

The peer address is the one the server reports (ASGI ``scope["client"]``, WSGI
``REMOTE_ADDR``).  ``X-Forwarded-For`` and ``Forwarded`` are never read here: any client can
send them.  If a reverse proxy rewrites the peer address (uvicorn ``--proxy-headers``,
werkzeug ``ProxyFix``), that rewrite is only as trustworthy as its own list of trusted proxies.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any, Literal

from opentelemetry.trace import (
    Link,
    SpanContext,
    TraceFlags,
    get_current_span,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "B3_HEADERS",
    "BAGGAGE_HEADER",
    "UNTRUSTED_CONTEXT_KEY",
    "W3C_HEADERS",
    "Mode",
    "TraceContextASGIMiddleware",
    "TraceContextWSGIMiddleware",
    "TrustPolicy",
    "untrusted_links",
]

Mode = Literal["drop", "reroot"]

UNTRUSTED_CONTEXT_KEY = "spansieve.untrusted_context"
"""Where "reroot" mode leaves the removed headers (ASGI scope state, WSGI environ)."""

W3C_HEADERS = frozenset({"traceparent", "tracestate"})
BAGGAGE_HEADER = "baggage"
B3_HEADERS = frozenset(
    {"b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags"}
)

LINK_ATTRIBUTE = "spansieve.untrusted"
LINK_FORMAT_ATTRIBUTE = "spansieve.untrusted.propagation"

_MODES = ("drop", "reroot")
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _parse_peer(host: object) -> _Address | None:
    """The peer as an IP address, or None (missing, a unix socket, a host name...)."""
    if not isinstance(host, str) or not host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustPolicy:
    """Decides whether a request's propagation headers are trusted.

    A request is trusted when its direct peer is inside one of ``trusted_networks`` (CIDRs
    such as the service mesh's ``10.0.0.0/8``; a bare address means a single host) **or**
    when it carries ``trusted_header`` = ``(name, value)`` exactly once with exactly that
    value (compared in constant time).  With no networks and no header nothing is trusted.
    """

    def __init__(
        self,
        trusted_networks: Iterable[str] = (),
        trusted_header: tuple[str, str] | None = None,
    ) -> None:
        if isinstance(trusted_networks, str | bytes):
            raise TypeError("trusted_networks must be an iterable of CIDR strings, not a string")
        networks: list[_Network] = []
        for cidr in trusted_networks:
            try:
                networks.append(ipaddress.ip_network(str(cidr).strip(), strict=True))
            except ValueError as error:
                raise ValueError(f"invalid trusted network {cidr!r}: {error}") from None
        self.trusted_networks: tuple[_Network, ...] = tuple(networks)

        self.header_name: str | None = None
        self._secret: bytes | None = None
        if trusted_header is not None:
            name, value = trusted_header
            if not isinstance(name, str) or not _TOKEN.fullmatch(name):
                raise ValueError(f"invalid trusted header name {name!r}")
            if not isinstance(value, str) or not value:
                raise ValueError("the trusted header value must be a non-empty string")
            if name.lower() in W3C_HEADERS | B3_HEADERS | {BAGGAGE_HEADER}:
                raise ValueError(f"{name!r} is a propagation header, not a usable secret")
            self.header_name = name.lower()
            self._secret = value.encode("utf-8")

    @property
    def wsgi_header_key(self) -> str | None:
        """The WSGI environ key of the shared-secret header."""
        if self.header_name is None:
            return None
        return "HTTP_" + self.header_name.upper().replace("-", "_")

    def trusts_peer(self, host: object) -> bool:
        address = _parse_peer(host)
        if address is None:
            return False
        return any(address in network for network in self.trusted_networks)

    def trusts_secret(self, presented: bytes | None) -> bool:
        if self._secret is None or presented is None:
            return False
        return hmac.compare_digest(presented, self._secret)

    def is_trusted(self, peer: object, presented_secret: bytes | None = None) -> bool:
        """``peer``: the direct peer's address; ``presented_secret``: the value of the
        shared-secret header, or None when it is absent or repeated."""
        return self.trusts_peer(peer) or self.trusts_secret(presented_secret)

    def __repr__(self) -> str:
        networks = [str(network) for network in self.trusted_networks]
        header = f"({self.header_name!r}, '***')" if self.header_name else None
        return f"TrustPolicy(trusted_networks={networks}, trusted_header={header})"


def _check_mode(mode: str) -> None:
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")


def _stripped_names(strip_baggage: bool) -> frozenset[str]:
    names = W3C_HEADERS | B3_HEADERS
    return names | {BAGGAGE_HEADER} if strip_baggage else names


def _remember(removed: dict[str, str], name: str, value: str) -> None:
    # Repeated fields are combined with "," as HTTP does; a repeated traceparent thereby
    # becomes invalid, which is what the W3C specification asks for.
    removed[name] = f"{removed[name]},{value}" if name in removed else value


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _EdgeMiddleware:
    """What both middlewares hold: the wrapped app, the trust policy and the header set."""

    def __init__(
        self, app: Any, policy: TrustPolicy, mode: Mode = "reroot", *, strip_baggage: bool = True
    ) -> None:
        _check_mode(mode)
        self.app = app
        self.policy = policy
        self.mode = mode
        self.stripped_names = _stripped_names(strip_baggage)


class TraceContextASGIMiddleware(_EdgeMiddleware):
    """ASGI 3 middleware: strips propagation headers of untrusted http/websocket requests.

    Other scope types (lifespan) pass through.  Put it outside the OpenTelemetry
    middleware, i.e. wrap the finished application object.
    """

    def __init__(self, app: ASGIApp, policy: TrustPolicy, mode: Mode = "reroot", **options):
        super().__init__(app, policy, mode, **options)
        self._strip = frozenset(name.encode("latin-1") for name in self.stripped_names)
        self._secret_name = policy.header_name.encode("latin-1") if policy.header_name else None

    def _presented_secret(self, headers: list[tuple[bytes, bytes]]) -> bytes | None:
        if self._secret_name is None:
            return None
        values = [value for name, value in headers if name.lower() == self._secret_name]
        return values[0] if len(values) == 1 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        headers = [(bytes(name), bytes(value)) for name, value in scope.get("headers") or ()]
        client = scope.get("client")
        peer = client[0] if client else None
        if self.policy.is_trusted(peer, self._presented_secret(headers)):
            await self.app(scope, receive, send)
            return

        kept: list[tuple[bytes, bytes]] = []
        removed: dict[str, str] = {}
        for name, value in headers:
            lowered = name.lower()
            if lowered in self._strip:
                _remember(removed, lowered.decode("latin-1"), value.decode("latin-1"))
            else:
                kept.append((name, value))
        if not removed:
            await self.app(scope, receive, send)
            return

        scope = dict(scope)
        scope["headers"] = kept
        if self.mode == "reroot":
            # The server gives every request its own shallow copy of the state namespace.
            state = scope.get("state")
            if state is None:
                state = scope["state"] = {}
            state[UNTRUSTED_CONTEXT_KEY] = removed
        await self.app(scope, receive, send)


StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class TraceContextWSGIMiddleware(_EdgeMiddleware):
    """WSGI middleware: strips propagation headers of untrusted requests.

    The application is called with a cleaned copy of the environ; the caller's dict is not
    modified.  Put it outside the OpenTelemetry WSGI middleware.
    """

    def __init__(self, app: WSGIApp, policy: TrustPolicy, mode: Mode = "reroot", **options):
        super().__init__(app, policy, mode, **options)
        self._strip = {
            "HTTP_" + name.upper().replace("-", "_"): name for name in self.stripped_names
        }
        self._secret_key = policy.wsgi_header_key

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        presented = None
        if self._secret_key is not None:
            value = environ.get(self._secret_key)
            if isinstance(value, str):
                # PEP 3333: header values are the raw bytes decoded as latin-1.
                presented = value.encode("latin-1", errors="replace")
        if self.policy.is_trusted(environ.get("REMOTE_ADDR"), presented):
            return self.app(environ, start_response)

        cleaned: dict[str, Any] = {}
        removed: dict[str, str] = {}
        for key, value in environ.items():
            name = self._strip.get(key.upper()) if isinstance(key, str) else None
            if name is None:
                cleaned[key] = value
            else:
                _remember(removed, name, str(value))
        if not removed:
            return self.app(environ, start_response)
        if self.mode == "reroot":
            cleaned[UNTRUSTED_CONTEXT_KEY] = removed
        return self.app(cleaned, start_response)


_W3C = TraceContextTextMapPropagator()
_B3_TRACE_ID = re.compile(r"[0-9a-f]{16}|[0-9a-f]{32}")
_B3_SPAN_ID = re.compile(r"[0-9a-f]{16}")


def _w3c_context(headers: Mapping[str, str]) -> SpanContext | None:
    carrier = {name: headers[name] for name in W3C_HEADERS if name in headers}
    span_context = get_current_span(_W3C.extract(carrier)).get_span_context()
    return span_context if span_context.is_valid else None


def _b3_ids(trace_id: str, span_id: str) -> tuple[int, int] | None:
    trace_id, span_id = trace_id.strip().lower(), span_id.strip().lower()
    if not _B3_TRACE_ID.fullmatch(trace_id) or not _B3_SPAN_ID.fullmatch(span_id):
        return None
    trace, span = int(trace_id, 16), int(span_id, 16)
    return (trace, span) if trace and span else None


def _b3_context(headers: Mapping[str, str]) -> SpanContext | None:
    ids: tuple[int, int] | None = None
    sampled = False
    single = headers.get("b3", "").strip()
    if single:
        # {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]; a lone "0"/"1"/"d" carries
        # a sampling decision only and names no span to link to.
        parts = single.split("-")
        if 2 <= len(parts) <= 4:
            ids = _b3_ids(parts[0], parts[1])
            state = parts[2].strip().lower() if len(parts) > 2 else ""
            if state not in ("", "0", "1", "d"):
                ids = None
            if len(parts) == 4 and not _B3_SPAN_ID.fullmatch(parts[3].strip().lower()):
                ids = None
            sampled = state in ("1", "d")
    if ids is None and "x-b3-traceid" in headers and "x-b3-spanid" in headers:
        ids = _b3_ids(headers["x-b3-traceid"], headers["x-b3-spanid"])
        flag = headers.get("x-b3-sampled", "").strip().lower()
        sampled = flag in ("1", "true") or headers.get("x-b3-flags", "").strip() == "1"
    if ids is None:
        return None
    return SpanContext(
        trace_id=ids[0],
        span_id=ids[1],
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
    )


def _contexts(headers: Mapping[str, str]) -> Iterator[tuple[str, SpanContext]]:
    for propagation, parse in (("tracecontext", _w3c_context), ("b3", _b3_context)):
        span_context = parse(headers)
        if span_context is not None:
            yield propagation, span_context


def untrusted_links(context: Mapping[str, str] | None) -> list[Link]:
    """Span links to the contexts a client asked us to continue, for the new root span.

    ``context`` is the dict "reroot" mode stored (header name -> value); a valid W3C
    traceparent (with its tracestate) and a valid B3 context (single ``b3`` header first,
    else the ``X-B3-*`` headers) each give one link with ``spansieve.untrusted=True``.
    Malformed or absent headers give nothing.
    """
    if not context:
        return []
    headers = {
        name.lower(): value
        for name, value in context.items()
        if isinstance(name, str) and isinstance(value, str)
    }
    links: list[Link] = []
    seen: set[tuple[int, int]] = set()
    for propagation, span_context in _contexts(headers):
        if (span_context.trace_id, span_context.span_id) in seen:
            continue
        seen.add((span_context.trace_id, span_context.span_id))
        attributes = {LINK_ATTRIBUTE: True, LINK_FORMAT_ATTRIBUTE: propagation}
        links.append(Link(span_context, attributes))
    return links
