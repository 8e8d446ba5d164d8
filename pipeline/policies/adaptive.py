"""adaptive (spansieve's own type): keep about ``target_spans_per_second`` spans a second.

Traces that other policies keep (errors, slow traces) come first and count against the
target; the rest are kept with a probability per root operation (service.name and name
of the root span, or of the first span when the root has not arrived), recomputed every
``interval`` from the traffic so the kept volume stays at the target when traffic
doubles or halves (see ``adaptive_rates``), with a floor of ``floor_traces_per_minute``
per operation. Whether a trace is kept depends only on its id and its operation's
probability (a 64-bit BLAKE2b hash of the id, keyed with the salt, against
``p x 2^64``: a hash against a threshold as the probabilistic policy's, a third of the
cost of its FNV-1a loop in Python), so every worker decides the same for the same trace.

The policy never drops what another policy keeps: it only says Sampled or NotSampled,
and any Sampled keeps the trace. It is told every trace's final decision
(``observes_outcome``), which is how it counts traffic and what others kept; for that it
must be a top-level policy (not nestable). The target is the fleet's: with shared state
the workers pool their traffic and compute the same probabilities; a worker on its own
aims at ``target / live workers`` (see ``adaptive_rates``).
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import Field

from pipeline.config.models import Duration, StrictModel
from pipeline.policies.adaptive_rates import AdaptiveRates, Operation
from pipeline.policies.base import Policy
from pipeline.policies.decision import NOT_SAMPLED, SAMPLED, Decision
from pipeline.policies.probabilistic import DEFAULT_SALT, MAX_UINT64
from pipeline.policies.registry import BuildContext, PolicyModel, register
from pipeline.policies.trace import UNKNOWN_SERVICE, TraceView


def root_operation(trace: TraceView) -> Operation:
    """(service.name, span name) of the root span, else of the first span."""
    spans = trace.spans
    if not spans:
        return (UNKNOWN_SERVICE, "")
    chosen = 0
    for i, span in enumerate(spans):
        if not span.parent_span_id:
            chosen = i
            break
    return (trace.service_of_span(chosen), spans[chosen].name)


class Adaptive(Policy):
    stateful = True
    observes_outcome = True

    def __init__(self, name: str, rates: AdaptiveRates, hash_salt: str = "") -> None:
        super().__init__(name)
        self.rates = rates
        # keyed once, each trace hashes on a copy; a salt over BLAKE2b's 64-byte key
        # limit is keyed by its own 64-byte digest
        key = (hash_salt or DEFAULT_SALT).encode()
        if len(key) > 64:
            key = hashlib.blake2b(key).digest()
        self._hasher = hashlib.blake2b(digest_size=8, key=key)
        self._thresholds: dict[float, int] = {}
        self._last: tuple[bytes, Operation] | None = None  # evaluate's trace, for observe

    def _operation(self, trace: TraceView) -> Operation:
        last = self._last
        if last is not None and last[0] == trace.trace_id:
            return last[1]
        operation = root_operation(trace)
        self._last = (trace.trace_id, operation)
        return operation

    def evaluate(self, trace: TraceView) -> Decision:
        probability = self.rates.probability(self._operation(trace))
        threshold = self._thresholds.get(probability)
        if threshold is None:
            if len(self._thresholds) > 10_000:
                self._thresholds.clear()
            threshold = self._thresholds[probability] = int(probability * MAX_UINT64)
        hasher = self._hasher.copy()
        hasher.update(trace.trace_id)
        hashed = int.from_bytes(hasher.digest(), "big")
        return SAMPLED if hashed <= threshold else NOT_SAMPLED

    def observe_outcome(self, trace: TraceView, sampled: bool, policy: str | None) -> None:
        kept_by_other = sampled and policy != self.name
        self.rates.observe(
            self._operation(trace), trace.span_count, kept_by_other, sampled, trace.due
        )


class AdaptiveCfg(StrictModel):
    """Keep about a target of spans a second: other policies' traces first, then a
    probability per root operation recomputed every interval."""

    target_spans_per_second: float = Field(
        gt=0, description="kept spans a second for the whole fleet, all policies together"
    )
    interval: Duration = Field(10.0, gt=0, description="how often probabilities are recomputed")
    floor_traces_per_minute: float = Field(
        1.0, ge=0, description="traces of each root operation kept a minute at least"
    )
    head_interval: Duration = Field(
        60.0,
        gt=0,
        description="how often the head-sampling rates served to SDKs move (with shared"
        " state); at least the SDKs' polling interval",
    )
    hash_salt: str = Field("", description="as the probabilistic policy; empty = its default")


class AdaptivePolicy(PolicyModel):
    type: Literal["adaptive"]
    adaptive: AdaptiveCfg


def build(config: AdaptivePolicy, context: BuildContext) -> Adaptive:
    c = config.adaptive
    shared = context.shared
    rates = AdaptiveRates(
        c.target_spans_per_second,
        c.interval,
        c.floor_traces_per_minute,
        context.clock,
        workers=shared.live_workers if shared is not None else (lambda: 1),
        exchange=shared.traffic_exchange(config.name, c.interval) if shared else None,
        head_interval=c.head_interval,
        decision_lag=context.decision_lag,
    )
    return Adaptive(config.name, rates, c.hash_salt)


register(AdaptivePolicy, build, nestable=False)
