"""span_count: Sampled when min_spans <= spans in the trace <= max_spans (0 = no maximum)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.config.models import StrictModel, custom_error
from pipeline.policies.base import Policy
from pipeline.policies.decision import NOT_SAMPLED, SAMPLED, Decision
from pipeline.policies.registry import BuildContext, PolicyModel, register
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


class SpanCountCfg(StrictModel):
    min_spans: int = Field(0, ge=0)
    max_spans: int = Field(0, ge=0, description="0 = no upper bound")

    @model_validator(mode="after")
    def _bounds(self) -> SpanCountCfg:
        if self.max_spans and self.max_spans < self.min_spans:
            raise custom_error(
                "max_spans ({hi}) is less than min_spans ({lo}); use 0 for no upper bound",
                ("max_spans",),
                hi=self.max_spans,
                lo=self.min_spans,
            )
        return self


class SpanCountPolicy(PolicyModel):
    type: Literal["span_count"]
    span_count: SpanCountCfg = SpanCountCfg()


def build(config: SpanCountPolicy, context: BuildContext) -> SpanCount:
    return SpanCount(config.name, config.span_count.min_spans, config.span_count.max_spans)


register(SpanCountPolicy, build)
