"""The one rule that sends every span of a trace to the same Kafka partition.

partition = CRC-32 (zlib, IEEE polynomial) of the 16 trace-id bytes, modulo the number of
partitions. The gateway uses it to pick the partition it produces to; the workers use it to
know which partition a stored trace belongs to. Changing it splits traces in flight.
"""

from __future__ import annotations

import zlib


def partition_for_trace(trace_id: bytes, partitions: int) -> int:
    """Kafka partition of a trace; deterministic across processes and machines."""
    return zlib.crc32(trace_id) % partitions
