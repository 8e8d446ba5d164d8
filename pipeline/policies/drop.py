"""drop: Dropped if every sub-policy samples (an AND that drops instead of keeping).

As the collector: sub-policies run in order, the first NotSampled or InvertNotSampled
ends it with NotSampled, an Error ends it with Error. Drop policies are evaluated before
all others, and one Dropped decision drops the trace whatever the rest say.
"""

from __future__ import annotations

from pipeline.policies.and_ import And
from pipeline.policies.decision import DROPPED, Decision


class Drop(And):
    ALL_SAMPLED: Decision = DROPPED
