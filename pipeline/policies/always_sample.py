"""always_sample: every trace is Sampled."""

from __future__ import annotations

from pipeline.policies.base import Policy
from pipeline.policies.decision import SAMPLED, Decision
from pipeline.policies.trace import TraceView


class AlwaysSample(Policy):
    def evaluate(self, trace: TraceView) -> Decision:
        return SAMPLED
