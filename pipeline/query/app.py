"""The query server's HTTP routes: Jaeger's ``/api/...``, ``/healthz``, ``/metrics`` and the
web UI (``/``, ``/search``, ``/trace/{id}``, ``/services``, ``/map``: one page, its assets
under ``/static``).

Handlers only parse (``params``, ``v3``), read (``search.SpanReader``,
``sampling.RatesSource``) and shape (``jaeger``, ``v3``, ``dependencies``, ``sampling``);
Jaeger's SPM endpoints (``/api/metrics/*``, the Monitor tab) are ``spm``'s own. A
bad parameter is HTTP 400 and an unreachable OpenSearch 503, both in Jaeger's envelope with
``errors`` filled (under ``/api/v3``: ``{"error": {httpCode, message}}``), so clients show
the message. ``/api/sampling`` never fails for Redis: it falls back.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import ConnectionError as TransportConnectionError
from opensearchpy.exceptions import OpenSearchException, TransportError
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.config.package_data import data_path
from pipeline.config.settings import Settings
from pipeline.query.conditions import withheld_keys
from pipeline.query.correlation import metrics_exemplars, trace_logs, ui_config
from pipeline.query.dependencies import graph_links, service_calls
from pipeline.query.jaeger import JsonResponse, envelope, error, jaeger_trace, span_kind_name
from pipeline.query.params import (
    ParamError,
    TraceQuery,
    normalize_trace_id,
    parse_dependencies_window,
    parse_trace_query,
    raw_param,
    sampling_service,
    span_kind_param,
)
from pipeline.query.rbac.authenticate import authenticator
from pipeline.query.rbac.guard import access_of, guarded
from pipeline.query.rbac.placeholders import mark_jaeger_trace, masked, trace_warning
from pipeline.query.rbac.roles import Action
from pipeline.query.sampling import RatesSource, strategy
from pipeline.query.search import SpanReader
from pipeline.query.skew import adjust_clock_skew
from pipeline.query.spm import (
    metrics_calls,
    metrics_errors,
    metrics_latencies,
    metrics_minstep,
    metrics_pattern,
)
from pipeline.query.v3 import (
    parse_search,
    parse_trace_request,
    trace_summary,
    traces_data,
    v3_trace_id,
)
from pipeline.store.indices import store_names

log = structlog.get_logger(__name__)

JSON = dict[str, Any]

REQUESTS = Counter(
    "spansieve_query_requests_total",
    "Query API requests by endpoint and status",
    ["endpoint", "status"],
)
LATENCY = Histogram(
    "spansieve_query_request_seconds",
    "Query API request latency by endpoint",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OPENSEARCH_ERRORS = Counter(
    "spansieve_query_opensearch_errors_total",
    "OpenSearch requests that failed, by error",
    ["error"],
)
DEPENDENCIES_CAPPED = Counter(
    "spansieve_query_dependencies_capped_total",
    "Dependency requests answered from the first query_dependencies_max_spans spans",
)
SAMPLING_STRATEGIES = Counter(
    "spansieve_query_sampling_strategies_total",
    "Remote-sampling strategies served to SDKs, by source (adaptive or fallback)",
    ["source"],
)
SAMPLING_FALLBACK = Counter(
    "spansieve_query_sampling_fallback_total",
    "Remote-sampling strategies that sample everything for want of an adaptive rates "
    "table, by reason (no_table, redis_unreachable, bad_table)",
    ["reason"],
)
PARTIAL_HEADER = "X-Spansieve-Partial"  # says why an answer is partial

# The web UI: package data of pipeline.query (StaticFiles wants a directory on disk).
UI_DIR = data_path("pipeline.query", "ui")
# The UI loads only its own files and talks only to this server; no inline scripts.
UI_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


class RequestMetrics:
    """Counts requests by route template (never the raw path: trace ids would explode the
    label set) and status, and times them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            # A base64 trace id may hold "/": those routes take a path; the label keeps
            # the plain template.
            endpoint = getattr(scope.get("route"), "path", "unmatched").replace(":path}", "}")
            REQUESTS.labels(endpoint, str(status)).inc()
            LATENCY.labels(endpoint).observe(time.perf_counter() - started)


def _reader(request: Request) -> SpanReader:
    return request.app.state.reader


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _pairs(request: Request) -> list[tuple[str, str]]:
    return request.query_params.multi_items()


def _skew_limit(request: Request) -> int:
    """µs of clock-skew correction this request allows: none with ``raw=true``."""
    if raw_param(_pairs(request)):
        return 0
    return round(_settings(request).query_max_clock_skew * 1e6)


def _shaped(trace_id: str, documents: list[JSON], skew_limit: int) -> JSON:
    """One trace in Jaeger's shape, its clock skew corrected up to ``skew_limit`` µs."""
    return adjust_clock_skew(jaeger_trace(trace_id, documents), skew_limit)


async def _operations(request: Request) -> list[dict[str, str]]:
    service = request.query_params.get("service", "").strip()
    if not service:
        raise ParamError("service", "is required")
    kind = span_kind_param("spanKind", request.query_params.get("spanKind"))
    found = await _reader(request).operations(service, kind)
    return [{"name": name, "spanKind": span_kind_name(kind)} for name, kind in found]


async def _services(request: Request) -> list[str]:
    """Stored service names the principal may know of."""
    found = await _reader(request).services()
    access = access_of(request)
    return found if access.unrestricted else [s for s in found if access.sees_any()(s)]


def _visible_documents(
    request: Request, action: Action, documents: list[JSON]
) -> tuple[list[JSON], int]:
    """A trace's documents with spans the principal may not ``action`` as placeholders
    (and how many); none at all when it may see no span of the trace."""
    access = access_of(request)
    if access.unrestricted:
        return documents, 0
    shown, hidden = masked(documents, access.sees(action))
    return (shown, hidden) if hidden < len(shown) else ([], hidden)


def _visible_traces(
    request: Request, action: Action, ids: list[str], documents: dict[str, list[JSON]]
) -> tuple[list[tuple[str, list[JSON]]], int]:
    """(trace id, visible documents) of the traces found, in order, and the placeholders."""
    found: list[tuple[str, list[JSON]]] = []
    hidden = 0
    for trace_id in ids:
        shown, masked_count = _visible_documents(request, action, documents.get(trace_id, []))
        if shown:
            found.append((trace_id, shown))
            hidden += masked_count
    return found, hidden


def _check_search(request: Request, query: TraceQuery) -> None:
    """What a principal limited to some services may not search by: every service at
    once (a search must name one), or trace-level facts that foreign spans make up
    (``conditions.withheld_keys``: other services' names, root names, statuses)."""
    if access_of(request).unrestricted:
        return
    if query.service is None:
        raise Forbidden("your role is limited to some services: choose a service to search")
    withheld = withheld_keys(query.conditions)
    if withheld:
        raise Forbidden(
            f"your role is limited to some services: {', '.join(withheld)} would tell of "
            "services outside it; search without them"
        )


class Forbidden(Exception):
    """403 raised by a handler (the guard raises none: it answers itself)."""


async def services(request: Request) -> Response:
    return JsonResponse(envelope(await _services(request)))


async def service_operations(request: Request) -> Response:
    found = await _reader(request).operations(request.path_params["service"])
    return JsonResponse(envelope(sorted({name for name, _kind in found})))


async def operations(request: Request) -> Response:
    return JsonResponse(envelope(await _operations(request)))


def _v3_error(status: int, message: str) -> Response:
    """API v3 reports errors as ``{"error": {httpCode, message}}`` (its gRPC gateway's)."""
    return JsonResponse({"error": {"httpCode": status, "message": message}}, status_code=status)


Handler = Callable[[Request], Awaitable[Response]]


def v3_route(handler: Handler) -> Callable:
    """An API v3 handler whose bad parameters (400) and OpenSearch failures (502, 503) are
    answered in v3's error shape: its clients read ``error.httpCode``, not ``errors``."""

    @functools.wraps(handler)
    async def route(request: Request) -> Response:
        try:
            return await handler(request)
        except ParamError as exc:
            return _v3_error(400, str(exc))
        except Forbidden as exc:
            return _v3_error(403, str(exc))
        except OpenSearchException as exc:
            return _v3_error(*_opensearch_problem(request, exc))

    return route


def _v3_skew_limit(request: Request, raw: bool) -> int:
    """µs of clock-skew correction: none for ``rawTraces=true``."""
    return 0 if raw else round(_settings(request).query_max_clock_skew * 1e6)


@v3_route
async def v3_services(request: Request) -> Response:
    return JsonResponse({"services": await _services(request)})


@v3_route
async def v3_operations(request: Request) -> Response:
    return JsonResponse({"operations": await _operations(request)})


@v3_route
async def v3_trace(request: Request) -> Response:
    """One trace as OTLP/JSON; 404 in v3's error shape when it has no spans."""
    asked = parse_trace_request(request.path_params["trace_id"], _pairs(request))
    stored = await _reader(request).trace_documents([asked.trace_id])
    found, hidden = _visible_traces(request, "read_trace", [asked.trace_id], stored)
    if not found:
        return _v3_error(404, f"No traces found: trace {asked.trace_id} is not stored")
    data = traces_data(found, _v3_skew_limit(request, asked.raw))
    return JsonResponse(_with_warnings({"result": data}, hidden))


def _with_warnings(body: JSON, hidden: int) -> JSON:
    """API v3 answers have no warnings slot: a top-level key, which clients ignore."""
    if hidden:
        body["warnings"] = [trace_warning(hidden)]
    return body


@v3_route
async def v3_traces(request: Request) -> Response:
    """A search as OTLP/JSON: every span of every trace found. None found is an empty
    result (200), not Jaeger's 404, which Grafana would show as a failed query."""
    search = parse_search(_pairs(request), _settings(request).query_max_traces)
    _check_search(request, search.query)
    reader = _reader(request)
    ids = await reader.find_trace_ids(search.query)
    found, hidden = _visible_traces(request, "search", ids, await reader.trace_documents(ids))
    data = traces_data(found, _v3_skew_limit(request, search.raw))
    return JsonResponse(_with_warnings({"result": data}, hidden))


@v3_route
async def v3_trace_summaries(request: Request) -> Response:
    """The Jaeger UI's search results: one summary per trace found, from its whole trace,
    clock skew always corrected (``query.rawTraces`` has no effect, as in Jaeger)."""
    search = parse_search(_pairs(request), _settings(request).query_max_traces)
    _check_search(request, search.query)
    reader = _reader(request)
    ids = await reader.find_trace_ids(search.query)
    found, hidden = _visible_traces(request, "search", ids, await reader.trace_documents(ids))
    skew_limit = _v3_skew_limit(request, False)
    summaries = [trace_summary(trace_id, docs, skew_limit) for trace_id, docs in found]
    return JsonResponse(_with_warnings({"summaries": summaries}, hidden))


async def traces(request: Request) -> Response:
    """Search (or, with ``traceID=``, look up) traces; each comes with all its spans."""
    query = parse_trace_query(_pairs(request), _settings(request).query_max_traces)
    if not query.trace_ids:
        _check_search(request, query)
    skew_limit = _skew_limit(request)
    reader = _reader(request)
    ids = list(query.trace_ids) or await reader.find_trace_ids(query)
    action = traces_action(request)
    documents = await reader.trace_documents(ids)
    found = []
    for trace_id in ids:
        shown, hidden = _visible_documents(request, action, documents.get(trace_id, []))
        if shown:
            found.append(mark_jaeger_trace(_shaped(trace_id, shown, skew_limit), hidden))
    shown_ids = {trace["traceID"] for trace in found}
    missing = [
        error(404, "trace not found", trace_id)
        for trace_id in query.trace_ids
        if trace_id not in shown_ids
    ]
    return JsonResponse(envelope(found, errors=missing))


def _v1_trace_id(text: str) -> str:
    """Hex as Jaeger's rules have it, else base64 of 8 or 16 bytes (the Jaeger UI sends an
    id as typed, and Jaeger's v1 handler accepts base64); the hex message when neither."""
    try:
        return normalize_trace_id(text)
    except ParamError as hex_problem:
        try:
            return v3_trace_id(text)
        except ParamError:
            raise hex_problem from None


def traces_action(request: Request) -> Action:
    """``/api/traces`` with ``traceID=`` reads those traces; without, it searches."""
    return "read_trace" if "traceID" in request.query_params else "search"


async def trace(request: Request) -> Response:
    trace_id = _v1_trace_id(request.path_params["trace_id"])
    skew_limit = _skew_limit(request)
    stored = (await _reader(request).trace_documents([trace_id])).get(trace_id, [])
    documents, hidden = _visible_documents(request, "read_trace", stored)
    if not documents:  # also when every span is of a service outside the role
        return JsonResponse(
            envelope(None, errors=[error(404, "trace not found", trace_id)]), status_code=404
        )
    shaped = mark_jaeger_trace(_shaped(trace_id, documents, skew_limit), hidden)
    return JsonResponse(envelope([shaped]))


DEPENDENCY_SOURCES = ("auto", "graph", "spans")
SOURCE_HEADER = "X-Spansieve-Dependencies-Source"  # which source answered: graph or spans


def _dependency_source(request: Request) -> str:
    source = request.query_params.get("source", "auto")
    if source not in DEPENDENCY_SOURCES:
        raise ParamError("source", f"{source!r} is not one of {', '.join(DEPENDENCY_SOURCES)}")
    return source


async def dependencies(request: Request) -> Response:
    """Service-to-service call counts of the window: from the service-graph edges of the
    metrics store when it has any for the window (``source=auto``, the default, or
    ``graph``), else from the stored spans that started in it (``spans``)."""
    start, end = parse_dependencies_window(_pairs(request), int(time.time() * 1000))
    source = _dependency_source(request)
    links: list[JSON] = []
    if source != "spans":
        index = metrics_pattern(_settings(request))
        links = await graph_links(_reader(request).client, index, start, end)
    spans: list[JSON] = []
    capped = False
    if links:
        source = "graph"
    elif source != "graph":
        source = "spans"
        max_spans = _settings(request).query_dependencies_max_spans
        spans, capped = await _reader(request).window_documents(start, end, max_spans)
        links = await asyncio.to_thread(service_calls, spans)  # ~0.5 s per million spans
    access = access_of(request)
    if not access.unrestricted:  # an edge names both ends: both must be visible
        sees = access.sees("dependencies")
        links = [link for link in links if sees(link["parent"]) and sees(link["child"])]
    body = envelope(links)
    headers = {SOURCE_HEADER: source}
    if capped:
        # Not in ``errors``: Grafana and the Jaeger UI show those instead of the graph. A
        # key and a header they ignore say the counts are a sample.
        DEPENDENCIES_CAPPED.inc()
        note = (
            f"partial: computed from {len(spans)} spans (whole traces) of the window, "
            f"capped by query_dependencies_max_spans={max_spans}; shorten the lookback"
        )
        body["warnings"] = [note]
        headers[PARTIAL_HEADER] = note
    return JsonResponse(body, headers=headers)


async def sampling(request: Request) -> Response:
    """Jaeger's remote-sampling strategy for one service (the SDK's poll), from the
    adaptive policies' rates; the fallback samples everything when there are none."""
    service = sampling_service(_pairs(request))
    lookup = await request.app.state.rates.current()
    if lookup.fallback is not None:
        SAMPLING_FALLBACK.labels(lookup.fallback).inc()
    SAMPLING_STRATEGIES.labels("fallback" if lookup.table is None else "adaptive").inc()
    return JsonResponse(strategy(lookup.table, service))


async def healthz(request: Request) -> Response:
    try:
        if await _reader(request).reachable():
            return PlainTextResponse("ok")
    except OpenSearchException:
        pass
    return PlainTextResponse("opensearch unreachable", status_code=503)


async def prometheus(_request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def bad_parameter(_request: Request, exc: Exception) -> Response:
    return JsonResponse(envelope(None, errors=[error(400, str(exc))]), status_code=400)


async def forbidden(_request: Request, exc: Exception) -> Response:
    return JsonResponse(envelope(None, errors=[error(403, str(exc))]), status_code=403)


def refuse(status: int, message: str, request: Request) -> Response:
    """401/403 of the guard, in the error shape of the endpoint's clients."""
    if request.url.path.startswith("/api/v3/"):
        return _v3_error(status, message)
    return JsonResponse(envelope(None, errors=[error(status, message)]), status_code=status)


def _visible_log_record(request: Request, record: JSON) -> bool:
    """Whether a trace's log record may be listed: its service is readable."""
    access = access_of(request)
    return access.unrestricted or access.sees("read_trace")(record.get("service", ""))


def _opensearch_problem(request: Request, exc: Exception) -> tuple[int, str]:
    """Status and message of a failed OpenSearch request (counted and logged): 503 when it
    is down, 502 when it refused."""
    if isinstance(exc, TransportConnectionError):
        status, label, message = 503, "connection", f"OpenSearch unreachable: {exc.error}"
    elif isinstance(exc, TransportError):
        status, label = 502, f"http_{exc.status_code}"
        message = f"OpenSearch answered {exc.status_code}: {exc.error}"
    else:
        status, label, message = 502, type(exc).__name__, f"OpenSearch failed: {exc}"
    OPENSEARCH_ERRORS.labels(label).inc()
    log.warning("opensearch request failed", path=request.url.path, error=message)
    return status, message


async def opensearch_failed(request: Request, exc: Exception) -> Response:
    """OpenSearch down (503) or refusing a request (502): the client sees why."""
    status, message = _opensearch_problem(request, exc)
    return JsonResponse(envelope(None, errors=[error(status, message)]), status_code=status)


async def web_ui(_request: Request) -> Response:
    """The web UI's single page; its script routes ``/``, ``/search``, ``/trace/{id}``,
    ``/services`` and ``/map``."""
    return FileResponse(UI_DIR / "index.html", headers=UI_HEADERS)


class UiAssets(StaticFiles):
    """The UI's scripts and styles, revalidated on each load (ETag, so mostly 304s): their
    names carry no content hash, as there is no build step."""

    def file_response(
        self,
        full_path: str | os.PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def query_app(settings: Settings, client: AsyncOpenSearch) -> Starlette:
    """The Jaeger-compatible API over the span alias of ``settings`` (its prefix too);
    sampling strategies from the rates under ``settings.topic_prefix`` in Redis (its
    client is ``app.state.rates``, for the caller to close)."""
    api: list[tuple[str, Action | Callable[[Request], Action] | None, Handler]] = [
        ("/api/services", None, services),
        ("/api/services/{service:path}/operations", None, service_operations),
        ("/api/operations", None, operations),
        ("/api/v3/services", None, v3_services),
        ("/api/v3/operations", None, v3_operations),
        ("/api/v3/traces", "search", v3_traces),
        ("/api/v3/traces/{trace_id:path}", "read_trace", v3_trace),
        ("/api/v3/trace-summaries", "search", v3_trace_summaries),
        ("/api/traces", traces_action, traces),
        ("/api/traces/{trace_id}/logs", "read_trace", trace_logs),  # before {trace_id:path}
        ("/api/traces/{trace_id:path}", "read_trace", trace),
        ("/api/dependencies", "dependencies", dependencies),
        ("/api/sampling", "sampling", sampling),
        ("/api/metrics/calls", "metrics", metrics_calls),
        ("/api/metrics/errors", "metrics", metrics_errors),
        ("/api/metrics/latencies", "metrics", metrics_latencies),
        ("/api/metrics/minstep", "metrics", metrics_minstep),
        ("/api/metrics/exemplars", "metrics", metrics_exemplars),
        ("/api/ui/config", None, ui_config),
    ]
    app = Starlette(
        routes=[
            *(Route(path, guarded(action, handler, refuse)) for path, action, handler in api),
            Route("/healthz", healthz),
            Route("/metrics", prometheus),
            Route("/", web_ui),
            Route("/search", web_ui),
            Route("/services", web_ui),
            Route("/map", web_ui),
            Route("/trace/{trace_id}", web_ui),
            Mount("/static", app=UiAssets(directory=UI_DIR), name="static"),
        ],
        middleware=[Middleware(RequestMetrics)],
        exception_handlers={
            ParamError: bad_parameter,
            Forbidden: forbidden,
            OpenSearchException: opensearch_failed,
        },
    )
    app.state.settings = settings
    app.state.reader = SpanReader(client, store_names(settings).span_alias)
    app.state.rates = RatesSource.from_url(settings.redis_url, settings.topic_prefix)
    app.state.authenticator = authenticator(settings)
    app.state.visible_log_record = _visible_log_record
    return app
