"""numeric_attribute: an int attribute (span or resource) within [min_value, max_value].

As the collector: a bound of 0 means "no bound" (min -> -2^63, max -> 2^63-1), and the
value read is ``Int()``, which is 0 for a non-int attribute (a double 3.7 or a string
"500" reads as 0, and so matches a range that contains 0).
"""

from __future__ import annotations

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from pipeline.policies.base import AttributePolicy

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
