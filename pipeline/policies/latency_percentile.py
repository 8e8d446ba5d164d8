"""latency_percentile (spansieve's own type): a span slower than its operation usually is.

A fixed latency threshold keeps almost every trace of a slow operation and none of a fast
one. This policy compares each span with the running ``percentile`` (default p99) of its
own operation, (service.name, span name), over the last ``interval`` (see
``percentiles.SlidingPercentiles``): Sampled when some span's duration is above it, so
about 1 % of each operation's spans count as slow, whatever its usual latency.

* ``root_only``: compare (and count) only root spans (no parent span id), so the policy
  keeps about ``100 - percentile`` % of the traces of each root operation;
* ``min_samples``: an operation with fewer durations than this in the interval has no
  percentile yet; its spans are compared with ``threshold_ms`` alone;
* ``threshold_ms``: a floor (0 = none). A span must be slower than the percentile AND
  at least ``threshold_ms``, so a fast operation's p99 of 3 ms keeps nothing when the
  floor is 100 ms; below ``min_samples`` the floor alone decides (0: nothing is Sampled).

Every evaluated trace's durations are counted after the comparison (a trace is compared
with the traffic before it), so the policy is ``stateful``: the engine runs it on every
trace, also when another policy has decided already.

Percentiles are the fleet's when the worker shares state through Redis (the worker's
default; see ``percentiles``): every worker's counts over the interval, pooled under the
policy's name. Without it, or while Redis is unreachable, each worker uses its own counts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.config.models import Duration, StrictModel
from pipeline.policies.base import Policy
from pipeline.policies.decision import NOT_SAMPLED, SAMPLED, Decision
from pipeline.policies.percentiles import DEFAULT_SLOTS, SlidingPercentiles
from pipeline.policies.registry import BuildContext, PolicyModel, register
from pipeline.policies.trace import TraceView


class LatencyPercentile(Policy):
    stateful = True

    def __init__(
        self,
        name: str,
        percentiles: SlidingPercentiles,
        root_only: bool = False,
        threshold_ms: float = 0.0,
    ) -> None:
        super().__init__(name)
        self.percentiles = percentiles
        self.root_only = root_only
        self.floor_ns = threshold_ms * 1_000_000

    def evaluate(self, trace: TraceView) -> Decision:
        percentiles = self.percentiles
        percentiles.advance()
        slow = percentiles.slower_than_usual(
            trace.spans, trace.resource_runs, trace.run_services, self.floor_ns, self.root_only
        )
        return SAMPLED if slow else NOT_SAMPLED


class LatencyPercentileCfg(StrictModel):
    """A span slower than the running percentile of its (service, operation)."""

    percentile: float = Field(99.0, gt=0, lt=100, description="which percentile (0-100)")
    interval: Duration = Field(
        60.0, gt=0, description="the sliding interval the percentile covers (e.g. 60s, 5m)"
    )
    min_samples: int = Field(
        100, ge=1, description="durations an operation needs in the interval to have one"
    )
    threshold_ms: float = Field(
        0, ge=0, description="floor (ms): slower spans only; alone below min_samples; 0 = none"
    )
    root_only: bool = Field(False, description="compare only root spans (no parent span)")


class LatencyPercentilePolicy(PolicyModel):
    type: Literal["latency_percentile"]
    latency_percentile: LatencyPercentileCfg = LatencyPercentileCfg()


def build(config: LatencyPercentilePolicy, context: BuildContext) -> LatencyPercentile:
    c = config.latency_percentile
    exchange = None
    if context.shared is not None:
        slot_seconds = c.interval / DEFAULT_SLOTS
        exchange = context.shared.percentile_exchange(config.name, slot_seconds, DEFAULT_SLOTS)
    percentiles = SlidingPercentiles(
        c.percentile, c.interval, c.min_samples, context.clock, DEFAULT_SLOTS, exchange
    )
    return LatencyPercentile(config.name, percentiles, c.root_only, c.threshold_ms)


register(LatencyPercentilePolicy, build)
