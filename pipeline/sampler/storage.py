"""RocksDB databases per partition, opened with rocksdict's public API.

The trace buffer keeps its pieces here: one database per partition of the spans topic,
in a folder of its own (the worker uses ``<state_dir>/worker/<prefix>-worker/trace-pieces``),
opened on the first use of a partition and closed when the partition is revoked or the
worker stops. Pieces need no changelog (the spans topic is their log, see
``pipeline.sampler.buffer``), so they need no Faust table either.

The options are those Faust's RocksDB store builds for the worker's tables
(``faust/stores/rocksdb.py``, ``RocksDBOptions.as_options``), with the worker's memory
settings: block-based tables with a 3-bit bloom filter and binary-search index, two 4 MiB
memtables per database, so buffered spans wait on disk rather than in memory, and ONE
16 MiB block cache shared by all the partitions' databases, so the cache's memory does
not grow with the number of partitions a worker owns (a cache per database cost 32 MiB
of RSS at 8 partitions and 40 000 spans/s, with no CPU difference measured). Faust's
``block_cache_compressed_size`` has no rocksdict counterpart (Faust ignores it under
rocksdict too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from rocksdict import (
    AccessType,
    BlockBasedIndexType,
    BlockBasedOptions,
    Cache,
    Options,
    Rdict,
)

WRITE_BUFFER_SIZE = 4 * 1024**2  # bytes per memtable
MAX_WRITE_BUFFERS = 2  # memtables per database (one filling, one being flushed)
BLOCK_CACHE_SIZE = 4 * 1024**2  # bytes of uncompressed blocks cached per Faust table database
SHARED_BLOCK_CACHE_SIZE = 16 * 1024**2  # bytes cached for all the buffer's databases
BLOOM_BITS_PER_KEY = 3  # Faust's default


class PartitionDatabases(Protocol):
    """A RocksDB database (rocksdict ``Rdict``, raw mode) per partition."""

    def db(self, partition: int) -> Rdict: ...


def rocksdb_options(cache: Cache) -> Options:
    """Options for one partition database, its blocks cached in ``cache``."""
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(WRITE_BUFFER_SIZE)
    options.set_max_write_buffer_number(MAX_WRITE_BUFFERS)
    table = BlockBasedOptions()
    table.set_bloom_filter(BLOOM_BITS_PER_KEY, True)
    table.set_block_cache(cache)
    table.set_index_type(BlockBasedIndexType.binary_search())
    options.set_block_based_table_factory(table)
    return options


class RdictPartitions:
    """One rocksdict database per partition under ``folder`` (``folder/<partition>``).

    ``db`` opens a partition's database on first use (again after ``close``); ``close``
    flushes and closes one partition's, ``close_all`` every open one. Usable as a context
    manager.
    """

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self._dbs: dict[int, Rdict] = {}
        self._cache = Cache(SHARED_BLOCK_CACHE_SIZE)

    def path(self, partition: int) -> Path:
        return self.folder / str(partition)

    def db(self, partition: int) -> Rdict:
        db = self._dbs.get(partition)
        if db is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            db = Rdict(
                str(self.path(partition)),
                options=rocksdb_options(self._cache),
                access_type=AccessType.read_write(),
            )
            self._dbs[partition] = db
        return db

    def opened(self) -> list[int]:
        """Partitions whose database is open now."""
        return sorted(self._dbs)

    def close(self, partition: int) -> None:
        """Flush and close a partition's database (a no-op if it is not open)."""
        db = self._dbs.pop(partition, None)
        if db is not None:
            db.close()

    def close_all(self) -> None:
        for partition in list(self._dbs):
            self.close(partition)

    def __enter__(self) -> RdictPartitions:
        return self

    def __exit__(self, *_exc) -> None:
        self.close_all()
