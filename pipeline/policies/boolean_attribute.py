"""boolean_attribute: a bool attribute (span or resource) equal to `value`.

As the collector, the value read is ``Bool()``, which is false for a non-bool attribute:
``value: false`` therefore also matches a present attribute of another type.
"""

from __future__ import annotations

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from pipeline.policies.base import AttributePolicy


class BooleanAttribute(AttributePolicy):
    def __init__(self, name: str, key: str, value: bool, invert_match: bool = False) -> None:
        super().__init__(name, key, invert_match)
        self.value = value

    def on_resource(self, value: AnyValue) -> bool:
        return value.bool_value == self.value
