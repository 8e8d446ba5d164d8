"""always_sample: every trace is Sampled."""

from __future__ import annotations

from typing import Literal

from pipeline.policies.base import Policy
from pipeline.policies.decision import SAMPLED, Decision
from pipeline.policies.registry import BuildContext, PolicyModel, register
from pipeline.policies.trace import TraceView


class AlwaysSample(Policy):
    def evaluate(self, trace: TraceView) -> Decision:
        return SAMPLED


class AlwaysSamplePolicy(PolicyModel):
    type: Literal["always_sample"]


def build(config: AlwaysSamplePolicy, context: BuildContext) -> AlwaysSample:
    return AlwaysSample(config.name)


register(AlwaysSamplePolicy, build)
