"""latency: trace duration (latest span end - earliest span start) against thresholds.

Mirrors the collector's evaluator exactly, quirks included. It walks the spans in order,
keeping a running earliest start and latest end (a 0 timestamp counts as "not seen yet",
so the next span replaces it), and after EACH span checks the running duration:

* no upper bound (upper_threshold_ms == 0): Sampled once duration_ms >= threshold_ms;
* with an upper bound: Sampled once threshold_ms < duration_ms <= upper_threshold_ms.

duration_ms is the nanosecond difference truncated toward zero to milliseconds (Go's
``Duration.Milliseconds()``). Because the check runs on every prefix, a trace whose first
spans span 2 s is Sampled by a 1 s..5 s policy even if later spans stretch it to 10 s:
that is what the collector does.

Without an upper bound and without a 0 start, the running duration only grows from span
to span, so "Sampled after some span" is "Sampled after the last": the earliest start
and latest end are then taken with ``min``/``max`` in C instead of a Python loop.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Literal

from pydantic import Field, model_validator

from pipeline.config.models import StrictModel, custom_error
from pipeline.policies.base import Policy
from pipeline.policies.decision import NOT_SAMPLED, SAMPLED, Decision
from pipeline.policies.registry import BuildContext, PolicyModel, register
from pipeline.policies.trace import TraceView

_INT64 = 1 << 63
_END = itemgetter(1)


def _go_ms(nanos: int) -> int:
    """Go's Time.Sub saturates at +-2^63 ns; Duration.Milliseconds truncates toward 0."""
    if nanos >= _INT64:
        nanos = _INT64 - 1
    elif nanos < -_INT64:
        nanos = -_INT64
    return int(nanos / 1_000_000) if nanos < 0 else nanos // 1_000_000


class Latency(Policy):
    def __init__(self, name: str, threshold_ms: int, upper_threshold_ms: int = 0) -> None:
        super().__init__(name)
        self.threshold_ms = threshold_ms
        self.upper_threshold_ms = upper_threshold_ms

    def evaluate(self, trace: TraceView) -> Decision:
        lower, upper = self.threshold_ms, self.upper_threshold_ms
        times = trace.times
        if upper == 0 and times:
            first = min(times)[0]
            if first != 0:  # no "not seen yet" start: the duration only grows
                last = max(times, key=_END)[1]
                return SAMPLED if _go_ms(last - first) >= lower else NOT_SAMPLED
        first = 0
        last = 0
        for start, end in times:
            if first == 0 or start < first:
                first = start
            if last == 0 or end > last:
                last = end
            ms = _go_ms(last - first)
            if upper == 0:
                if ms >= lower:
                    return SAMPLED
            elif lower < ms <= upper:
                return SAMPLED
        return NOT_SAMPLED


class LatencyCfg(StrictModel):
    """Trace duration = latest span end - earliest span start."""

    threshold_ms: int = Field(0, ge=0, description="lower bound (ms); inclusive without upper")
    upper_threshold_ms: int = Field(0, ge=0, description="upper bound (ms); 0 = none")

    @model_validator(mode="after")
    def _bounds(self) -> LatencyCfg:
        if self.upper_threshold_ms and self.upper_threshold_ms <= self.threshold_ms:
            raise custom_error(
                "upper_threshold_ms ({upper}) must be greater than threshold_ms ({lower}), "
                "or 0 for no upper bound",
                ("upper_threshold_ms",),
                upper=self.upper_threshold_ms,
                lower=self.threshold_ms,
            )
        return self


class LatencyPolicy(PolicyModel):
    type: Literal["latency"]
    latency: LatencyCfg = LatencyCfg()


def build(config: LatencyPolicy, context: BuildContext) -> Latency:
    c = config.latency
    return Latency(config.name, c.threshold_ms, c.upper_threshold_ms)


register(LatencyPolicy, build)
