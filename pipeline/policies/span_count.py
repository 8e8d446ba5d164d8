"""span_count: Sampled when min_spans <= spans in the trace <= max_spans (0 = no maximum)."""

from __future__ import annotations

from pipeline.policies.base import Policy
from pipeline.policies.decision import NOT_SAMPLED, SAMPLED, Decision
from pipeline.policies.trace import TraceView


class SpanCount(Policy):
    def __init__(self, name: str, min_spans: int = 0, max_spans: int = 0) -> None:
        super().__init__(name)
        self.min_spans = min_spans
        self.max_spans = max_spans

    def evaluate(self, trace: TraceView) -> Decision:
        n = trace.span_count
        if n >= self.min_spans and (self.max_spans == 0 or n <= self.max_spans):
            return SAMPLED
        return NOT_SAMPLED
