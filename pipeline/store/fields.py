"""The span documents' schema names, shared by everyone who reads or writes the store.

The sink writes these fields, the query server searches them and the gateway never needs
them; keeping the names here lets the query server and the sink agree without either
importing the other. Field names follow the trace-analytics schema of Data Prepper, which
OpenSearch Dashboards reads (see docs/store.md).
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from functools import lru_cache

SPAN_ATTRIBUTES = "span.attributes."
RESOURCE_ATTRIBUTES = "resource.attributes."
STATUS_ERROR = 2
# date_nanos and long stop at 2^63 - 1 ns (year 2262); OTLP times are uint64.
MAX_NANOS = 2**63 - 1
_URLSAFE = bytes.maketrans(b"+/", b"-_")


@lru_cache(maxsize=4096)
def _second_prefix(seconds: int) -> str:
    """ISO date and time of one second and the decimal point; spans of a trace share a
    handful of seconds."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def nanos_to_iso(nanos: int) -> str:
    """Unix nanoseconds -> ISO-8601 with nine fractional digits (OpenSearch date_nanos)."""
    seconds, fraction = divmod(nanos, 1_000_000_000)
    # str(10**9 + fraction)[1:] pads to nine digits, faster than a format spec (twice a span).
    return _second_prefix(seconds) + str(1_000_000_000 + fraction)[1:] + "Z"


@lru_cache(maxsize=4096)
def _second_to_nanos(stamp: str) -> int:
    """Nanoseconds at a whole ISO second (a trace's spans share a few of them)."""
    seconds = int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())
    return seconds * 1_000_000_000


def iso_to_nanos(text: str) -> int:
    """Inverse of nanos_to_iso (up to nine fractional digits, UTC; none is whole seconds)."""
    stamp, _, fraction = text.rstrip("Z").partition(".")
    return _second_to_nanos(stamp) + int(fraction.ljust(9, "0")[:9])


def status_of(doc: dict) -> tuple[int, str]:
    """(status code, message) of a span document: the dotted top-level keys Data Prepper
    writes (``"status.code"``, ``"status.message"``, which OpenSearch Dashboards' span
    views read), or the ``status`` object of documents written before schema 7."""
    code = doc.get("status.code")
    if code is not None:
        return code, doc.get("status.message", "")
    nested = doc.get("status") or {}
    return nested.get("code", 0), nested.get("message", "")


def document_id(trace_id: bytes, span_id: bytes) -> str:
    """Idempotent document id: trace id + span id, as URL-safe base64 (32 characters).

    OpenSearch stores an id that is valid base64 as its decoded bytes: 24 bytes here, where
    the 48-character hex form would take 36 in the stored ``_id`` and again in its terms.
    """
    return binascii.b2a_base64(trace_id + span_id, newline=False).translate(_URLSAFE).decode()


def ids_of_document_id(doc_id: str) -> tuple[bytes, bytes]:
    """(trace id, span id) of a document id."""
    raw = base64.urlsafe_b64decode(doc_id)
    return raw[:16], raw[16:]
