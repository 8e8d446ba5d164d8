from pipeline.policies.always_sample import AlwaysSample
from pipeline.policies.decision import SAMPLED

from .helpers import span, view


def test_always():
    assert AlwaysSample("a").evaluate(view()) is SAMPLED
    assert AlwaysSample("a").evaluate(view(span(status=2))) is SAMPLED
