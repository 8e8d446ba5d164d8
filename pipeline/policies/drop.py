"""drop: Dropped if every sub-policy samples (an AND that drops instead of keeping).

As the collector: sub-policies run in order, the first NotSampled or InvertNotSampled
ends it with NotSampled, an Error ends it with Error. Drop policies are evaluated before
all others, and one Dropped decision drops the trace whatever the rest say.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.policies.and_ import _union_keys
from pipeline.policies.base import Policy
from pipeline.policies.decision import DROPPED, ERROR, INVERT_NOT_SAMPLED, NOT_SAMPLED, Decision
from pipeline.policies.trace import TraceView


class Drop(Policy):
    def __init__(self, name: str, subpolicies: Sequence[Policy]) -> None:
        super().__init__(name)
        self.subpolicies = list(subpolicies)
        self.stateful = any(p.stateful for p in self.subpolicies)

    def attribute_keys(self) -> tuple[frozenset[str], frozenset[str]]:
        return _union_keys(self.subpolicies)

    def evaluate(self, trace: TraceView) -> Decision:
        for sub in self.subpolicies:
            d = sub.evaluate(trace)
            if d is NOT_SAMPLED or d is INVERT_NOT_SAMPLED:
                return NOT_SAMPLED
            if d is ERROR:
                return ERROR
        return DROPPED
