"""boolean_attribute: a bool attribute (span or resource) equal to `value`.

As the collector, the value read is ``Bool()``, which is false for a non-bool attribute:
``value: false`` therefore also matches a present attribute of another type.
"""

from __future__ import annotations

from typing import Literal

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from pipeline.config.models import NonEmptyStr, StrictModel
from pipeline.policies.base import AttributePolicy
from pipeline.policies.registry import BuildContext, PolicyModel, register


class BooleanAttribute(AttributePolicy):
    def __init__(self, name: str, key: str, value: bool, invert_match: bool = False) -> None:
        super().__init__(name, key, invert_match)
        self.value = value

    def on_resource(self, value: AnyValue) -> bool:
        return value.bool_value == self.value


class BooleanAttributeCfg(StrictModel):
    key: NonEmptyStr
    value: bool = False
    invert_match: bool = False


class BooleanAttributePolicy(PolicyModel):
    type: Literal["boolean_attribute"]
    boolean_attribute: BooleanAttributeCfg


def build(config: BooleanAttributePolicy, context: BuildContext) -> BooleanAttribute:
    c = config.boolean_attribute
    return BooleanAttribute(config.name, c.key, c.value, c.invert_match)


register(BooleanAttributePolicy, build)
