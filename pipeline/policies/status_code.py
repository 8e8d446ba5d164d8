"""status_code: Sampled if any span's status code is one of the listed (OK, ERROR, UNSET)."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.proto.trace.v1.trace_pb2 import Status

from pipeline.policies.base import Policy
from pipeline.policies.decision import NOT_SAMPLED, SAMPLED, Decision
from pipeline.policies.trace import TraceView

CODES = {
    "UNSET": Status.STATUS_CODE_UNSET,
    "OK": Status.STATUS_CODE_OK,
    "ERROR": Status.STATUS_CODE_ERROR,
}


class StatusCode(Policy):
    def __init__(self, name: str, status_codes: Iterable[str]) -> None:
        super().__init__(name)
        names = list(status_codes)
        if not names:
            raise ValueError("expected at least one status code to filter on")
        unknown = [n for n in names if n not in CODES]
        if unknown:
            raise ValueError(f"unknown status code {unknown[0]!r}, supported: OK, ERROR, UNSET")
        self.codes = frozenset(CODES[n] for n in names)

    def evaluate(self, trace: TraceView) -> Decision:
        codes = self.codes
        for span in trace.spans:
            if span.status.code in codes:
                return SAMPLED
        return NOT_SAMPLED
