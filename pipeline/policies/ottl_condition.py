"""ottl_condition: Sampled if any span matches any ``span`` condition, or any event of any
span matches any ``spanevent`` condition. The condition language is the subset
documented in ``pipeline.policies.ottl``.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.policies import ottl
from pipeline.policies.base import Policy
from pipeline.policies.decision import NOT_SAMPLED, SAMPLED, Decision
from pipeline.policies.trace import TraceView


class OTTLCondition(Policy):
    def __init__(
        self,
        name: str,
        span: Iterable[str] = (),
        spanevent: Iterable[str] = (),
        error_mode: str = "propagate",
    ) -> None:
        super().__init__(name)
        if error_mode not in ottl.ERROR_MODES:
            raise ValueError(f"unknown error_mode {error_mode!r}; allowed: {ottl.ERROR_MODES}")
        self.error_mode = error_mode
        self.span_conditions = [ottl.compile_condition(c, "span") for c in span]
        self.event_conditions = [ottl.compile_condition(c, "spanevent") for c in spanevent]
        if not self.span_conditions and not self.event_conditions:
            raise ValueError("expected at least one OTTL condition to filter on")
        self._span_tests = [c.test for c in self.span_conditions]
        self._event_tests = [c.test for c in self.event_conditions]

    def attribute_keys(self) -> tuple[frozenset[str], frozenset[str]]:
        conds = [*self.span_conditions, *self.event_conditions]
        return (
            frozenset(k for c in conds for k in c.span_keys),
            frozenset(k for c in conds for k in c.resource_keys),
        )

    def evaluate(self, trace: TraceView) -> Decision:
        span_tests, event_tests = self._span_tests, self._event_tests
        resource_attrs = trace.resource_attrs
        span_attrs = trace.span_attrs
        i = 0
        for res_index, rs in enumerate(trace.resource_spans):
            res = resource_attrs[res_index]
            for ss in rs.scope_spans:
                for span in ss.spans:
                    attrs = span_attrs[i]
                    i += 1
                    if span_tests:
                        ctx = (span, attrs, res)
                        for test in span_tests:
                            if test(ctx):
                                return SAMPLED
                    if event_tests:
                        for event in span.events:
                            ctx = (event, span, attrs, res)
                            for test in event_tests:
                                if test(ctx):
                                    return SAMPLED
        return NOT_SAMPLED
