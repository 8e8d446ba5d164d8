"""The worker's topics and its one table: raw bytes in and out, co-partitioned with the spans."""

from __future__ import annotations

import faust

from pipeline.config.settings import Settings
from pipeline.sampler.storage import BLOCK_CACHE_SIZE, MAX_WRITE_BUFFERS, WRITE_BUFFER_SIZE


def raw_topic(app: faust.App, settings: Settings, name: str) -> faust.TopicT:
    """A topic of the product (see TOPIC_NAMES) whose keys and values stay bytes."""
    return app.topic(
        settings.topic(name),
        partitions=settings.partitions,
        key_serializer="raw",
        value_serializer="raw",
    )


# Faust's RocksDB defaults (64 MiB x 3 memtables and a 2 GiB block cache per partition
# database) would hold most of the table in memory; the same settings as the trace
# buffer's own databases (pipeline.sampler.storage) instead.
ROCKSDB_OPTIONS = {
    "write_buffer_size": WRITE_BUFFER_SIZE,
    "max_write_buffer_number": MAX_WRITE_BUFFERS,
    "block_cache_size": BLOCK_CACHE_SIZE,
    "block_cache_compressed_size": BLOCK_CACHE_SIZE,  # used by python-rocksdb only
}


def raw_table(app: faust.App, name: str, partitions: int):
    """A RocksDB-backed table of bytes to bytes with modest memory settings."""
    return app.Table(
        name, partitions=partitions, key_type=bytes, value_type=bytes, options=ROCKSDB_OPTIONS
    )


class TableStore:
    """A Faust table's per-partition RocksDB databases and changelog, as the decision
    cache's ``PartitionStore`` (``pipeline.sampler.decisions``).

    Why the decision cache, unlike the trace buffer (``pipeline.sampler.storage``), still
    lives in a Faust table: a worker that takes a partition over must know what the
    previous owner decided (late spans follow those decisions, and the re-read of the
    spans topic skips those traces) and where that re-read starts (the low-water offset,
    saved beside the decisions). Both come from the table's changelog, which Faust
    replays into the partition's database before the partition's first event. The
    buffer's pieces need no such restore: the spans topic is their log.

    Faust has no public accessor for one partition's database, so this adapter is the one
    place that reaches into its store (``_db_for_partition``).
    """

    def __init__(self, table) -> None:
        self.table = table

    def db(self, partition: int):
        return self.table.data._db_for_partition(partition)

    def send_changelog(self, partition: int, key: bytes, value: bytes) -> None:
        self.table.send_changelog(partition, key, value)
