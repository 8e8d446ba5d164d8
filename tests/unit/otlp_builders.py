"""Small builders of OTLP test data shared by the query tests."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from pipeline.wire.otlp import set_any_value


def add_attributes(target, values: dict[str, Any]) -> None:
    """Append ``values`` to a repeated KeyValue field."""
    for key, value in values.items():
        set_any_value(target.add(key=key).value, value)


def resource_spans(
    data: TracesData, attributes: dict[str, Any], scope: str = "", version: str = ""
):
    """A new ResourceSpans with these resource attributes and one scope; its spans."""
    added = data.resource_spans.add()
    add_attributes(added.resource.attributes, attributes)
    scope_spans = added.scope_spans.add()
    scope_spans.scope.name, scope_spans.scope.version = scope, version
    return scope_spans.spans
