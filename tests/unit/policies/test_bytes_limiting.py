from pipeline.policies.bytes_limiting import BytesLimiting
from pipeline.policies.decision import NOT_SAMPLED, SAMPLED
from pipeline.policies.trace import TraceView

from .helpers import FakeClock, span, traces, view


def test_charges_size_bytes():
    clock = FakeClock()
    policy = BytesLimiting("b", bytes_per_second=1000, burst_capacity=1500, clock=clock)
    assert policy.evaluate(view(span(), size_bytes=1200)) is SAMPLED
    assert policy.evaluate(view(span(), size_bytes=400)) is NOT_SAMPLED
    clock.advance(0.1)  # +100 bytes
    assert policy.evaluate(view(span(), size_bytes=400)) is SAMPLED
    assert policy.evaluate(view(span(), size_bytes=1501)) is NOT_SAMPLED


def test_default_burst_is_twice_the_rate():
    clock = FakeClock()
    policy = BytesLimiting("b", bytes_per_second=100, clock=clock)
    assert policy.evaluate(view(size_bytes=200)) is SAMPLED
    assert policy.evaluate(view(size_bytes=1)) is NOT_SAMPLED


def test_size_defaults_to_serialized_size():
    td = traces(({"service.name": "x" * 300}, [span(attrs={"k": "v" * 1000})]))
    assert TraceView(td, b"t" * 16).size_bytes == len(td.SerializeToString())
