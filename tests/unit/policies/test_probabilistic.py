"""The probabilistic policy against values computed outside this code base.

GO_THRESHOLDS were printed by a 10-line Go program using only the standard library
(math/big: SetInt(MaxUint64) * NewFloat(pct/100), .Uint64(); hash/fnv New64a) — the
computation the collector performs. `_reference_threshold` below re-derives them a second
way, with integer arithmetic only, to check the Fraction-based implementation.
"""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.policies.decision import NOT_SAMPLED, SAMPLED
from pipeline.policies.probabilistic import (
    MAX_UINT64,
    Probabilistic,
    is_sampled,
    threshold,
    trace_hash,
)

from .helpers import view

GO_THRESHOLDS = {
    0: 0,
    0.001: 184467440737095,
    0.01: 1844674407370955,
    0.1: 18446744073709551,
    1: 184467440737095519,
    2.5: 461168601842738815,
    10: 1844674407370955263,  # not floor(MAX * 10 / 100) = ...161
    12.34: 2276328218695758591,
    25: 4611686018427387903,
    33: 6087425544324152319,
    33.333: 6148853202089604095,
    50: 9223372036854775807,
    50.5: 9315605757223323647,
    66.6: 12285531553090559999,
    75: 13835058055282163711,
    99: 18262276632972455935,
    99.999: 18446559606268813311,
    100: 18446744073709551615,
    150: 18446744073709551615,
    -5: 0,
    1e-9: 184467440,
}
GO_HASHES = {  # (trace id hex, salt) -> FNV-1a 64 of salt + id
    ("00000000000000000000000000000000", "default-hash-seed"): 16254958829412527165,
    ("00000000000000000000000000000000", "my-salt"): 7959615859348368966,
    ("4bf92f3577b34da6a3ce929d0e0e4736", "default-hash-seed"): 11908981664384643253,
    ("4bf92f3577b34da6a3ce929d0e0e4736", "my-salt"): 15940483454982611258,
    ("0102030405060708090a0b0c0d0e0f10", "default-hash-seed"): 15838989281584434349,
    ("0102030405060708090a0b0c0d0e0f10", "my-salt"): 6466422796093388406,
    ("ffffffffffffffffffffffffffffffff", "default-hash-seed"): 1711019809656077869,
    ("ffffffffffffffffffffffffffffffff", "my-salt"): 8348242308961502774,
}


def _reference_threshold(pct: float) -> int:
    """MaxUint64 * (pct/100) rounded to 64 significant bits (ties to even), truncated."""
    ratio = float(pct) / 100
    if ratio <= 0:
        return 0
    num, den = ratio.as_integer_ratio()  # den is a power of two
    shift = den.bit_length() - 1
    x = MAX_UINT64 * num  # the product, scaled by 2**shift
    extra = x.bit_length() - 64
    if extra > 0:
        q, r = divmod(x, 1 << extra)
        half = 1 << (extra - 1)
        if r > half or (r == half and q & 1):
            q += 1
        x = q << extra
    value = x >> shift
    return min(value, MAX_UINT64)


def _reference_hash(data: bytes) -> int:
    h = 14695981039346656037
    for b in data:
        h ^= b
        h = (h * 1099511628211) % 2**64
    return h


@pytest.mark.parametrize(("pct", "expected"), sorted(GO_THRESHOLDS.items()))
def test_threshold_matches_go(pct, expected):
    assert threshold(pct) == expected
    assert _reference_threshold(pct) == expected


@given(st.floats(min_value=0, max_value=200, allow_nan=False))
def test_threshold_matches_reference(pct):
    assert threshold(pct) == _reference_threshold(pct)


@pytest.mark.parametrize(("key", "expected"), sorted(GO_HASHES.items()))
def test_hash_matches_go(key, expected):
    tid, salt = bytes.fromhex(key[0]), key[1]
    assert trace_hash(tid, salt) == expected
    assert _reference_hash(salt.encode() + tid) == expected


def test_nothing_saturates_at_fifty_percent():
    assert threshold(50) < threshold(50.5) < threshold(75) < threshold(99.999) < MAX_UINT64


def test_zero_percent_keeps_only_hash_zero():
    assert threshold(0) == 0  # hash <= 0: only a hash of exactly 0 (p = 2^-64) is sampled
    assert not is_sampled(bytes(16), 0)


@given(st.binary(min_size=16, max_size=16), st.floats(0, 100))
def test_policy_equals_reference(trace_id, pct):
    expected = _reference_hash(b"default-hash-seed" + trace_id) <= _reference_threshold(pct)
    decision = Probabilistic("p", pct).evaluate(view(trace_id=trace_id))
    assert decision is (SAMPLED if expected else NOT_SAMPLED)


def test_empty_salt_is_default_salt_and_salts_differ():
    tid = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
    a = Probabilistic("a", 50, "")
    b = Probabilistic("b", 50, "default-hash-seed")
    assert a.evaluate(view(trace_id=tid)) is b.evaluate(view(trace_id=tid))
    # 11908981664384643253 > 2^63 - 1: not sampled with the default salt at 50 %
    assert a.evaluate(view(trace_id=tid)) is NOT_SAMPLED
    # with "my-salt" the hash is 15940483454982611258: still above; at 90 % sampled
    assert Probabilistic("c", 90, "my-salt").evaluate(view(trace_id=tid)) is SAMPLED


def test_share_is_close_to_percentage():
    rng = random.Random(3)
    policy = Probabilistic("p", 25)
    kept = sum(policy.evaluate(view(trace_id=rng.randbytes(16))) is SAMPLED for _ in range(20000))
    assert 4700 < kept < 5300
