"""Span metrics from a real worker (SPANSIEVE_SPAN_METRICS=true): exact calls per service
on the red-metrics topic, read with confluent-kafka and decoded with opentelemetry-proto."""

from __future__ import annotations

import bisect
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import jsonschema
import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from pipeline.config.settings import Settings
from pipeline.local.run import wait_until
from pipeline.wire.metrics_json import json_schema
from tests.integration.sampling_helpers import (
    BASE_NS,
    make_span,
    post,
    request_of,
    sampling_pipeline,
    worker_metrics,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipeline(pipeline_settings: Settings, tmp_path_factory):
    settings = pipeline_settings.model_copy(
        update={
            "span_metrics": True,
            "decision_wait": 2.0,
            "span_metrics_window": 2.0,
            "span_metrics_grace": 1.0,
        }
    )
    policies = "decision_wait: 2s\npolicies:\n  - {name: errors, type: status_code, " + (
        "status_code: {status_codes: [ERROR]}}\n"
    )
    folder = tmp_path_factory.mktemp("span-metrics")
    with sampling_pipeline(settings, folder, policies) as running:
        yield running


def read_metrics(
    settings: Settings, topic: str, seconds: float
) -> list[tuple[bytes, ExportMetricsServiceRequest]]:
    """Every (key, decoded request) on ``<prefix>-<topic>``, read from offset 0 for ``seconds``."""
    return [
        (key, ExportMetricsServiceRequest.FromString(value))
        for key, value in read_raw(settings, topic, seconds)
    ]


def read_raw(
    settings: Settings, topic: str, seconds: float, headers: list | None = None
) -> list[tuple[bytes, bytes]]:
    """Every (key, value) on ``<prefix>-<topic>``, from offset 0 for ``seconds``; the
    messages' headers go to ``headers`` when given."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"readback-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    name = settings.topic(topic)
    consumer.assign([TopicPartition(name, p, 0) for p in range(settings.partitions)])
    out = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                if message.error() or not message.value():
                    continue
                out.append((message.key(), message.value()))
                if headers is not None:
                    headers.append(dict(message.headers() or []))
    finally:
        consumer.close()
    return out


CALLS = "traces.span.metrics.calls"


def points(request: ExportMetricsServiceRequest, name: str) -> Iterator:
    """The data points of metric ``name`` (a Sum's or a Histogram's) in ``request``."""
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    kind = metric.WhichOneof("data")
                    yield from getattr(metric, kind).data_points


def text_attributes(point) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in point.attributes}


def calls_per_service(settings: Settings, seconds: float) -> tuple[Counter, list]:
    """Sum of traces.span.metrics.calls per service.name over the red-metrics topic."""
    calls: Counter = Counter()
    keys = []
    for key, request in read_metrics(settings, "red-metrics", seconds):
        keys.append(key)
        for point in points(request, CALLS):
            calls[text_attributes(point)["service.name"]] += point.as_int
    return calls, keys


def test_red_metrics_topic_counts_every_span_once(pipeline):
    gateway, _ = pipeline
    rng = random.Random(12)
    shift = time.time_ns() - BASE_NS  # spans end now: windows close as event time moves on
    expected: Counter = Counter()
    for n in range(40):
        trace_id = rng.randbytes(16)
        root = make_span(trace_id, name="GET /")
        child = make_span(trace_id, root.span_id, "charge", start_ms=1, error=n % 4 == 0)
        extra = [make_span(trace_id, root.span_id, f"step{k}", start_ms=2) for k in range(n % 3)]
        for span in (root, child, *extra):
            span.start_time_unix_nano += shift
            span.end_time_unix_nano += shift
        post(gateway, request_of({"web": [root, *extra], "payments": [child]}))
        expected["web"] += 1 + len(extra)
        expected["payments"] += 1
    # decision_wait 2 s + window 2 s + grace 1 s, then ticks and Kafka: well within 30 s.
    deadline = time.monotonic() + 60
    calls: Counter = Counter()
    while time.monotonic() < deadline:
        calls, keys = calls_per_service(gateway, 3)
        if calls == expected:
            break
    assert calls == expected
    time.sleep(4)  # nothing counted twice later on
    calls, keys = calls_per_service(gateway, 3)
    assert calls == expected
    assert len(keys) == len(set(keys))


# Service names used only by the service-graph test (the topic prefix is shared).
FRONTEND, CHECKOUT, NOTIFIER = "sg-frontend", "sg-checkout", "sg-notifier"
SG_SERVICES = {FRONTEND, CHECKOUT, NOTIFIER}
SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5


def service_graph_totals(settings: Settings, seconds: float) -> tuple[Counter, Counter, list]:
    """request_total and request_failed_total per (client, server, connection_type) of the
    edges touching this test's services, over the service-graph topic."""
    totals: Counter = Counter()
    failed: Counter = Counter()
    keys = []
    wanted = {
        "traces_service_graph_request_total": totals,
        "traces_service_graph_request_failed_total": failed,
    }
    for key, request in read_metrics(settings, "service-graph", seconds):
        keys.append(key)
        for name, counter in wanted.items():
            for point in points(request, name):
                attrs = text_attributes(point)
                edge = (attrs["client"], attrs["server"], attrs["connection_type"])
                if SG_SERVICES & {edge[0], edge[1]}:
                    counter[edge] += point.as_int
    return totals, failed, keys


def three_tier_trace(trace_id: bytes, shift: int, checkout_error: bool):
    """frontend SERVER -> frontend CLIENT -> checkout SERVER -> {checkout CLIENT (postgres
    'orders', no server child), checkout PRODUCER -> notifier CONSUMER}."""
    root = make_span(trace_id, name="GET /cart", duration_ms=50)
    call = make_span(trace_id, root.span_id, "POST /checkout", start_ms=1, duration_ms=40)
    served = make_span(
        trace_id, call.span_id, "POST /checkout", start_ms=2, duration_ms=30, error=checkout_error
    )
    query = make_span(trace_id, served.span_id, "INSERT orders", start_ms=3, duration_ms=5)
    publish = make_span(trace_id, served.span_id, "order-placed publish", start_ms=9)
    consume = make_span(trace_id, publish.span_id, "order-placed process", start_ms=20)
    for span, kind in (
        (root, SERVER),
        (call, CLIENT),
        (served, SERVER),
        (query, CLIENT),
        (publish, PRODUCER),
        (consume, CONSUMER),
    ):
        span.kind = kind
        span.start_time_unix_nano += shift
        span.end_time_unix_nano += shift
    query.attributes.add(key="db.system").value.string_value = "postgresql"
    query.attributes.add(key="db.name").value.string_value = "orders"
    publish.attributes.add(key="messaging.system").value.string_value = "kafka"
    return request_of(
        {FRONTEND: [root, call], CHECKOUT: [served, query, publish], NOTIFIER: [consume]}
    )


def test_service_graph_topic_counts_every_edge_once(pipeline):
    gateway, _ = pipeline
    traces = 5
    shift = time.time_ns() - BASE_NS  # spans end now: windows close as event time moves on
    for n in range(traces):
        post(gateway, three_tier_trace(uuid.uuid4().bytes, shift, n == 0))
    expected = Counter(
        {
            ("user", FRONTEND, "virtual_node"): traces,
            (FRONTEND, CHECKOUT, ""): traces,
            (CHECKOUT, "orders", "database"): traces,
            (CHECKOUT, NOTIFIER, "messaging_system"): traces,
        }
    )
    # The checkout SERVER span is the server side of frontend -> checkout only.
    expected_failed = Counter({(FRONTEND, CHECKOUT, ""): 1})
    deadline = time.monotonic() + 40
    totals: Counter = Counter()
    failed: Counter = Counter()
    while time.monotonic() < deadline:
        totals, failed, keys = service_graph_totals(gateway, 3)
        if totals == expected and failed == expected_failed:
            break
    assert totals == expected
    assert failed == expected_failed
    time.sleep(4)  # nothing counted twice later on
    totals, failed, keys = service_graph_totals(gateway, 3)
    assert totals == expected
    assert failed == expected_failed
    assert len(keys) == len(set(keys))
    # The same traces' service-map documents (Data Prepper's shape) on <prefix>-service-map.
    relationships = set()
    for _key, value in read_raw(gateway, "service-map", 3):
        for doc in orjson.loads(value):
            if doc["serviceName"] in SG_SERVICES:
                far = doc["destination"] or doc["target"]
                relationships.add((doc["serviceName"], doc["kind"], far and far["domain"]))
    assert relationships >= {
        (FRONTEND, "SPAN_KIND_CLIENT", CHECKOUT),
        (CHECKOUT, "SPAN_KIND_SERVER", CHECKOUT),
        (CHECKOUT, "SPAN_KIND_PRODUCER", NOTIFIER),
        (NOTIFIER, "SPAN_KIND_CONSUMER", NOTIFIER),
    }


def test_counts_stay_exact_when_a_worker_is_killed_mid_window(
    pipeline_settings: Settings, tmp_path
):
    """Two workers share the partitions; one is killed with SIGKILL while traces flow.
    The survivor restores the open windows from the checkpoints saved with the decisions
    and counts again only what they do not hold: per service, the calls on the topic
    (one message per window and partition; a window sent twice counts once) equal the
    spans sent."""
    settings = pipeline_settings.model_copy(
        update={
            "span_metrics": True,
            "span_metrics_window": 2.0,
            "span_metrics_grace": 1.0,
        }
    )
    policies = "decision_wait: 2s\npolicies:\n  - {name: errors, type: status_code, " + (
        "status_code: {status_codes: [ERROR]}}\n"
    )
    rng = random.Random(21)
    expected: Counter = Counter()
    with sampling_pipeline(settings, tmp_path, policies, workers=2) as (gateway, workers):
        (_, first_process), (survivor, _) = workers
        assert wait_until(
            lambda: all(
                worker_metrics(w).get("spansieve_sampler_partitions_adopted_total", 0) > 0
                for w, _ in workers
            ),
            "both workers own partitions",
            60,
        ), "the partitions were not shared between the two workers"
        shift = time.time_ns() - BASE_NS
        started = time.monotonic()
        killed = False
        while time.monotonic() - started < 12:
            if not killed and time.monotonic() - started > 5:
                first_process.kill()  # no shutdown: open windows and in-flight sends lost
                killed = True
            spans_by_service: dict[str, list] = {"web": [], "payments": []}
            for n in range(10):
                trace_id = rng.randbytes(16)
                now_shift = shift + int((time.monotonic() - started) * 1e9)
                root = make_span(trace_id, name="GET /")
                child = make_span(trace_id, root.span_id, "charge", start_ms=1, error=n == 0)
                for span in (root, child):
                    span.start_time_unix_nano += now_shift
                    span.end_time_unix_nano += now_shift
                spans_by_service["web"].append(root)
                spans_by_service["payments"].append(child)
            post(gateway, request_of(spans_by_service))
            expected["web"] += 10
            expected["payments"] += 10
            time.sleep(0.2)
        deadline = time.monotonic() + 90
        calls: Counter = Counter()
        while time.monotonic() < deadline:
            calls = latest_calls_per_service(gateway, 3)
            if calls == expected:
                break
        assert calls == expected
        assert worker_metrics(survivor).get("spansieve_sampler_partitions_adopted_total", 0) > 0


def latest_calls_per_service(settings: Settings, seconds: float) -> Counter:
    """calls per service, counting only the last message of each key (partition, window)."""
    latest = dict(read_metrics(settings, "red-metrics", seconds))
    calls: Counter = Counter()
    for request in latest.values():
        for point in points(request, CALLS):
            calls[text_attributes(point)["service.name"]] += point.as_int
    return calls


def test_the_worker_exposes_cumulative_series_with_exemplars_to_prometheus(pipeline):
    """/metrics in OpenMetrics: the connector's names, cumulative calls, trace exemplars."""
    gateway, workers = pipeline
    ((worker, _),) = workers
    shift = time.time_ns() - BASE_NS
    sent = 12
    for n in range(sent):
        trace_id = uuid.uuid4().bytes
        root = make_span(trace_id, name="GET /prom", error=n % 3 == 0)
        root.start_time_unix_nano += shift
        root.end_time_unix_nano += shift
        post(gateway, request_of({"prom-web": [root]}))
    url = f"http://127.0.0.1:{worker.worker_web_port}/metrics"
    accept = {"Accept": "application/openmetrics-text; version=1.0.0"}

    def prom_calls() -> tuple[float, str]:
        reply = httpx.get(url, headers=accept)
        assert reply.headers["content-type"].startswith("application/openmetrics-text")
        total = 0.0
        for family in text_string_to_metric_families(reply.text):
            for sample in family.samples:
                if (
                    sample.name == "traces_span_metrics_calls_total"
                    and sample.labels.get("service_name") == "prom-web"
                ):
                    total += sample.value
        return total, reply.text

    assert wait_until(lambda: prom_calls()[0] == sent, "calls on /metrics", 60)
    exemplars = [
        sample.exemplar.labels
        for family in text_string_to_metric_families(prom_calls()[1])
        for sample in family.samples
        if sample.name == "traces_span_metrics_duration_milliseconds_bucket"
        and sample.labels.get("service_name") == "prom-web"
        and sample.exemplar is not None
    ]
    assert exemplars and all(len(labels["trace_id"]) == 32 for labels in exemplars)


def test_the_topics_carry_otlp_json_when_asked(pipeline_settings: Settings, tmp_path):
    """SPANSIEVE_SPAN_METRICS_ENCODING=json: OTLP/JSON that the published JSON Schema
    accepts, a content-type header saying so, and the same counts."""
    settings = pipeline_settings.model_copy(
        update={
            "span_metrics": True,
            "span_metrics_encoding": "json",
            "span_metrics_window": 2.0,
            "span_metrics_grace": 1.0,
        }
    )
    policies = "decision_wait: 2s\npolicies:\n  - {name: all, type: always_sample}\n"
    with sampling_pipeline(settings, tmp_path, policies) as (gateway, _workers):
        shift = time.time_ns() - BASE_NS
        for n in range(6):
            root = make_span(uuid.uuid4().bytes, name="GET /json", error=n == 0)
            root.start_time_unix_nano += shift
            root.end_time_unix_nano += shift
            post(gateway, request_of({"json-web": [root]}))
        schema = json_schema()
        calls = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and calls < 6:
            headers: list = []
            messages = read_raw(gateway, "red-metrics", 3, headers)
            calls = 0
            for (_key, value), header in zip(messages, headers, strict=True):
                assert header["content-type"] == b"application/json"
                document = orjson.loads(value)
                jsonschema.validate(document, schema)
                for rm in document["resourceMetrics"]:
                    for sm in rm["scopeMetrics"]:
                        for metric in sm["metrics"]:
                            if metric["name"] == "traces.span.metrics.calls":
                                calls += sum(int(p["asInt"]) for p in metric["sum"]["dataPoints"])
        assert calls == 6


DEFAULT_BOUNDS_MS = (2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10000, 15000)


def red_series(settings: Settings, seconds: float) -> dict:
    """(window start, service, span name, status code) -> [calls, bucket counts] summed
    over partitions, from the red-metrics topic (the last message of each key)."""
    series: dict = {}
    for request in dict(read_metrics(settings, "red-metrics", seconds)).values():
        for point in points(request, "traces.span.metrics.duration"):
            attrs = text_attributes(point)
            key = (
                point.start_time_unix_nano,
                attrs["service.name"],
                attrs["span.name"],
                attrs["status.code"],
            )
            calls, buckets = series.get(key, (0, [0] * (len(DEFAULT_BOUNDS_MS) + 1)))
            series[key] = (
                calls + point.count,
                [a + b for a, b in zip(buckets, point.bucket_counts, strict=True)],
            )
    return series


def test_exact_calls_errors_and_buckets_over_several_windows_and_partitions(pipeline):
    """Known spans: three windows, durations in five buckets, errors; one trace per span
    so the traces spread over every partition."""
    gateway, _ = pipeline
    window_ns = 2_000_000_000
    now = time.time_ns()
    # Spans end in the next three windows: a span's window must still be open when its
    # trace is decided (decision_wait later), or it counts, late, into the oldest open one.
    first_window = now - now % window_ns + window_ns
    durations_ms = (1, 5, 30, 300, 3000)
    expected: dict = {}
    requests = []
    for window in range(3):
        for n in range(20):
            duration = durations_ms[n % len(durations_ms)]
            error = n % 7 == 0
            end = first_window + window * window_ns + 100_000_000 + n * 50_000_000
            span = make_span(uuid.uuid4().bytes, name="GET /exact", error=error)
            span.end_time_unix_nano = end
            span.start_time_unix_nano = end - duration * 1_000_000
            requests.append(request_of({"exact-web": [span]}))
            key = (
                first_window + window * window_ns,
                "exact-web",
                "GET /exact",
                "STATUS_CODE_ERROR" if error else "STATUS_CODE_UNSET",
            )
            calls, buckets = expected.get(key, (0, [0] * (len(DEFAULT_BOUNDS_MS) + 1)))
            buckets[bisect.bisect_left(DEFAULT_BOUNDS_MS, duration)] += 1
            expected[key] = (calls + 1, buckets)
    # Sent as concurrent exporters send: one request at a time waits a gateway linger each.
    with ThreadPoolExecutor(10) as senders:
        list(senders.map(lambda request: post(gateway, request), requests))
    deadline = time.monotonic() + 60
    found: dict = {}
    while time.monotonic() < deadline:
        found = {k: v for k, v in red_series(gateway, 3).items() if k[1] == "exact-web"}
        if found == expected:
            break
    assert found == expected


def test_the_overflow_series_once_a_service_has_too_many(pipeline_settings: Settings, tmp_path):
    """max_series_per_service 3: one trace of 8 differently named spans of one service
    (so one partition, one window) gives 3 series and an overflow series of 5 calls."""
    settings = pipeline_settings.model_copy(
        update={
            "span_metrics": True,
            "span_metrics_window": 2.0,
            "span_metrics_grace": 1.0,
            "span_metrics_max_series_per_service": 3,
        }
    )
    policies = "decision_wait: 2s\npolicies:\n  - {name: all, type: always_sample}\n"
    with sampling_pipeline(settings, tmp_path, policies) as (gateway, _workers):
        trace_id = uuid.uuid4().bytes
        shift = time.time_ns() + 1_000_000_000 - BASE_NS
        root = make_span(trace_id, name="n0")
        spans = [root] + [make_span(trace_id, root.span_id, f"n{k}") for k in range(1, 8)]
        for span in spans:
            span.start_time_unix_nano += shift
            span.end_time_unix_nano += shift
        post(gateway, request_of({"ovf": spans}))
        series: Counter = Counter()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(series.values()) < 8:
            series = Counter()
            for _key, request in read_metrics(gateway, "red-metrics", 3):
                for point in points(request, CALLS):
                    attrs = {kv.key: kv.value for kv in point.attributes}
                    overflow = attrs.get("otel.metric.overflow")
                    name = "overflow" if overflow and overflow.bool_value else None
                    series[name or attrs["span.name"].string_value] += point.as_int
    assert sum(series.values()) == 8
    assert series["overflow"] == 5
    assert len(series) == 4  # three named series and the overflow series
