"""The wrapper every API handler runs in: authenticate, authorize, audit.

``guarded(action, handler)`` answers 401 when a request has no accepted credentials and
403 when its principal may not take ``action`` at all, or names a service (``service``,
``query.service_name`` or the path's ``{service}``) outside its role. Otherwise the
handler runs with ``request.state.access`` set, for the filters that keep other services
out of its answer. Every request, allowed or not, leaves one audit log line (logger
``spansieve.audit``): principal, roles, action, services, status, path.

``action=None`` is for the lists of names (services, operations): any action on a
service lets a principal see that service's name.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import structlog
from starlette.requests import Request
from starlette.responses import Response

from pipeline.query.rbac.access import Access
from pipeline.query.rbac.authenticate import Authenticator
from pipeline.query.rbac.roles import Action

audit = structlog.get_logger("spansieve.audit")

Handler = Callable[[Request], Awaitable[Response]]
# (status, message, request) -> the answer in the shape the endpoint's clients read.
Refusal = Callable[[int, str, Request], Response]
SERVICE_PARAMS = ("service", "query.service_name")
EVERYTHING = Access.everything()


def requested_services(request: Request) -> list[str]:
    """Services a request names: query parameters and the path's ``{service}``."""
    named = [value for key, value in request.query_params.multi_items() if key in SERVICE_PARAMS]
    if "service" in request.path_params:
        named.append(request.path_params["service"])
    return list(dict.fromkeys(s.strip() for s in named if s.strip()))


def _refusal(access: Access, action: Action | None, services: list[str]) -> str | None:
    """Why ``access`` may not do this, or None when it may."""
    sees = access.sees_any() if action is None else access.sees(action)
    if not sees:
        what = "any action" if action is None else f"the action {action!r}"
        return f"{access.principal} (roles: {', '.join(access.roles) or 'none'}) lacks {what}"
    for service in services:
        if not sees(service):
            doing = "see" if action is None else action
            return f"{access.principal} may not {doing} service {service!r}"
    return None


def guarded(
    action: Action | Callable[[Request], Action] | None, handler: Handler, refuse: Refusal
) -> Handler:
    """``handler`` behind authentication, authorization and the audit log; ``action`` may
    depend on the request (a function of it)."""

    @functools.wraps(handler)
    async def route(request: Request) -> Response:
        authenticator: Authenticator | None = request.app.state.authenticator
        doing = action(request) if callable(action) else action
        services = requested_services(request)
        access = EVERYTHING
        status: int | str = 500
        try:
            if authenticator is not None:
                client = request.client.host if request.client else None
                outcome = authenticator.authenticate(request.headers, client)
                if outcome.access is None:
                    status = 401
                    response = refuse(401, outcome.problem, request)
                    response.headers["WWW-Authenticate"] = 'Bearer realm="spansieve"'
                    return response
                access = outcome.access
                problem = _refusal(access, doing, services)
                if problem is not None:
                    status = 403
                    return refuse(403, problem, request)
            request.state.access = access
            response = await handler(request)
            status = response.status_code
            return response
        except Exception as exc:
            status = type(exc).__name__  # the app's exception handlers answer it
            raise
        finally:
            audit.info(
                "query request",
                principal=access.principal if status != 401 else None,
                roles=list(access.roles),
                action=doing or "list",
                services=services or getattr(request.state, "audit_services", []),
                status=status,
                path=request.url.path,
            )

    return route


def access_of(request: Request) -> Access:
    """The access ``guarded`` granted this request (everything for unguarded routes)."""
    return getattr(request.state, "access", EVERYTHING)
