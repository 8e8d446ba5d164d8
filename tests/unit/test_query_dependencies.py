"""Service calls from stored spans, joined to their parents."""

from pipeline.query.dependencies import service_calls


def doc(trace: str, span: str, parent: str, service: str) -> dict:
    return {"traceId": trace, "spanId": span, "parentSpanId": parent, "serviceName": service}


def test_calls_across_services_and_to_itself_as_jaeger_counts_them():
    spans = [
        doc("t1", "a", "", "web"),
        doc("t1", "b", "a", "api"),
        doc("t1", "c", "b", "api"),  # api calling itself (an internal span)
        doc("t1", "d", "c", "db"),
        doc("t2", "e", "", "web"),
        doc("t2", "f", "e", "api"),
        doc("t2", "g", "missing", "db"),  # parent outside the window: no call
    ]
    assert service_calls(spans) == [
        {"parent": "web", "child": "api", "callCount": 2},
        {"parent": "api", "child": "api", "callCount": 1},
        {"parent": "api", "child": "db", "callCount": 1},
    ]


def test_graph_names_match_the_metrics_library():
    from pipeline.metrics.service_graph import METRIC_REQUEST_TOTAL
    from pipeline.query.dependencies import GRAPH_KIND, GRAPH_REQUESTS, graph_edges_body
    from pipeline.sink.metrics_documents import KIND_SERVICE_GRAPH

    assert GRAPH_REQUESTS == METRIC_REQUEST_TOTAL
    assert GRAPH_KIND == KIND_SERVICE_GRAPH
    body = graph_edges_body(0, 10**9, after={"client": "a", "server": "b"})
    assert body["aggs"]["edges"]["composite"]["after"] == {"client": "a", "server": "b"}
