"""trace_state: Sampled if any span's W3C tracestate has `key` with one of `values`.

The tracestate is parsed as the collector does (Go's ``trace.ParseTraceState``): members
separated by ",", empty members skipped, spaces/tabs trimmed left of the key and right of
the value, keys and values checked against the W3C grammar, at most 32 members, no
duplicate keys. A span whose tracestate does not parse does not match. Values that are ""
or whose ``len(key) + len(value) >= 256`` are ignored, as in the collector.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from pydantic import Field

from pipeline.config.models import NonEmptyStr, StrictModel
from pipeline.policies.base import Policy
from pipeline.policies.decision import NOT_SAMPLED, SAMPLED, Decision
from pipeline.policies.registry import BuildContext, PolicyModel, register
from pipeline.policies.trace import TraceView

_KEY = re.compile(
    r"(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})\Z"
)
_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]\Z")
MAX_MEMBERS = 32


def parse_tracestate(raw: str) -> dict[str, str] | None:
    """key -> value of a W3C tracestate string, or None if it is invalid."""
    out: dict[str, str] = {}
    if not raw:
        return out
    for member in raw.split(","):
        if not member:
            continue
        key, sep, value = member.partition("=")
        if not sep:
            return None
        key = key.lstrip(" \t")
        value = value.rstrip(" \t")
        if not _KEY.match(key) or not _VALUE.match(value) or key in out:
            return None
        out[key] = value
        if len(out) > MAX_MEMBERS:
            return None
    return out


class TraceState(Policy):
    def __init__(self, name: str, key: str, values: Iterable[str]) -> None:
        super().__init__(name)
        self.key = key
        self.values = frozenset(v for v in values if v and len(key) + len(v) < 256)

    def evaluate(self, trace: TraceView) -> Decision:
        key, values = self.key, self.values
        for span in trace.spans:
            raw = span.trace_state
            if not raw:
                continue
            parsed = parse_tracestate(raw)
            if parsed is not None and parsed.get(key, "") in values:
                return SAMPLED
        return NOT_SAMPLED


class TraceStateCfg(StrictModel):
    key: NonEmptyStr
    values: list[str] = Field(min_length=1)


class TraceStatePolicy(PolicyModel):
    type: Literal["trace_state"]
    trace_state: TraceStateCfg


def build(config: TraceStatePolicy, context: BuildContext) -> TraceState:
    return TraceState(config.name, config.trace_state.key, config.trace_state.values)


register(TraceStatePolicy, build)
