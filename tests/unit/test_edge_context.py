import asyncio
import json

import pytest
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import TraceFlags

from pipeline.edge.context import (
    UNTRUSTED_CONTEXT_KEY,
    TraceContextASGIMiddleware,
    TraceContextWSGIMiddleware,
    TrustPolicy,
    untrusted_links,
)

INJECTED_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
INJECTED_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{INJECTED_TRACE}-{INJECTED_SPAN}-01"
B3_TRACE = "463ac35c9f6413ad48485a3953bb6124"
B3_SPAN = "a2fb4a1d1a96d312"

# Both header families, in the mixed case a client may well send.
PROPAGATION = [
    ("TraceParent", TRACEPARENT),
    ("tracestate", "vendor=opaque"),
    ("Baggage", "user=alice"),
    ("b3", f"{B3_TRACE}-{B3_SPAN}-1"),
    ("X-B3-TraceId", B3_TRACE),
    ("x-b3-spanid", B3_SPAN),
    ("X-B3-PARENTSPANID", "0020000000000001"),
    ("X-B3-Sampled", "1"),
    ("X-B3-Flags", "1"),
]
OTHER = [("Host", "app.example"), ("User-Agent", "curl/8"), ("X-Request-Id", "r1")]
PROPAGATION_NAMES = {name.lower() for name, _ in PROPAGATION}

MESH = TrustPolicy(["10.0.0.0/8", "fd00::/8"])


# --- ASGI ---------------------------------------------------------------------------------


class RecordingASGIApp:
    def __init__(self):
        self.scopes = []

    async def __call__(self, scope, receive, send):
        self.scopes.append(scope)
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})


def asgi_scope(peer, headers, scope_type="http", **extra):
    scope = {
        "type": scope_type,
        "asgi": {"version": "3.0"},
        "path": "/",
        "headers": [(name.encode(), value.encode()) for name, value in headers],
        "client": (peer, 51000) if peer else None,
        **extra,
    }
    if scope_type == "http":
        scope["method"] = "GET"
    return scope


def run_asgi(middleware, scope):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    return sent


def header_dict(scope):
    return {name.decode().lower(): value.decode() for name, value in scope["headers"]}


def test_asgi_trusted_peer_keeps_headers_untouched():
    app = RecordingASGIApp()
    scope = asgi_scope("10.4.5.6", PROPAGATION + OTHER)
    run_asgi(TraceContextASGIMiddleware(app, MESH), scope)
    (seen,) = app.scopes
    assert seen["headers"] == scope["headers"]
    assert UNTRUSTED_CONTEXT_KEY not in seen.get("state", {})


@pytest.mark.parametrize("peer", ["203.0.113.7", "11.0.0.1", "2001:db8::1", None, "testclient"])
@pytest.mark.parametrize("scope_type", ["http", "websocket"])
def test_asgi_untrusted_strips_every_propagation_header(peer, scope_type):
    app = RecordingASGIApp()
    scope = asgi_scope(peer, PROPAGATION + OTHER, scope_type)
    original_headers = list(scope["headers"])
    if scope_type == "websocket":
        asyncio.run(TraceContextASGIMiddleware(app, MESH)(scope, None, None))
    else:
        run_asgi(TraceContextASGIMiddleware(app, MESH), scope)
    (seen,) = app.scopes
    assert header_dict(seen) == {name.lower(): value for name, value in OTHER}
    assert scope["headers"] == original_headers  # the server's scope is not modified


def test_asgi_header_names_are_case_insensitive_bytes():
    app = RecordingASGIApp()
    scope = asgi_scope("198.51.100.1", [])
    scope["headers"] = [(b"TRACEPARENT", TRACEPARENT.encode()), (b"X-b3-TRACEID", b"ab" * 8)]
    run_asgi(TraceContextASGIMiddleware(app, MESH), scope)
    assert app.scopes[0]["headers"] == []
    assert app.scopes[0]["state"][UNTRUSTED_CONTEXT_KEY] == {
        "traceparent": TRACEPARENT,
        "x-b3-traceid": "ab" * 8,
    }


def test_asgi_reroot_keeps_the_originals_in_scope_state():
    app = RecordingASGIApp()
    lifespan_state = {"db": "pool"}
    scope = asgi_scope("203.0.113.7", PROPAGATION + OTHER, state=lifespan_state)
    run_asgi(TraceContextASGIMiddleware(app, MESH, "reroot"), scope)
    state = app.scopes[0]["state"]
    assert state["db"] == "pool"
    assert state[UNTRUSTED_CONTEXT_KEY] == {name.lower(): value for name, value in PROPAGATION}


def test_asgi_drop_keeps_nothing():
    app = RecordingASGIApp()
    scope = asgi_scope("203.0.113.7", PROPAGATION + OTHER)
    run_asgi(TraceContextASGIMiddleware(app, MESH, "drop"), scope)
    (seen,) = app.scopes
    assert header_dict(seen) == {name.lower(): value for name, value in OTHER}
    assert UNTRUSTED_CONTEXT_KEY not in seen.get("state", {})
    assert not any(TRACEPARENT in repr(value) for value in seen.values())


def test_asgi_repeated_headers_are_combined():
    app = RecordingASGIApp()
    headers = [("traceparent", TRACEPARENT), ("traceparent", TRACEPARENT), ("tracestate", "a=1")]
    headers.append(("tracestate", "b=2"))
    run_asgi(TraceContextASGIMiddleware(app, MESH), asgi_scope("203.0.113.7", headers))
    kept = app.scopes[0]["state"][UNTRUSTED_CONTEXT_KEY]
    assert kept == {"traceparent": f"{TRACEPARENT},{TRACEPARENT}", "tracestate": "a=1,b=2"}
    assert untrusted_links(kept) == []  # two traceparents make an invalid one


def test_asgi_baggage_can_be_left_alone():
    app = RecordingASGIApp()
    scope = asgi_scope("203.0.113.7", PROPAGATION)
    run_asgi(TraceContextASGIMiddleware(app, MESH, strip_baggage=False), scope)
    assert header_dict(app.scopes[0]) == {"baggage": "user=alice"}


def test_asgi_lifespan_passes_through():
    app = RecordingASGIApp()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    asyncio.run(TraceContextASGIMiddleware(app, TrustPolicy())(scope, None, None))
    assert app.scopes == [scope]
    assert app.scopes[0] is scope


def test_asgi_request_without_propagation_headers_is_passed_as_is():
    app = RecordingASGIApp()
    scope = asgi_scope("203.0.113.7", OTHER)
    run_asgi(TraceContextASGIMiddleware(app, MESH), scope)
    assert app.scopes[0] is scope


def test_asgi_shared_secret_header():
    policy = TrustPolicy(trusted_header=("X-Edge-Token", "s3cret"))
    for token, trusted in [("s3cret", True), ("s3cret-not", False), ("S3CRET", False)]:
        app = RecordingASGIApp()
        scope = asgi_scope("203.0.113.7", [*PROPAGATION, ("x-edge-TOKEN", token)])
        run_asgi(TraceContextASGIMiddleware(app, policy), scope)
        assert ("traceparent" in header_dict(app.scopes[0])) is trusted, token

    app = RecordingASGIApp()
    run_asgi(TraceContextASGIMiddleware(app, policy), asgi_scope("203.0.113.7", PROPAGATION))
    assert "traceparent" not in header_dict(app.scopes[0])

    # Sent twice (even once correctly) is not trusted.
    app = RecordingASGIApp()
    headers = [*PROPAGATION, ("x-edge-token", "s3cret"), ("x-edge-token", "guess")]
    run_asgi(TraceContextASGIMiddleware(app, policy), asgi_scope("203.0.113.7", headers))
    assert "traceparent" not in header_dict(app.scopes[0])


def test_asgi_with_a_starlette_app_reads_request_state():
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def endpoint(request: Request):
        context = getattr(request.state, UNTRUSTED_CONTEXT_KEY, None)
        links = untrusted_links(context)
        return JSONResponse(
            {
                "traceparent": request.headers.get("traceparent"),
                "links": [format(link.context.trace_id, "032x") for link in links],
            }
        )

    inner = Starlette(routes=[Route("/", endpoint)])
    asgi = TraceContextASGIMiddleware(inner, MESH)
    sent = run_asgi(asgi, asgi_scope("203.0.113.7", PROPAGATION + OTHER, state={}))
    assert sent[0]["status"] == 200
    assert json.loads(sent[1]["body"]) == {
        "traceparent": None,
        "links": [INJECTED_TRACE, B3_TRACE],
    }


# --- WSGI ---------------------------------------------------------------------------------


class RecordingWSGIApp:
    def __init__(self):
        self.environs = []

    def __call__(self, environ, start_response):
        self.environs.append(environ)
        start_response("204 No Content", [])
        return [b""]


def wsgi_environ(peer, headers):
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "SERVER_NAME": "app.example",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
    }
    if peer is not None:
        environ["REMOTE_ADDR"] = peer
    for name, value in headers:
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def run_wsgi(middleware, environ):
    statuses = []
    body = b"".join(middleware(environ, lambda status, headers: statuses.append(status)))
    return statuses, body


def http_keys(environ):
    return {key for key in environ if key.startswith("HTTP_")}


def test_wsgi_trusted_peer_keeps_headers_untouched():
    app = RecordingWSGIApp()
    environ = wsgi_environ("10.200.0.3", PROPAGATION + OTHER)
    statuses, _ = run_wsgi(TraceContextWSGIMiddleware(app, MESH), environ)
    assert statuses == ["204 No Content"]
    assert app.environs[0] is environ


def test_wsgi_ipv4_mapped_ipv6_peer_is_matched_against_ipv4_networks():
    app = RecordingWSGIApp()
    run_wsgi(TraceContextWSGIMiddleware(app, MESH), wsgi_environ("::ffff:10.0.0.9", PROPAGATION))
    assert app.environs[0]["HTTP_TRACEPARENT"] == TRACEPARENT


@pytest.mark.parametrize("peer", ["203.0.113.7", "fe80::1", "", None, "unix:/run/app.sock"])
def test_wsgi_untrusted_strips_every_propagation_header(peer):
    app = RecordingWSGIApp()
    environ = wsgi_environ(peer, PROPAGATION + OTHER)
    before = dict(environ)
    run_wsgi(TraceContextWSGIMiddleware(app, MESH), environ)
    seen = app.environs[0]
    assert http_keys(seen) == {"HTTP_HOST", "HTTP_USER_AGENT", "HTTP_X_REQUEST_ID"}
    assert environ == before  # the caller's environ is not modified


def test_wsgi_forwarded_for_is_not_believed():
    app = RecordingWSGIApp()
    headers = [*PROPAGATION, ("X-Forwarded-For", "10.0.0.1"), ("Forwarded", "for=10.0.0.1")]
    run_wsgi(TraceContextWSGIMiddleware(app, MESH), wsgi_environ("203.0.113.7", headers))
    assert "HTTP_TRACEPARENT" not in app.environs[0]


def test_wsgi_reroot_keeps_the_originals():
    app = RecordingWSGIApp()
    environ = wsgi_environ("203.0.113.7", PROPAGATION + OTHER)
    environ["http_x_b3_sampled"] = "1"  # not a key a server makes, but stripped all the same
    run_wsgi(TraceContextWSGIMiddleware(app, MESH, "reroot"), environ)
    seen = app.environs[0]
    assert "http_x_b3_sampled" not in seen
    expected = {name.lower(): value for name, value in PROPAGATION}
    assert seen[UNTRUSTED_CONTEXT_KEY] == {**expected, "x-b3-sampled": "1,1"}


def test_wsgi_drop_keeps_nothing():
    app = RecordingWSGIApp()
    run_wsgi(
        TraceContextWSGIMiddleware(app, MESH, "drop"),
        wsgi_environ("203.0.113.7", PROPAGATION + OTHER),
    )
    seen = app.environs[0]
    assert UNTRUSTED_CONTEXT_KEY not in seen
    assert not any(TRACEPARENT in str(value) for value in seen.values())
    assert http_keys(seen) == {"HTTP_HOST", "HTTP_USER_AGENT", "HTTP_X_REQUEST_ID"}


def test_wsgi_shared_secret_header():
    policy = TrustPolicy(trusted_header=("x-edge-token", "s3cret"))
    for token, trusted in [("s3cret", True), ("wrong", False), ("", False), (None, False)]:
        app = RecordingWSGIApp()
        headers = list(PROPAGATION) if token is None else [*PROPAGATION, ("X-Edge-Token", token)]
        run_wsgi(TraceContextWSGIMiddleware(app, policy), wsgi_environ("203.0.113.7", headers))
        assert ("HTTP_TRACEPARENT" in app.environs[0]) is trusted, token


def test_wsgi_peer_or_secret_is_enough():
    policy = TrustPolicy(["192.0.2.0/24"], trusted_header=("x-edge-token", "s3cret"))
    app = RecordingWSGIApp()
    run_wsgi(TraceContextWSGIMiddleware(app, policy), wsgi_environ("192.0.2.10", PROPAGATION))
    run_wsgi(
        TraceContextWSGIMiddleware(app, policy),
        wsgi_environ("203.0.113.7", [*PROPAGATION, ("x-edge-token", "s3cret")]),
    )
    assert all("HTTP_TRACEPARENT" in environ for environ in app.environs)


# --- policy -------------------------------------------------------------------------------


def test_policy_checks_its_configuration():
    with pytest.raises(TypeError):
        TrustPolicy("10.0.0.0/8")
    with pytest.raises(ValueError, match="invalid trusted network"):
        TrustPolicy(["10.0.0.0/33"])
    with pytest.raises(ValueError, match="invalid trusted network"):
        TrustPolicy(["10.0.0.1/8"])  # host bits set: almost certainly a typo
    with pytest.raises(ValueError):
        TrustPolicy(trusted_header=("x-edge-token", ""))
    with pytest.raises(ValueError):
        TrustPolicy(trusted_header=("bad header", "x"))
    with pytest.raises(ValueError):
        TrustPolicy(trusted_header=("traceparent", "x"))
    with pytest.raises(ValueError):
        TraceContextASGIMiddleware(RecordingASGIApp(), MESH, mode="keep")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TraceContextWSGIMiddleware(RecordingWSGIApp(), MESH, mode="")  # type: ignore[arg-type]
    assert "s3cret" not in repr(TrustPolicy(trusted_header=("x-edge-token", "s3cret")))


def test_empty_policy_trusts_nobody():
    policy = TrustPolicy()
    assert not policy.is_trusted("127.0.0.1", b"")
    assert not policy.is_trusted(None, None)
    assert TrustPolicy(["127.0.0.1"]).is_trusted("127.0.0.1")


# --- untrusted_links ----------------------------------------------------------------------


def test_untrusted_links_parses_w3c_and_b3():
    links = untrusted_links({name: value for name, value in PROPAGATION})
    assert [
        (format(link.context.trace_id, "032x"), format(link.context.span_id, "016x"))
        for link in links
    ] == [(INJECTED_TRACE, INJECTED_SPAN), (B3_TRACE, B3_SPAN)]
    for link in links:
        assert link.attributes["spansieve.untrusted"] is True
        assert link.context.is_remote
        assert link.context.trace_flags.sampled
    assert links[0].attributes["spansieve.untrusted.propagation"] == "tracecontext"
    assert links[0].context.trace_state.get("vendor") == "opaque"
    assert links[1].attributes["spansieve.untrusted.propagation"] == "b3"


def test_untrusted_links_b3_multi_and_short_trace_id():
    (link,) = untrusted_links({"x-b3-traceid": "A3CE929D0E0E4736", "x-b3-spanid": B3_SPAN})
    assert link.context.trace_id == 0xA3CE929D0E0E4736
    assert not link.context.trace_flags.sampled
    (link,) = untrusted_links({"x-b3-traceid": B3_TRACE, "x-b3-spanid": B3_SPAN, "x-b3-flags": "1"})
    assert link.context.trace_flags == TraceFlags(TraceFlags.SAMPLED)
    (link,) = untrusted_links({"b3": f"{B3_TRACE}-{B3_SPAN}-d-0020000000000001"})
    assert link.context.trace_flags.sampled


def test_untrusted_links_deduplicates_the_same_context():
    same = {"traceparent": TRACEPARENT, "b3": f"{INJECTED_TRACE}-{INJECTED_SPAN}"}
    assert len(untrusted_links(same)) == 1


@pytest.mark.parametrize(
    "context",
    [
        None,
        {},
        {"traceparent": "garbage"},
        {"traceparent": f"00-{'0' * 32}-{INJECTED_SPAN}-01"},
        {"traceparent": f"00-{INJECTED_TRACE}-{'0' * 16}-01"},
        {"traceparent": f"ff-{INJECTED_TRACE}-{INJECTED_SPAN}-01"},
        {"traceparent": f"00-{INJECTED_TRACE.upper()}-{INJECTED_SPAN}-01"},
        {"traceparent": f"00-{INJECTED_TRACE}-{INJECTED_SPAN}-01-extra"},
        {"tracestate": "vendor=opaque"},
        {"b3": "1"},
        {"b3": "d"},
        {"b3": f"{B3_TRACE}-{B3_SPAN}-x"},
        {"b3": f"{B3_TRACE}-{B3_SPAN}-1-nothex"},
        {"b3": f"{B3_TRACE[:20]}-{B3_SPAN}"},
        {"b3": f"{'0' * 32}-{B3_SPAN}"},
        {"b3": "-".join(["a" * 16] * 5)},
        {"x-b3-traceid": B3_TRACE},
        {"x-b3-traceid": B3_TRACE, "x-b3-spanid": "zz" * 8},
        {"x-b3-traceid": "\u0663" * 32, "x-b3-spanid": B3_SPAN},
        {"traceparent": 42, "b3": None},
    ],
)
def test_untrusted_links_ignores_malformed_contexts(context):
    assert untrusted_links(context) == []


# --- end to end with the OpenTelemetry SDK ------------------------------------------------


@pytest.fixture
def tracing():
    exporter = InMemorySpanExporter()
    # Parent-based, and never sampling a root: a span is recorded only if its parent says so.
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


class InstrumentedASGIApp:
    """What the OTel ASGI instrumentation does: extract from the headers, start a span."""

    def __init__(self, tracer):
        self.tracer = tracer
        self.spans = []

    async def __call__(self, scope, receive, send):
        context = propagate.extract(header_dict(scope))
        state = scope.get("state") or {}
        links = untrusted_links(state.get(UNTRUSTED_CONTEXT_KEY))
        with self.tracer.start_as_current_span("GET /", context=context, links=links) as span:
            self.spans.append(span)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def test_untrusted_traceparent_does_not_decide_trace_id_or_sampling(tracing):
    tracer, exporter = tracing
    injected = int(INJECTED_TRACE, 16)
    app = InstrumentedASGIApp(tracer)
    middleware = TraceContextASGIMiddleware(app, MESH)
    headers = [("traceparent", TRACEPARENT), *OTHER]

    run_asgi(middleware, asgi_scope("203.0.113.7", headers))
    (span,) = app.spans
    assert span.get_span_context().trace_id != injected
    assert span.get_span_context().is_valid
    assert not span.get_span_context().trace_flags.sampled  # the sampled flag did not force it
    assert exporter.get_finished_spans() == ()

    # The same request from the mesh continues the caller's trace, sampled as it asked.
    run_asgi(middleware, asgi_scope("10.0.0.7", headers))
    trusted = app.spans[1].get_span_context()
    assert trusted.trace_id == injected
    (finished,) = exporter.get_finished_spans()
    assert finished.parent.span_id == int(INJECTED_SPAN, 16)


def test_untrusted_context_becomes_a_link_on_the_new_root():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # always-on root sampler, so the new root is recorded
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = InstrumentedASGIApp(provider.get_tracer("test"))
    run_asgi(TraceContextASGIMiddleware(app, MESH), asgi_scope("203.0.113.7", PROPAGATION))

    (span,) = exporter.get_finished_spans()
    assert span.parent is None
    assert span.context.trace_id not in {int(INJECTED_TRACE, 16), int(B3_TRACE, 16)}
    assert [link.context.trace_id for link in span.links] == [
        int(INJECTED_TRACE, 16),
        int(B3_TRACE, 16),
    ]
    assert all(link.attributes["spansieve.untrusted"] is True for link in span.links)
    provider.shutdown()


def test_wsgi_end_to_end_gets_a_new_trace_id(tracing):
    tracer, _ = tracing
    spans = []

    def instrumented(environ, start_response):
        carrier = {
            key[5:].lower().replace("_", "-"): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        with tracer.start_as_current_span("GET /", context=propagate.extract(carrier)) as span:
            spans.append(span.get_span_context())
        start_response("204 No Content", [])
        return [b""]

    middleware = TraceContextWSGIMiddleware(instrumented, MESH, "drop")
    run_wsgi(middleware, wsgi_environ("203.0.113.7", [("traceparent", TRACEPARENT)]))
    run_wsgi(middleware, wsgi_environ("10.1.1.1", [("traceparent", TRACEPARENT)]))
    assert spans[0].trace_id != int(INJECTED_TRACE, 16)
    assert spans[1].trace_id == int(INJECTED_TRACE, 16)
