import os

from hypothesis import given
from hypothesis import strategies as st

from pipeline.wire.partitioner import partition_for_trace

trace_ids = st.binary(min_size=16, max_size=16)


@given(trace_ids, st.integers(min_value=1, max_value=512))
def test_partition_is_in_range_and_stable(trace_id, partitions):
    first = partition_for_trace(trace_id, partitions)
    assert 0 <= first < partitions
    assert partition_for_trace(bytes(trace_id), partitions) == first


def test_documented_function_is_crc32_modulo():
    # Fixed vectors: a change here would split traces between gateway and workers.
    assert partition_for_trace(bytes.fromhex("0af7651916cd43dd8448eb211c80319c"), 8) == 5
    assert partition_for_trace(bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736"), 12) == 9


def test_random_trace_ids_spread_over_all_partitions():
    counts = [0] * 8
    for _ in range(8000):
        counts[partition_for_trace(os.urandom(16), 8)] += 1
    assert min(counts) > 800
