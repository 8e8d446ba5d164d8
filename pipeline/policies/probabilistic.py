"""The collector's probabilistic policy: FNV-1a 64 over salt + trace id, under a threshold.

Same trace id and salt give the same decision as the OpenTelemetry Collector, so a trace
sampled by one system is sampled by the other.
"""

from __future__ import annotations

DEFAULT_SALT = "default-hash-seed"
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK = 0xFFFFFFFFFFFFFFFF
MAX_UINT64 = _MASK


def fnv1a_64(data: bytes, state: int = _FNV_OFFSET) -> int:
    """64-bit FNV-1a of data, continuing from state (so salt and id can be fed in turn)."""
    for byte in data:
        state = ((state ^ byte) * _FNV_PRIME) & _MASK
    return state


def trace_hash(trace_id: bytes, salt: str = DEFAULT_SALT) -> int:
    return fnv1a_64(trace_id, fnv1a_64(salt.encode()))


def threshold(percentage: float) -> int:
    """Largest hash that samples: floor((2^64 - 1) * percentage / 100)."""
    if percentage >= 100:
        return MAX_UINT64
    return int(MAX_UINT64 * percentage) // 100 if percentage > 0 else -1


def is_sampled(trace_id: bytes, percentage: float, salt: str = DEFAULT_SALT) -> bool:
    return trace_hash(trace_id, salt) <= threshold(percentage)
