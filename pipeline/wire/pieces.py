"""The spans topic's message layout: per-trace pieces, indexed in a header.

The gateway writes one Kafka message per partition per flush of its batcher (the pieces
of the export requests that arrived within one linger, see ``pipeline.gateway.batcher``).
Its value is a serialized ``TracesData`` built as the concatenation of one *piece* per
trace: the ``ResourceSpans`` entries holding that trace's spans. Protobuf merges concatenated
messages, so the value parses as an ordinary ``TracesData`` for any reader. The header
``spansieve-pieces`` lists, per piece, the trace id, the piece's length, its span count and
whether it holds the trace's root span. A worker can then store each trace's piece by
slicing the value, without parsing or re-encoding a single span.

After the list comes the ``service.name`` of every ``ResourceSpans`` entry of every piece
(what the sampler's policies and metrics would otherwise get by serializing each entry's
resource again; see ``pipeline.policies.trace``), as JSON ``[names, [indices per piece]]``,
its length (4 bytes) and ``SVC1``. A header without them (an older gateway's) still
reads: its pieces have no services, and the sampler finds them from the resources. (The
last byte of a bare list is a root flag, 0 or 1, so it never ends in ``SVC1``.)

Pieces are assembled from serialized spans with protobuf's length-delimited framing (a tag
byte, a varint length, the payload). Resource and scope are serialized once per request.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import orjson
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.wire.otlp import UNKNOWN_SERVICE, service_name
from pipeline.wire.partitioner import partition_for_trace

PIECES_HEADER = "spansieve-pieces"
_ENTRY = struct.Struct(">16sIIB")  # trace id, piece length, span count, root flag
_SERVICES_TAIL = struct.Struct(">I4s")  # length of the services JSON, mark
_SERVICES_MARK = b"SVC1"

#: the service.name of each ResourceSpans entry of a piece, in order
Services = tuple[str, ...]

# Field tags (field number << 3 | wire type 2, length-delimited) of the messages we frame.
_RESOURCE_SPANS = b"\x0a"  # TracesData.resource_spans = 1
_RESOURCE = b"\x0a"  # ResourceSpans.resource = 1
_SCOPE_SPANS = b"\x12"  # ResourceSpans.scope_spans = 2
_SCHEMA_URL = b"\x1a"  # ResourceSpans.schema_url = 3, ScopeSpans.schema_url = 3
_SCOPE = b"\x0a"  # ScopeSpans.scope = 1
_SPANS = b"\x12"  # ScopeSpans.spans = 2


class PiecesError(ValueError):
    """A pieces header that does not describe its message value."""


def _varint(number: int) -> bytes:
    if number < 0x80:
        return bytes((number,))
    if number < 0x4000:
        return bytes(((number & 0x7F) | 0x80, number >> 7))
    out = bytearray()
    while number >= 0x80:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


class PartitionMessage:
    """The pieces bound for one partition; ``value()`` and ``header()`` build the message."""

    __slots__ = ("pieces", "size", "spans")

    def __init__(self) -> None:
        # trace id -> [parts, span count, has root, the service of each part]
        self.pieces: dict[bytes, list] = {}
        self.spans = 0
        self.size = 0  # bytes of the value

    def merge(self, other: PartitionMessage) -> None:
        """Take in ``other``'s pieces (another request's, same partition); ``other`` is spent."""
        for trace_id, piece in other.pieces.items():
            mine = self.pieces.get(trace_id)
            if mine is None:
                self.pieces[trace_id] = piece
            else:
                mine[0].extend(piece[0])
                mine[1] += piece[1]
                mine[2] = mine[2] or piece[2]
                mine[3].extend(piece[3])
        self.spans += other.spans
        self.size += other.size

    def chunks(self, max_bytes: int) -> list[PartitionMessage]:
        """This message as messages of at most ``max_bytes`` of value each, whole pieces
        per message (a piece larger than ``max_bytes`` goes alone)."""
        if self.size <= max_bytes:
            return [self]
        chunks: list[PartitionMessage] = []
        current: PartitionMessage | None = None
        for trace_id, piece in self.pieces.items():
            size = sum(map(len, piece[0]))
            if current is None or (current.size and current.size + size > max_bytes):
                current = PartitionMessage()
                chunks.append(current)
            current.pieces[trace_id] = piece
            current.spans += piece[1]
            current.size += size
        return chunks

    def largest_piece(self) -> int:
        """Bytes of the largest piece (a scan: call it only when ``size`` is large)."""
        return max((sum(map(len, piece[0])) for piece in self.pieces.values()), default=0)

    def value(self) -> bytes:
        return b"".join(b"".join(piece[0]) for piece in self.pieces.values())

    def header(self) -> bytes:
        """The list of pieces, then their services (see the module docstring)."""
        entries = b"".join(
            _ENTRY.pack(trace_id, sum(map(len, parts)), spans, root)
            for trace_id, (parts, spans, root, _) in self.pieces.items()
        )
        names: dict[str, int] = {}
        indices = [
            [names.setdefault(service, len(names)) for service in piece[3]]
            for piece in self.pieces.values()
        ]
        services = orjson.dumps([list(names), indices])
        return entries + services + _SERVICES_TAIL.pack(len(services), _SERVICES_MARK)


def split_by_partition(
    resource_spans_list, partitions: int, accept: Callable[[Span], bool]
) -> dict[int, PartitionMessage]:
    """Group the accepted spans of an export request into per-partition, per-trace pieces.

    ``accept`` sees every span once and returns False to leave it out (it may count why).
    """
    messages: dict[int, PartitionMessage] = {}
    for resource_spans in resource_spans_list:
        resource = _field(_RESOURCE, resource_spans.resource.SerializeToString())
        service = service_name(resource_spans.resource.attributes) or UNKNOWN_SERVICE
        if resource_spans.schema_url:
            resource_tail = _field(_SCHEMA_URL, resource_spans.schema_url.encode())
        else:
            resource_tail = b""
        for scope_spans in resource_spans.scope_spans:
            scope = _field(_SCOPE, scope_spans.scope.SerializeToString())
            if scope_spans.schema_url:
                scope_tail = _field(_SCHEMA_URL, scope_spans.schema_url.encode())
            else:
                scope_tail = b""
            by_trace: dict[bytes, list[bytes]] = {}
            roots: set[bytes] = set()
            for span in scope_spans.spans:
                if not accept(span):
                    continue
                trace_id = span.trace_id
                encoded = span.SerializeToString()
                framed = _SPANS + _varint(len(encoded)) + encoded
                spans = by_trace.get(trace_id)
                if spans is None:
                    by_trace[trace_id] = [framed]
                else:
                    spans.append(framed)
                if not span.parent_span_id:
                    roots.add(trace_id)
            for trace_id, spans in by_trace.items():
                scope_spans_bytes = scope + b"".join(spans) + scope_tail
                body = resource + _field(_SCOPE_SPANS, scope_spans_bytes) + resource_tail
                part = _field(_RESOURCE_SPANS, body)
                partition = partition_for_trace(trace_id, partitions)
                message = messages.get(partition)
                if message is None:
                    message = messages[partition] = PartitionMessage()
                piece = message.pieces.get(trace_id)
                if piece is None:
                    message.pieces[trace_id] = [[part], len(spans), trace_id in roots, [service]]
                else:
                    piece[0].append(part)
                    piece[1] += len(spans)
                    piece[2] = piece[2] or trace_id in roots
                    piece[3].append(service)
                message.spans += len(spans)
                message.size += len(part)
    return messages


def split_header(header: bytes) -> tuple[bytes, list[Services] | None]:
    """A header's list of pieces, and the services of each piece (None: not given)."""
    if header[-4:] != _SERVICES_MARK or len(header) < _SERVICES_TAIL.size:
        return header, None
    size, _ = _SERVICES_TAIL.unpack_from(header, len(header) - _SERVICES_TAIL.size)
    start = len(header) - _SERVICES_TAIL.size - size
    if start < 0:
        raise PiecesError("services longer than the header")
    try:
        names, indices = orjson.loads(header[start : -_SERVICES_TAIL.size])
        shared: dict[Services, Services] = {}  # pieces of the same services share a tuple
        services = [
            shared.setdefault(known := tuple(map(names.__getitem__, piece)), known)
            for piece in indices
        ]
    except (orjson.JSONDecodeError, ValueError, TypeError, IndexError) as exc:
        raise PiecesError(f"services of the pieces unreadable: {exc}") from None
    return header[:start], services


def iter_header(header: bytes) -> Iterator[tuple[bytes, int, int, int]]:
    """(trace id, piece length, span count, root flag) of each piece a header lists."""
    entries, _ = split_header(header)
    if len(entries) % _ENTRY.size:
        raise PiecesError(f"header of {len(entries)} bytes is not a list of pieces")
    return _ENTRY.iter_unpack(entries)


def iter_pieces(
    value: bytes, header: bytes
) -> Iterator[tuple[bytes, bytes, int, bool, Services | None]]:
    """(trace id, piece bytes, span count, has root, services or None) for each piece a
    header lists.

    Raises PiecesError before yielding anything if the header does not cover the value
    exactly, so a caller can fall back to parsing the value.
    """
    entries_bytes, services = split_header(header)
    if len(entries_bytes) % _ENTRY.size:
        raise PiecesError(f"header of {len(entries_bytes)} bytes is not a list of pieces")
    entries = list(_ENTRY.iter_unpack(entries_bytes))
    if sum(entry[1] for entry in entries) != len(value):
        raise PiecesError("piece lengths do not add up to the message size")
    if services is not None and len(services) != len(entries):
        raise PiecesError("services listed for another number of pieces")
    view = memoryview(value)
    position = 0
    for number, (trace_id, length, spans, root) in enumerate(entries):
        piece = bytes(view[position : position + length])
        yield trace_id, piece, spans, bool(root), services[number] if services else None
        position += length


def header_of(headers) -> bytes | None:
    """The pieces header among a Kafka message's headers (a list of pairs or a mapping)."""
    if not headers:
        return None
    pairs = headers.items() if hasattr(headers, "items") else headers
    for key, value in pairs:
        if key == PIECES_HEADER:
            return value
    return None


def gateway_messages(
    resource_spans_list, partitions: int
) -> list[tuple[int, bytes, list[tuple[str, bytes]]]]:
    """(partition, value, headers) of every message the gateway writes for a request.

    For benchmarks and tests that stand in for the gateway; every span is accepted.
    """
    return [
        (partition, message.value(), [(PIECES_HEADER, message.header())])
        for partition, message in split_by_partition(
            resource_spans_list, partitions, _accept_all
        ).items()
    ]


def _accept_all(_span: Span) -> bool:
    return True
