"""status_code: Sampled if any span's status code is one of the listed (OK, ERROR, UNSET)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from opentelemetry.proto.trace.v1.trace_pb2 import Status
from pydantic import Field

from pipeline.config.models import StrictModel
from pipeline.policies.base import Policy
from pipeline.policies.decision import NOT_SAMPLED, SAMPLED, Decision
from pipeline.policies.registry import BuildContext, PolicyModel, register
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
        # The view's column of codes is shared with the span metrics, which need them all.
        return NOT_SAMPLED if self.codes.isdisjoint(trace.status_codes) else SAMPLED


StatusCodeName = Literal["OK", "ERROR", "UNSET"]


class StatusCodeCfg(StrictModel):
    status_codes: list[StatusCodeName] = Field(min_length=1)


class StatusCodePolicy(PolicyModel):
    type: Literal["status_code"]
    status_code: StatusCodeCfg


def build(config: StatusCodePolicy, context: BuildContext) -> StatusCode:
    return StatusCode(config.name, config.status_code.status_codes)


register(StatusCodePolicy, build)
