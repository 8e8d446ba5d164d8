from pipeline.policies.decision import NOT_SAMPLED, SAMPLED
from pipeline.policies.trace_flags import TraceFlags

from .helpers import span, view


def test_sampled_bit_in_low_byte():
    policy = TraceFlags("f")
    assert policy.evaluate(view(span(flags=0x100), span(flags=0x01))) is SAMPLED
    assert policy.evaluate(view(span(flags=0x300))) is NOT_SAMPLED
    assert policy.evaluate(view()) is NOT_SAMPLED
