"""The walking skeleton's sampling rule: keep traces with an error, plus a percentage.

A stand-in for the YAML policy engine: same shape of answer (keep?, deciding policy).
"""

from __future__ import annotations

from pipeline.otlp import TraceSummary
from pipeline.policies.probabilistic import is_sampled


def decide(trace_id: bytes, summary: TraceSummary, percentage: float) -> tuple[bool, str]:
    """(keep, name of the deciding policy)."""
    if summary.has_error:
        return True, "errors"
    if is_sampled(trace_id, percentage):
        return True, "probabilistic"
    return False, "none"
