"""The worker's topics and tables: raw bytes in and out, co-partitioned with the spans."""

from __future__ import annotations

import faust

from pipeline.config.settings import Settings


def raw_topic(app: faust.App, settings: Settings, name: str) -> faust.TopicT:
    """A topic of the product (see TOPIC_NAMES) whose keys and values stay bytes."""
    return app.topic(
        settings.topic(name),
        partitions=settings.partitions,
        key_serializer="raw",
        value_serializer="raw",
    )


# Faust's RocksDB defaults (64 MiB x 3 memtables and a 2 GiB block cache per partition
# database) would hold most buffered spans in memory; spans wait on disk instead.
ROCKSDB_OPTIONS = {
    "write_buffer_size": 4 * 1024**2,
    "max_write_buffer_number": 2,
    "block_cache_size": 4 * 1024**2,
    "block_cache_compressed_size": 4 * 1024**2,
}


def raw_table(app: faust.App, name: str, partitions: int):
    """A RocksDB-backed table of bytes to bytes with modest memory settings."""
    return app.Table(
        name, partitions=partitions, key_type=bytes, value_type=bytes, options=ROCKSDB_OPTIONS
    )


class TableStore:
    """A Faust table's per-partition RocksDB databases and changelog, as the sampler's
    ``PartitionStore``.

    Faust has no public accessor for one partition's database, so this adapter is the one
    place that reaches into its store (``_db_for_partition``).
    """

    def __init__(self, table) -> None:
        self.table = table

    def db(self, partition: int):
        return self.table.data._db_for_partition(partition)

    def send_changelog(self, partition: int, key: bytes, value: bytes) -> None:
        self.table.send_changelog(partition, key, value)
