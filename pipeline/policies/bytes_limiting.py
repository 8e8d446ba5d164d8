"""bytes_limiting: a token bucket of bytes over the trace's serialized protobuf size.

``bytes_per_second`` tokens per second, burst ``burst_capacity`` (default 2 x
bytes_per_second); a trace is Sampled if the bucket can give ``trace.size_bytes`` tokens
(the collector uses ``ProtoMarshaler.TracesSize`` of the buffered spans, the same
number as the serialized TracesData).

``scope: fleet`` (spansieve's option): one budget for all workers, shared through Redis
(see ``limiter.bucket_for``); the default ``worker`` gives each worker the whole budget,
as each collector instance has its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from pydantic import Field

from pipeline.config.models import StrictModel
from pipeline.policies.base import Policy
from pipeline.policies.decision import NOT_SAMPLED, SAMPLED, Decision
from pipeline.policies.limiter import Scope, TokenBucket, bucket_for, scope_field
from pipeline.policies.registry import BuildContext, PolicyModel, register
from pipeline.policies.shared import Budget
from pipeline.policies.trace import TraceView


class BytesLimiting(Policy):
    stateful = True

    def __init__(
        self,
        name: str,
        bytes_per_second: int,
        burst_capacity: int = 0,
        clock: Callable[[], float] = time.monotonic,
        bucket: Budget | None = None,
    ) -> None:
        super().__init__(name)
        burst = burst_capacity if burst_capacity > 0 else 2 * bytes_per_second
        self.bucket = bucket or TokenBucket(bytes_per_second, burst, clock)

    def evaluate(self, trace: TraceView) -> Decision:
        return SAMPLED if self.bucket.allow(trace.size_bytes) else NOT_SAMPLED


class BytesLimitingCfg(StrictModel):
    bytes_per_second: int = Field(ge=0)
    burst_capacity: int = Field(0, ge=0, description="0 = 2 x bytes_per_second")
    scope: Scope = scope_field()


class BytesLimitingPolicy(PolicyModel):
    type: Literal["bytes_limiting"]
    bytes_limiting: BytesLimitingCfg


def build(config: BytesLimitingPolicy, context: BuildContext) -> BytesLimiting:
    c = config.bytes_limiting
    burst = c.burst_capacity if c.burst_capacity > 0 else 2 * c.bytes_per_second
    bucket = bucket_for(
        c.scope, context.shared, config.name, "bytes", c.bytes_per_second, burst, context.clock
    )
    return BytesLimiting(config.name, c.bytes_per_second, c.burst_capacity, context.clock, bucket)


register(BytesLimitingPolicy, build)
