import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.policies.probabilistic import (
    MAX_UINT64,
    fnv1a_64,
    is_sampled,
    threshold,
    trace_hash,
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [  # published FNV-1a 64-bit test vectors
        (b"", 0xCBF29CE484222325),
        (b"a", 0xAF63DC4C8601EC8C),
        (b"foobar", 0x85944171F73967E8),
    ],
)
def test_fnv1a_64_vectors(data, expected):
    assert fnv1a_64(data) == expected


def test_hash_feeds_salt_then_trace_id():
    trace_id = bytes(range(16))
    assert trace_hash(trace_id, "salt") == fnv1a_64(b"salt" + trace_id)


def test_threshold_edges():
    assert threshold(100) == MAX_UINT64
    assert threshold(0) == 0
    assert threshold(50) == MAX_UINT64 // 2


@given(st.binary(min_size=16, max_size=16))
def test_all_or_nothing(trace_id):
    assert is_sampled(trace_id, 100)
    assert not is_sampled(trace_id, 0)


def test_share_close_to_percentage():
    import random

    rng = random.Random(7)
    kept = sum(is_sampled(rng.randbytes(16), 10) for _ in range(20000))
    assert 1700 < kept < 2300
