"""SDK mode: spans made through the OpenTelemetry SDK match the generated ground truth."""

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from pipeline.loadgen.generator import TraceGenerator, encode_request
from pipeline.loadgen.sdk import SdkEmitter
from pipeline.loadgen.topology import load_topology


def spans_by_id(request) -> dict:
    out = {}
    for resource_spans in request.resource_spans:
        resource = {kv.key: kv.value for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out[(span.trace_id, span.span_id)] = (resource, span)
    return out


def test_sdk_spans_carry_the_generated_ids_parents_times_and_status():
    generator = TraceGenerator(load_topology("topologies/estate-30.yaml"), 8)
    traces = [t for n in range(200) for t in generator.generate(1_700_000_000 * 10**9 + n, 0)]
    emitter = SdkEmitter()
    for trace in traces:
        emitter.emit(trace)
    made = [span for buffer in emitter.buffers.values() for span in buffer]
    assert len(made) == sum(len(t.spans) for t in traces)

    ours = spans_by_id(encode_request(traces))
    theirs = spans_by_id(encode_spans(made))
    assert ours.keys() == theirs.keys()
    for key, (resource, span) in theirs.items():
        expected_resource, expected = ours[key]
        assert resource == expected_resource
        for field in (
            "parent_span_id",
            "name",
            "kind",
            "start_time_unix_nano",
            "end_time_unix_nano",
            "events",
            "links",
            "flags",
        ):
            assert getattr(span, field) == getattr(expected, field), field
        assert span.status == expected.status
        assert {kv.key: kv.value for kv in span.attributes} == {
            kv.key: kv.value for kv in expected.attributes
        }
