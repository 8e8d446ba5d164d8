"""numeric_attribute: an int attribute (span or resource) within [min_value, max_value].

As the collector: a bound of 0 means "no bound" (min -> -2^63, max -> 2^63-1), and the
value read is ``Int()``, which is 0 for a non-int attribute (a double 3.7 or a string
"500" reads as 0, and so matches a range that contains 0).
"""

from __future__ import annotations

from typing import Literal

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from pydantic import Field, model_validator

from pipeline.config.models import NonEmptyStr, StrictModel, custom_error
from pipeline.policies.base import AttributePolicy
from pipeline.policies.registry import BuildContext, PolicyModel, register

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


class NumericAttribute(AttributePolicy):
    def __init__(
        self,
        name: str,
        key: str,
        min_value: int = 0,
        max_value: int = 0,
        invert_match: bool = False,
    ) -> None:
        super().__init__(name, key, invert_match)
        if min_value == 0 and max_value == 0:
            raise ValueError("at least one of min_value or max_value must be set (non-zero)")
        self.low = min_value if min_value != 0 else INT64_MIN
        self.high = max_value if max_value != 0 else INT64_MAX

    def on_resource(self, value: AnyValue) -> bool:
        return self.low <= value.int_value <= self.high


class NumericAttributeCfg(StrictModel):
    key: NonEmptyStr
    min_value: int = Field(0, description="0 means no lower bound (as the collector)")
    max_value: int = Field(0, description="0 means no upper bound (as the collector)")
    invert_match: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> NumericAttributeCfg:
        if self.min_value == 0 and self.max_value == 0:
            raise custom_error(
                "set min_value or max_value (a 0 means 'no bound', as the collector)"
            )
        if self.min_value and self.max_value and self.min_value > self.max_value:
            raise custom_error(
                "min_value ({lo}) is greater than max_value ({hi})",
                ("min_value",),
                lo=self.min_value,
                hi=self.max_value,
            )
        return self


class NumericAttributePolicy(PolicyModel):
    type: Literal["numeric_attribute"]
    numeric_attribute: NumericAttributeCfg


def build(config: NumericAttributePolicy, context: BuildContext) -> NumericAttribute:
    c = config.numeric_attribute
    return NumericAttribute(config.name, c.key, c.min_value, c.max_value, c.invert_match)


register(NumericAttributePolicy, build)
