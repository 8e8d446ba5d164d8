"""Turns the Kafka clients' per-attempt error flood into a few lines an operator can act on.

With its broker gone, aiokafka logs one error per connect, metadata, fetch and coordinator
attempt (about 1 500 lines in 20 s, measured); the lines say nothing new after the first.
``RepeatFilter`` sits on the root handler and, for the Kafka and Faust loggers only:

* counts a Kafka connection failure as a lost contact: the first failure is logged with its
  error, then one "lost contact" line; while down, every further record of those loggers is
  a failed attempt, counted and suppressed, with a reminder at most every
  ``repeat_interval`` seconds;
* logs "reconnected" with the outage's length and counts when told Kafka answers again
  (``mark_reachable``, called by the worker's probe of its client's connections);
* otherwise lets a (logger, message template) pair through once per ``repeat_interval``,
  later copies carrying how many were suppressed in between. The template, not the text:
  messages carry addresses, node ids and counters.

What was suppressed is counted in ``spansieve_log_suppressed_total{logger}``;
``spansieve_kafka_reachable`` is 1 while the worker's client holds a live connection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

SUPPRESSED = Counter(
    "spansieve_log_suppressed_total",
    "Repeated warning/error log records of the Kafka and Faust clients not written",
    ["logger"],
)
KAFKA_REACHABLE = Gauge(
    "spansieve_kafka_reachable",
    "1 while the worker's Kafka client holds a live broker connection, 0 after a failure",
)

SCOPE = ("aiokafka", "faust", "mode", "kafka")  # loggers whose repeats are rate-limited

# aiokafka's templates for a failed connect or a request to a node it cannot reach.
CONNECTION_FAILURES = frozenset(
    {
        'Unable connect to "%s:%s": %s',
        "Unable connect to node with id %s: %s",
        "Unable to update metadata from %s",
        'Unable to request metadata from "%s:%s": %s',
        "Unable to request metadata from node with id %s: %r",
    }
)
# Any aiokafka record whose arguments carry one of these is a connection failure too
# (a fetch or heartbeat whose connection closed, say).
CONNECTION_ERRORS = frozenset({"KafkaConnectionError", "NodeNotReadyError"})

log = logging.getLogger("spansieve.kafka")


@dataclass
class _Repeats:
    """One template's rate-limit state: when it was last written, copies held back since."""

    last_written: float
    suppressed: int = 0


class RepeatFilter(logging.Filter):
    """A handler filter: rate-limits by (logger, template), tracks Kafka reachability."""

    def __init__(
        self,
        repeat_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        scope: tuple[str, ...] = SCOPE,
    ) -> None:
        super().__init__()
        self.repeat_interval = repeat_interval
        self.clock = clock
        self.scope = scope
        self._lock = threading.Lock()  # aiokafka also logs from Faust's consumer thread
        self._repeats: dict[tuple[str, str], _Repeats] = {}
        self.down_since: float | None = None
        self.failed_attempts = 0
        self.suppressed_while_down = 0
        self._last_reminder = 0.0

    def _in_scope(self, record: logging.LogRecord) -> bool:
        name = record.name
        return any(name == p or name.startswith(p + ".") for p in self.scope)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not self._in_scope(record):
            return True
        template = str(record.msg)
        notes: list[tuple[str, tuple]] = []  # lines to write once the lock is released
        with self._lock:
            now = self.clock()
            keep = self._decide(record, template, now, notes)
        for message, args in notes:
            log.warning(message, *args)
        if not keep:
            SUPPRESSED.labels(record.name).inc()
        return keep

    def _decide(
        self, record: logging.LogRecord, template: str, now: float, notes: list[tuple[str, tuple]]
    ) -> bool:
        """Whether to write the record; appends the state lines to write (lock held)."""
        failure = template in CONNECTION_FAILURES or _carries_connection_error(record)
        if self.down_since is None and failure:
            self.down_since = now
            self.failed_attempts = 1
            self.suppressed_while_down = 0
            self._last_reminder = now
            KAFKA_REACHABLE.set(0)
            notes.append(("lost contact with Kafka; retrying, repeats counted not logged", ()))
            self._repeats[(record.name, template)] = _Repeats(now)
            return True
        if self.down_since is not None and record.name.split(".", 1)[0] == "aiokafka":
            # Everything aiokafka says while down is a consequence of the outage.
            self.failed_attempts += 1
            self.suppressed_while_down += 1
            if now - self._last_reminder >= self.repeat_interval:
                self._last_reminder = now
                notes.append(
                    (
                        "Kafka still unreachable after %.0fs; %d failed attempts; last: %s",
                        (now - self.down_since, self.failed_attempts, _text(record)),
                    )
                )
            return False
        key = (record.name, template)
        repeats = self._repeats.get(key)
        if repeats is None or now - repeats.last_written >= self.repeat_interval:
            if repeats is not None and repeats.suppressed:
                record.repeated = repeats.suppressed  # rendered as a field of the line
            self._repeats[key] = _Repeats(now)
            return True
        repeats.suppressed += 1
        return False

    def mark_reachable(self, reachable: bool | None) -> None:
        """What the worker's probe found (None: it could not tell, e.g. while starting)."""
        if reachable is None:
            return
        if not reachable:
            KAFKA_REACHABLE.set(0)
            return
        KAFKA_REACHABLE.set(1)
        with self._lock:
            if self.down_since is None:
                return
            down_for = self.clock() - self.down_since
            attempts, suppressed = self.failed_attempts, self.suppressed_while_down
            self.down_since = None
            self._repeats.clear()  # the next outage starts with its first error again
        log.warning(
            "reconnected to Kafka after %.1fs down; %d failed attempts, %d log lines suppressed",
            down_for,
            attempts,
            suppressed,
        )


def _carries_connection_error(record: logging.LogRecord) -> bool:
    args = record.args if isinstance(record.args, tuple) else ()
    return record.name.startswith("aiokafka") and any(
        type(arg).__name__ in CONNECTION_ERRORS for arg in args
    )


def _text(record: logging.LogRecord) -> str:
    """The record's message; a record whose arguments do not fit is shown unformatted."""
    try:
        return record.getMessage()
    except Exception:
        return str(record.msg)


def install(handler: logging.Handler, repeat_interval: float) -> RepeatFilter:
    """Put one RepeatFilter on the handler (replacing an earlier one) and return it."""
    for old in [f for f in handler.filters if isinstance(f, RepeatFilter)]:
        handler.removeFilter(old)
    repeat = RepeatFilter(repeat_interval)
    handler.addFilter(repeat)
    return repeat


def installed() -> RepeatFilter | None:
    """The RepeatFilter on a root handler, if configure_logging put one there."""
    for handler in logging.getLogger().handlers:
        for candidate in handler.filters:
            if isinstance(candidate, RepeatFilter):
                return candidate
    return None
