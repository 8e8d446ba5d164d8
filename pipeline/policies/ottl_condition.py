"""ottl_condition: Sampled if any span matches any ``span`` condition, or any event of any
span matches any ``spanevent`` condition. The condition language is the subset
documented in ``pipeline.policies.ottl``.

``error_mode`` says what a condition that fails to evaluate does, as the collector's
OTTL condition sequences do:

* ``propagate`` (default): the policy fails; the engine logs it and records Error for
  it, which the final decision ignores (the collector counts and logs it the same way).
  Inside and/not/drop/composite the failure ends the enclosing policy with Error too.
* ``ignore``: the failing condition counts as false, a warning is logged, and the
  other conditions are still tried.
* ``silent``: like ``ignore``, without the log line.

In the subset spansieve compiles, no condition can fail at run time: every path reads a
field that every span or event has (a missing attribute reads as ``nil``) and
``ottl.compare`` is total, answering every mix of value types without raising (a type
mismatch is false for every operator except ``!=``, as in OTTL). So today the three modes
decide every trace the same way; the mode takes effect on a failure that should not
happen (a bug, or a future extension of the subset that can fail, like converters), and
a value other than the three is refused when the file is loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from pipeline.config.models import StrictModel, custom_error
from pipeline.policies import ottl
from pipeline.policies.base import Policy
from pipeline.policies.decision import NOT_SAMPLED, SAMPLED, Decision
from pipeline.policies.registry import BuildContext, PolicyModel, register
from pipeline.policies.trace import TraceView

log = logging.getLogger(__name__)


def _guarded(policy: str, condition: ottl.CompiledCondition, error_mode: str) -> ottl.Cond:
    """``condition.test`` as ``error_mode`` wants it: raising (propagate) or false on error."""
    test = condition.test
    if error_mode == "propagate":
        return test  # unwrapped: the default costs nothing
    loud = error_mode == "ignore"
    text = condition.text

    def guarded(ctx: tuple) -> bool:
        try:
            return test(ctx)
        except Exception as exc:
            if loud:
                log.warning(
                    "ottl_condition policy %s: condition %r failed (%s: %s); counted as false "
                    "(error_mode: ignore)",
                    policy,
                    text,
                    type(exc).__name__,
                    exc,
                )
            return False

    return guarded


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
        self._span_tests = [_guarded(name, c, error_mode) for c in self.span_conditions]
        self._event_tests = [_guarded(name, c, error_mode) for c in self.event_conditions]

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


class OTTLConditionCfg(StrictModel):
    error_mode: Literal["propagate", "ignore", "silent"] = Field(
        "propagate",
        description="what a condition that fails at run time does: propagate = the policy "
        "errs (Error, ignored by the final decision), ignore = counts as false and is "
        "logged, silent = counts as false; no condition of spansieve's OTTL subset can "
        "fail, so all three decide alike today",
    )
    span: list[str] = Field(default_factory=list)
    spanevent: list[str] = Field(default_factory=list)

    @field_validator("span", "spanevent")
    @classmethod
    def _conditions_parse(cls, conditions: list[str], info: ValidationInfo) -> list[str]:
        for i, text in enumerate(conditions):
            try:
                ottl.compile_condition(text, info.field_name)
            except ottl.OTTLError as exc:
                raise custom_error("{error}", (i,), error=str(exc)) from None
        return conditions

    @model_validator(mode="after")
    def _some(self) -> OTTLConditionCfg:
        if not self.span and not self.spanevent:
            raise custom_error("give at least one condition in 'span' or 'spanevent'")
        return self


class OTTLConditionPolicy(PolicyModel):
    type: Literal["ottl_condition"]
    ottl_condition: OTTLConditionCfg


def build(config: OTTLConditionPolicy, context: BuildContext) -> OTTLCondition:
    c = config.ottl_condition
    return OTTLCondition(config.name, c.span, c.spanevent, c.error_mode)


register(OTTLConditionPolicy, build)
