"""Per-policy decisions, with the collector's names and the collector's precedence."""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Decision(enum.Enum):
    """What one policy says about one trace (the collector's ``samplingpolicy.Decision``)."""

    NOT_SAMPLED = "NotSampled"
    SAMPLED = "Sampled"
    INVERT_NOT_SAMPLED = "InvertNotSampled"
    INVERT_SAMPLED = "InvertSampled"
    DROPPED = "Dropped"
    ERROR = "Error"  # the policy failed; the collector counts it and ignores it

    def __repr__(self) -> str:
        return f"Decision.{self.name}"


NOT_SAMPLED = Decision.NOT_SAMPLED
SAMPLED = Decision.SAMPLED
INVERT_NOT_SAMPLED = Decision.INVERT_NOT_SAMPLED
INVERT_SAMPLED = Decision.INVERT_SAMPLED
DROPPED = Decision.DROPPED
ERROR = Decision.ERROR


def combine(decisions: Iterable[Decision]) -> Decision:
    """The final decision for a set of per-policy decisions (SAMPLED, NOT_SAMPLED or DROPPED).

    Any Dropped -> Dropped; else any InvertNotSampled -> NotSampled; else any Sampled ->
    Sampled; else InvertSampled with no NotSampled -> Sampled; else NotSampled. Error
    decisions are ignored.
    """
    seen = set(decisions)
    if DROPPED in seen:
        return DROPPED
    if INVERT_NOT_SAMPLED in seen:
        return NOT_SAMPLED
    if SAMPLED in seen:
        return SAMPLED
    if INVERT_SAMPLED in seen and NOT_SAMPLED not in seen:
        return SAMPLED
    return NOT_SAMPLED
