"""The worker's local table state: one folder per app, healed when Kafka lost the changelog.

Faust keeps each table partition's RocksDB database with the offset of the last changelog
record it holds (the *persisted offset*). On recovery it compares that offset with the
changelog's high watermark and, when the local state is ahead (Kafka's data were wiped,
the topic was recreated, or another app's files were found), raises ``ConsistencyError``
(``faust/tables/recovery.py``), which stops the worker; restarting it only crashes again.

Two things prevent that here:

* the tables live under ``<state_dir>/worker/<app id>/tables``, beside the trace buffer's
  ``trace-pieces`` (``agents.sampler.pieces_folder``), so apps with other topic prefixes
  never share database files;
* ``HealingStore``, Faust's RocksDB store with one step added to each rebalance: before
  recovery reads the persisted offsets, every assigned changelog partition whose local
  state is ahead of the topic's end offset is deleted (counted and logged), so Faust
  rebuilds it from the changelog like a partition it never had.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

import structlog
from confluent_kafka import Consumer, TopicPartition
from faust.stores import STORES
from faust.stores.rocksdb import Store
from faust.types import TP
from prometheus_client import Counter
from yarl import URL

log = structlog.get_logger(__name__)

SCHEME = "spansieve-rocksdb"
STORE_URL = f"{SCHEME}://"
TABLES = "tables"
# Where Faust put every app's tables before they were namespaced (datadir/v<version>/tables).
LEGACY_TABLES = Path("v1") / TABLES
WATERMARK_TIMEOUT = 10.0  # seconds per partition's end-offset request

STATE_DISCARDED = Counter(
    "spansieve_worker_state_discarded_total",
    "Table partitions whose local RocksDB state was ahead of the changelog in Kafka, "
    "deleted to be rebuilt from the changelog",
    ["table"],
)

_legacy_noted: set[Path] = set()


def app_tables_dir(worker_dir: Path, app_id: str) -> Path:
    """The app's own table folder (created), noting once an old shared one left behind.

    Faust creates only the last level of its ``tabledir``, hence the ``mkdir`` here.
    """
    tables = worker_dir / app_id / TABLES
    tables.mkdir(parents=True, exist_ok=True)
    legacy = worker_dir / LEGACY_TABLES
    if legacy not in _legacy_noted and legacy.is_dir() and any(legacy.iterdir()):
        _legacy_noted.add(legacy)
        log.warning(
            "un-namespaced worker state found and left unused; this app's tables now live "
            "in their own folder (delete the old one once no older worker needs it)",
            old=str(legacy),
            now=str(tables),
        )
    return tables


def stale_partitions(
    persisted: Mapping[int, int | None], ends: Mapping[int, int | None]
) -> dict[int, tuple[int, int]]:
    """Partitions whose local state is ahead of Kafka: ``{partition: (persisted, end)}``.

    ``persisted`` is the offset of the last changelog record applied locally; ``ends`` is
    the changelog partition's end offset (the next offset Kafka will write). A consistent
    partition has ``persisted < end``; Faust raises ``ConsistencyError`` otherwise (it
    compares with ``end - 1``). Unknown values (no local offset, Kafka did not answer)
    decide nothing.
    """
    stale = {}
    for partition, offset in persisted.items():
        end = ends.get(partition)
        if offset is not None and end is not None and end >= 0 and offset >= end:
            stale[partition] = (offset, end)
    return stale


def bootstrap_of(brokers: Iterable[URL]) -> str:
    """Kafka bootstrap servers from Faust's broker URLs (``kafka://host:port``)."""
    return ",".join(f"{url.host}:{url.port or 9092}" for url in brokers)


def end_offsets(
    bootstrap: str, topic: str, partitions: Iterable[int], timeout: float = WATERMARK_TIMEOUT
) -> dict[int, int | None]:
    """Each partition's end offset, asked of the broker now (None if it did not answer).

    A consumer of its own, not Faust's: this runs inside Faust's rebalance callback, which
    its consumer thread waits on.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"spansieve-state-check-{uuid.uuid4().hex}",  # never joined
            "enable.auto.commit": False,
        }
    )
    ends: dict[int, int | None] = {}
    try:
        for partition in partitions:
            try:
                _low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=timeout, cached=False
                )
            except Exception as exc:  # Faust's own check decides then
                log.warning(
                    "changelog end offset unknown; local state not checked",
                    topic=topic,
                    partition=partition,
                    error=str(exc),
                )
                high = None
            ends[partition] = high
    finally:
        consumer.close()
    return ends


class HealingStore(Store):
    """Faust's RocksDB store that discards partitions ahead of their changelog.

    The check runs at the end of the store's ``on_rebalance``, which Faust's table manager
    awaits before the recovery service reads the persisted offsets of the assigned
    partitions; a discarded partition then has none and is restored from the changelog.
    """

    async def on_rebalance(
        self,
        assigned: set[TP],
        revoked: set[TP],
        newly_assigned: set[TP],
        generation_id: int = 0,
    ) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        topics = self.table.changelog_topic.topics
        partitions = sorted({tp.partition for tp in assigned if tp.topic in topics})
        if partitions:
            async with self.db_lock:
                await self.discard_stale(self.table.changelog_topic.get_topic_name(), partitions)

    async def discard_stale(self, topic: str, partitions: list[int]) -> None:
        """Delete the local databases of ``partitions`` that are ahead of ``topic``."""
        persisted = {p: self._local_offset(TP(topic, p)) for p in partitions}
        if all(offset is None for offset in persisted.values()):
            return  # nothing local: nothing can be ahead
        bootstrap = bootstrap_of(self.app.conf.broker)
        ends = await asyncio.to_thread(end_offsets, bootstrap, topic, partitions)
        for partition, (offset, end) in stale_partitions(persisted, ends).items():
            path = self.partition_path(partition)
            log.warning(
                "local table state is ahead of its changelog in Kafka (wiped or recreated); "
                "discarding it to rebuild from the changelog",
                table=self.table.name,
                partition=partition,
                persisted_offset=offset,
                kafka_end_offset=end,
                path=str(path),
            )
            self._discard(partition)
            STATE_DISCARDED.labels(table=self.table.name).inc()

    def _local_offset(self, tp: TP) -> int | None:
        """The partition's persisted offset, or None if its database cannot be opened
        (another local worker of the app holds it: Faust retries that itself)."""
        try:
            return self.persisted_offset(tp)
        except Exception as exc:
            log.info("table partition not checked", partition=tp.partition, error=str(exc))
            return None

    def _discard(self, partition: int) -> None:
        """Close and delete one partition's database; Faust reopens it empty on next use."""
        db = self._dbs.pop(partition, None)
        if db is not None and self.use_rocksdict:
            db.close()
        del db
        gc.collect()  # python-rocksdb closes on collection only
        shutil.rmtree(self.partition_path(partition), ignore_errors=True)


# Faust picks the store class by the URL's scheme (``app.conf.store``).
STORES.aliases[SCHEME] = f"{__name__}:{HealingStore.__name__}"
