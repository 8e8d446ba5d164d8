"""trace_flags: Sampled if any span has the W3C "sampled" bit in the low byte of its flags."""

from __future__ import annotations

from typing import Literal

from pipeline.policies.base import Policy
from pipeline.policies.decision import NOT_SAMPLED, SAMPLED, Decision
from pipeline.policies.registry import BuildContext, PolicyModel, register
from pipeline.policies.trace import TraceView

SAMPLED_FLAG = 0x01


class TraceFlags(Policy):
    def evaluate(self, trace: TraceView) -> Decision:
        for span in trace.spans:
            if span.flags & SAMPLED_FLAG:
                return SAMPLED
        return NOT_SAMPLED


class TraceFlagsPolicy(PolicyModel):
    type: Literal["trace_flags"]


def build(config: TraceFlagsPolicy, context: BuildContext) -> TraceFlags:
    return TraceFlags(config.name)


register(TraceFlagsPolicy, build)
