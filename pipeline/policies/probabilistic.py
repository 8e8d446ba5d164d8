"""The collector's probabilistic policy: FNV-1a 64 over salt + trace id, under a threshold.

Same trace id and salt give the same decision as the OpenTelemetry Collector, so a trace
sampled by one system is sampled by the other.

How the collector computes the threshold (verified against its source, the
``probabilistic`` evaluator of ``processor/tailsamplingprocessor``, in every version of it
we could read up to the newest, and against Go's ``math/big`` run on this machine):

1. ``ratio = sampling_percentage / 100`` in float64 (an IEEE double division, so 10 % is
   the double nearest 0.1, not 0.1).
2. ``2^64 - 1`` is put into a ``big.Float`` (precision 64 bits, so exact) and multiplied by
   ``ratio``; the product is rounded to 64 significant bits, round-half-to-even.
3. ``.Uint64()`` truncates that toward zero; a negative product gives 0 and a product above
   ``2^64 - 1`` (only for ratios above 1) gives ``2^64 - 1``.

It is ``Uint64`` all the way: nothing saturates at 50 % (no version we found uses
``Int64``). Consequences that differ from the naive ``floor((2^64 - 1) * pct / 100)``:

* 10 % gives 1844674407370955263, not 1844674407370955161 (0.1 is not a double);
* 0 % (and any negative percentage) gives threshold 0, and the test is ``hash <= threshold``,
  so a trace whose salted hash is exactly 0 is still sampled (probability 2^-64);
* more than 100 % samples everything.

A trace is sampled when ``fnv1a_64(salt bytes + 16 trace-id bytes) <= threshold``; an empty
salt means the default ``"default-hash-seed"``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal

from pydantic import Field

from pipeline.config.models import StrictModel
from pipeline.policies.base import Policy
from pipeline.policies.decision import NOT_SAMPLED, SAMPLED, Decision
from pipeline.policies.registry import BuildContext, PolicyModel, register
from pipeline.policies.trace import TraceView

DEFAULT_SALT = "default-hash-seed"
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK = 0xFFFFFFFFFFFFFFFF
MAX_UINT64 = _MASK
_MANTISSA_BITS = 64  # precision of the big.Float that holds 2^64 - 1


def fnv1a_64(data: bytes, state: int = _FNV_OFFSET) -> int:
    """64-bit FNV-1a of data, continuing from state (so salt and id can be fed in turn)."""
    for byte in data:
        state = ((state ^ byte) * _FNV_PRIME) & _MASK
    return state


def salt_state(salt: str = DEFAULT_SALT) -> int:
    """The FNV state after the salt: hash it once per policy, not once per trace."""
    return fnv1a_64((salt or DEFAULT_SALT).encode())


def trace_hash(trace_id: bytes, salt: str = DEFAULT_SALT) -> int:
    return fnv1a_64(trace_id, salt_state(salt))


def _round_to_bits(value: Fraction, bits: int) -> Fraction:
    """value (> 0) rounded to `bits` significant bits, ties to even (big.Float's default)."""
    # exponent e with 2^(e-1) <= value < 2^e
    e = value.numerator.bit_length() - value.denominator.bit_length()
    if value >= Fraction(2) ** e:
        e += 1
    elif value < Fraction(2) ** (e - 1):
        e -= 1
    scale = Fraction(2) ** (bits - e)
    mantissa = round(value * scale)  # Fraction.__round__ rounds half to even
    return mantissa / scale


def threshold(percentage: float) -> int:
    """The collector's threshold for a sampling percentage (see the module docstring)."""
    ratio = float(percentage) / 100.0
    if math.isnan(ratio):
        raise ValueError("sampling percentage is NaN")
    if ratio <= 0:
        return 0
    if math.isinf(ratio):
        return MAX_UINT64
    product = _round_to_bits(Fraction(MAX_UINT64) * Fraction(ratio), _MANTISSA_BITS)
    if product > MAX_UINT64:
        return MAX_UINT64
    return math.floor(product)


def is_sampled(trace_id: bytes, percentage: float, salt: str = DEFAULT_SALT) -> bool:
    return trace_hash(trace_id, salt) <= threshold(percentage)


class Probabilistic(Policy):
    """The probabilistic policy: Sampled if the salted trace-id hash is <= the threshold."""

    def __init__(self, name: str, sampling_percentage: float, hash_salt: str = "") -> None:
        super().__init__(name)
        self.threshold = threshold(sampling_percentage)
        self._state = salt_state(hash_salt)

    def evaluate(self, trace: TraceView) -> Decision:
        state = self._state
        for byte in trace.trace_id:
            state = ((state ^ byte) * _FNV_PRIME) & _MASK
        return SAMPLED if state <= self.threshold else NOT_SAMPLED


class ProbabilisticCfg(StrictModel):
    sampling_percentage: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="0-100; >= 100 samples all"
    )
    hash_salt: str = Field("", description='empty = the collector default "default-hash-seed"')


class ProbabilisticPolicy(PolicyModel):
    type: Literal["probabilistic"]
    probabilistic: ProbabilisticCfg = ProbabilisticCfg()


def build(config: ProbabilisticPolicy, context: BuildContext) -> Probabilistic:
    c = config.probabilistic
    return Probabilistic(config.name, c.sampling_percentage, c.hash_salt)


register(ProbabilisticPolicy, build)
