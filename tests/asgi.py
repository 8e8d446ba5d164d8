"""Requests to an ASGI app in this process, over httpx's ASGI transport: how the query
handlers are tested without a server process."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import httpx
from opensearchpy.exceptions import OpenSearchException
from starlette.applications import Starlette
from starlette.routing import Route

from pipeline.config.settings import Settings
from pipeline.query.app import bad_parameter, opensearch_failed
from pipeline.query.params import ParamError

# A request: a path, or (path, query parameters, headers).
Request = str | tuple[str, dict[str, Any], dict[str, str]]


async def get_all_async(
    app: Any, requests: Sequence[Request], client: tuple[str, int] = ("127.0.0.1", 40000)
) -> list[httpx.Response]:
    """GET each request in order from ``app``, seen as coming from ``client``."""
    transport = httpx.ASGITransport(app=app, client=client)
    replies = []
    async with httpx.AsyncClient(transport=transport, base_url="http://query") as http:
        for request in requests:
            if isinstance(request, str):  # its query string stays (params would replace it)
                replies.append(await http.get(request))
            else:
                path, params, headers = request
                replies.append(await http.get(path, params=params, headers=headers))
    return replies


def get_all(app: Any, requests: Sequence[Request], **kwargs: Any) -> list[httpx.Response]:
    return asyncio.run(get_all_async(app, requests, **kwargs))


def handlers_app(routes: list[Route], client: Any, settings: Settings) -> Starlette:
    """The handlers under ``routes`` with the state they read (``settings``, a span reader
    holding ``client``) and bad parameters and OpenSearch failures answered as the query
    app answers them."""
    handlers = {ParamError: bad_parameter, OpenSearchException: opensearch_failed}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.settings = settings
    app.state.reader = SimpleNamespace(client=client)
    return app
