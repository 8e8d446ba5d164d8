"""Jaeger remote-sampling strategies from the ``adaptive`` policies' rates in Redis.

Workers running an ``adaptive`` tail-sampling policy publish, every ``head_interval``,
a head-sampling probability for each root operation under
``<prefix>:adaptive:<policy>:rates`` (a JSON table with a TTL of three head intervals;
see ``pipeline.shared.traffic``). SDKs with a Jaeger remote sampler poll
``/api/sampling?service=NAME`` for their service's part of it, so applications stop
sending most of the traces the tail would drop anyway.

* ``parse_table``: the stored JSON -> ``RatesTable``, checked, operations by service;
* ``strategy``: a table (or none) -> Jaeger's strategy JSON for one service;
* ``RatesSource``: finds and reads the table (SCAN + GET on redis' asyncio client, short
  timeouts), cached a few seconds so a fleet of polling SDKs costs Redis next to nothing.

Without a table (no adaptive policy running, Redis unreachable, a table that does not
parse) the strategy is ``FALLBACK_RATE``: every trace is sent and tail sampling alone
decides, which is what happens without remote sampling at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

JSON = dict[str, Any]

FALLBACK_RATE = 1.0  # no table: send everything, the tail decides
CACHE_SECONDS = 5.0  # how long one Redis read answers every SDK's poll
TIMEOUT_SECONDS = 1.0  # per Redis call: connect, SCAN page, GET
READ_DEADLINE_SECONDS = 3.0  # the whole read (every SCAN page and the GET)
SCAN_COUNT = 1000  # keys Redis looks at per SCAN page

# Why a strategy is the fallback (label of the query server's fallback counter).
NO_TABLE = "no_table"
REDIS_UNREACHABLE = "redis_unreachable"
BAD_TABLE = "bad_table"


class TableError(ValueError):
    """A rates table that is not what the contract says; its strategy is the fallback."""


@dataclass(frozen=True)
class RatesTable:
    """One adaptive policy's published probabilities, operations indexed by service."""

    policy: str
    default: float  # probability of operations not listed
    floor_traces_per_second: float
    operations: Mapping[str, Mapping[str, float]]  # service -> root span name -> probability


@dataclass(frozen=True)
class Lookup:
    """What a read found: a table, or why there is none (``NO_TABLE``, ...)."""

    table: RatesTable | None
    fallback: str | None = None
    error: str = ""  # what went wrong, for a fallback's log line
    ignored: tuple[str, ...] = ()  # the other policies that publish a table


def _probability(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise TableError(f"{where}: expected a probability in [0, 1], got {value!r}")
    return float(value)


def parse_table(policy: str, raw: bytes) -> RatesTable:
    """The table a worker stored (see the module's docstring); raises ``TableError``.

    An operation listed twice keeps its last probability."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise TableError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise TableError(f"expected a JSON object, got {type(doc).__name__}")
    default = _probability(doc.get("default"), "default")
    floor = doc.get("floor_traces_per_second", 0.0)
    if isinstance(floor, bool) or not isinstance(floor, int | float) or floor < 0:
        raise TableError(f"floor_traces_per_second: expected a number >= 0, got {floor!r}")
    entries = doc.get("operations", [])
    if not isinstance(entries, list):
        raise TableError("operations: expected a list of [service, operation, probability]")
    operations: dict[str, dict[str, float]] = {}
    for index, entry in enumerate(entries):
        where = f"operations[{index}]"
        if not (
            isinstance(entry, list)
            and len(entry) == 3
            and isinstance(entry[0], str)
            and isinstance(entry[1], str)
        ):
            raise TableError(f"{where}: expected [service, operation, probability], got {entry!r}")
        service, operation, probability = entry
        operations.setdefault(service, {})[operation] = _probability(probability, where)
    return RatesTable(policy, default, float(floor), operations)


def fallback_strategy() -> JSON:
    """Sample every trace at the head: what an SDK gets when no adaptive policy runs."""
    return {
        "strategyType": "PROBABILISTIC",
        "probabilisticSampling": {"samplingRate": FALLBACK_RATE},
    }


def strategy(table: RatesTable | None, service: str) -> JSON:
    """Jaeger's strategy JSON (the protobuf's JSON mapping) for ``service``'s SDKs.

    Only that service's operations are listed; the others of the service get the table's
    default, through ``operationSampling`` and, for SDKs that read only the top level or
    see no operations, ``probabilisticSampling`` too."""
    if table is None:
        return fallback_strategy()
    operations = table.operations.get(service, {})
    return {
        "strategyType": "PROBABILISTIC",
        "probabilisticSampling": {"samplingRate": table.default},
        "operationSampling": {
            "defaultSamplingProbability": table.default,
            "defaultLowerBoundTracesPerSecond": table.floor_traces_per_second,
            "perOperationStrategies": [
                {"operation": name, "probabilisticSampling": {"samplingRate": probability}}
                for name, probability in operations.items()
            ],
        },
    }


def _glob_escaped(text: str) -> str:
    """``text`` matched literally by a Redis MATCH pattern (a prefix may hold ``*``...)."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


class RatesSource:
    """The rates table in force: that of the adaptive policy whose name sorts first among
    the keys ``<key_prefix>:adaptive:*:rates``, read at most once per ``cache_seconds``.

    While one read is under way, other requests get the previous answer instead of
    waiting. Each change of what is served (a table, which policy's, or which fallback)
    is logged once; an unreachable Redis or a bad table as a warning."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        key_prefix: str,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.key_head = f"{key_prefix}:adaptive:"
        self.pattern = f"{_glob_escaped(self.key_head)}*:rates"
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._lock = asyncio.Lock()
        self._cached: Lookup | None = None
        self._expires = 0.0
        self._serving: tuple[str | None, str | None] | None = None  # (policy, fallback)

    @classmethod
    def from_url(
        cls, url: str, key_prefix: str, clock: Callable[[], float] = time.monotonic
    ) -> RatesSource:
        """A source on its own client: short timeouts and no retries, as a late answer
        is worth less than the fallback (the SDK polls again anyway)."""
        client = redis.asyncio.Redis.from_url(
            url,
            socket_timeout=TIMEOUT_SECONDS,
            socket_connect_timeout=TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, key_prefix, clock=clock)

    async def current(self) -> Lookup:
        """The table (or fallback) to serve now; reads Redis when the cached one is old."""
        if self._cached is not None and (self._clock() < self._expires or self._lock.locked()):
            return self._cached
        async with self._lock:
            if self._cached is not None and self._clock() < self._expires:
                return self._cached  # read by the request this one waited for
            lookup = await self._read()
            self._note(lookup)
            self._cached, self._expires = lookup, self._clock() + self.cache_seconds
            return lookup

    async def close(self) -> None:
        await self.client.aclose()

    def _policy(self, key: bytes) -> str:
        return key.decode("utf-8", "replace")[len(self.key_head) : -len(":rates")]

    async def _read(self) -> Lookup:
        key = b""
        try:
            async with asyncio.timeout(READ_DEADLINE_SECONDS):
                found = self.client.scan_iter(match=self.pattern, count=SCAN_COUNT)
                keys = sorted({k async for k in found}, key=self._policy)
                for key in keys:
                    raw = await self.client.get(key)
                    if raw is not None:  # else it expired since the SCAN
                        policy = self._policy(key)
                        ignored = tuple(self._policy(k) for k in keys if k != key)
                        return Lookup(parse_table(policy, raw), ignored=ignored)
            return Lookup(None, NO_TABLE)
        except (RedisError, OSError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return Lookup(None, REDIS_UNREACHABLE, error)
        except TableError as exc:
            return Lookup(None, BAD_TABLE, f"{key.decode('utf-8', 'replace')}: {exc}")

    def _note(self, lookup: Lookup) -> None:
        """Log what is served when it changes (so an outage is one warning, not one a poll)."""
        serving = (lookup.table.policy if lookup.table else None, lookup.fallback)
        if serving == self._serving:
            return
        self._serving = serving
        if lookup.table is not None:
            log.info(
                "sampling strategies from adaptive rates",
                policy=lookup.table.policy,
                ignored=list(lookup.ignored),
                services=len(lookup.table.operations),
            )
        elif lookup.fallback == NO_TABLE:
            log.info(
                "no adaptive rates in redis; sampling strategies sample everything",
                pattern=self.pattern,
                sampling_rate=FALLBACK_RATE,
            )
        elif lookup.fallback == REDIS_UNREACHABLE:
            log.warning(
                "redis unreachable; sampling strategies sample everything",
                error=lookup.error,
                sampling_rate=FALLBACK_RATE,
            )
        else:
            log.warning(
                "adaptive rates table unreadable; sampling strategies sample everything",
                error=lookup.error,
                sampling_rate=FALLBACK_RATE,
            )
