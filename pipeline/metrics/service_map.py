"""Service-map documents in Data Prepper's ``otel-v1-apm-service-map`` format.

OpenSearch Dashboards' Trace Analytics service map and service table read these. The
documents are what Data Prepper's ``service_map_stateful`` processor writes:

* every parent -> child span pair of a trace whose services differ (any span kinds), in a
  trace whose root span is known, gives two documents:

  - a *destination* relationship: ``serviceName`` = parent's service, ``kind`` = parent's
    span kind (``SPAN_KIND_CLIENT``...), ``destination`` = ``{resource: child span name,
    domain: child service}``, ``target`` = null;
  - a *target* relationship: ``serviceName`` = child's service, ``kind`` = child's span
    kind, ``destination`` = null, ``target`` = ``{resource: child span name, domain: child
    service}``;

  both with ``traceGroupName`` = the trace's root span name;
* a service of a trace that takes part in no such pair gives an *isolated* document:
  ``serviceName``, ``traceGroupName`` (null when the root is unknown) and null ``kind``,
  ``destination`` and ``target``.

``hashId`` is Data Prepper's deterministic id: Base64 (standard alphabet, padded) of the MD5
of the UTF-8 string ``serviceName,kind,traceGroupName,`` + ``target.resource,target.domain``
(only when there is a target) + ``,`` + ``destination.resource,destination.domain`` (only when
there is a destination), null values written ``null`` as Java's string concatenation does.
Data Prepper's OpenSearch sink uses ``hashId`` as the document ``_id`` of this index, so the
same relationship always lands on the same document: writing a window twice is harmless.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, Protocol

# OTLP SpanKind enum values -> the names Data Prepper writes (the proto enum names).
SPAN_KIND_NAMES: tuple[str, ...] = (
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
)


def span_kind_name(kind: int) -> str:
    """The proto enum name of an OTLP span kind (``SPAN_KIND_UNSPECIFIED`` if unknown)."""
    return SPAN_KIND_NAMES[kind] if 0 <= kind < len(SPAN_KIND_NAMES) else SPAN_KIND_NAMES[0]


class ServiceMapRelationship(NamedTuple):
    """One cross-service parent -> child span pair, reduced to what the documents need."""

    parent_service: str
    parent_kind: str
    child_service: str
    child_kind: str
    child_name: str
    trace_group: str


class IsolatedService(NamedTuple):
    """A service of a trace that had no cross-service parent/child pair in it."""

    service: str
    trace_group: str | None


class _HasServiceMap(Protocol):
    relationships: set[ServiceMapRelationship]
    isolated: set[IsolatedService]


def _java(value: str | None) -> str:
    return "null" if value is None else value


def hash_id(
    service_name: str,
    kind: str | None,
    trace_group_name: str | None,
    destination: dict[str, str] | None,
    target: dict[str, str] | None,
) -> str:
    """Data Prepper's ``hashId`` of a relationship (see the module docstring)."""
    text = f"{_java(service_name)},{_java(kind)},{_java(trace_group_name)},"
    if target is not None:
        text += f"{_java(target['resource'])},{_java(target['domain'])}"
    text += ","
    if destination is not None:
        text += f"{_java(destination['resource'])},{_java(destination['domain'])}"
    digest = hashlib.md5(text.encode("utf-8"), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")


def _document(
    service_name: str,
    kind: str | None,
    destination: dict[str, str] | None,
    target: dict[str, str] | None,
    trace_group_name: str | None,
) -> dict[str, Any]:
    return {
        "serviceName": service_name,
        "kind": kind,
        "destination": destination,
        "target": target,
        "traceGroupName": trace_group_name,
        "hashId": hash_id(service_name, kind, trace_group_name, destination, target),
    }


def relationship_documents(rel: ServiceMapRelationship) -> tuple[dict[str, Any], dict[str, Any]]:
    """The destination and the target document of one relationship."""
    endpoint = {"resource": rel.child_name, "domain": rel.child_service}
    destination = _document(rel.parent_service, rel.parent_kind, endpoint, None, rel.trace_group)
    target = _document(rel.child_service, rel.child_kind, None, dict(endpoint), rel.trace_group)
    return destination, target


def isolated_document(node: IsolatedService) -> dict[str, Any]:
    return _document(node.service, None, None, None, node.trace_group)


def documents(
    relationships: Iterable[ServiceMapRelationship],
    isolated: Iterable[IsolatedService] = (),
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(doc_id, document)`` for relationships and isolated services, each id once.

    Order is deterministic (sorted inputs) so a re-run writes the same bulk body.
    """
    seen: set[str] = set()
    for rel in sorted(relationships):
        for doc in relationship_documents(rel):
            if doc["hashId"] not in seen:
                seen.add(doc["hashId"])
                yield doc["hashId"], doc
    nodes = (IsolatedService(*node) for node in isolated)  # plain (service, group) too
    for node in sorted(nodes, key=lambda n: (n.service, n.trace_group or "")):
        doc = isolated_document(node)
        if doc["hashId"] not in seen:
            seen.add(doc["hashId"])
            yield doc["hashId"], doc


def service_map_documents(
    windows: _HasServiceMap | Iterable[_HasServiceMap],
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(doc_id, document)`` for one closed ``ServiceGraphWindow`` or several.

    The doc id is ``hashId`` (index them into ``otel-v1-apm-service-map`` with that ``_id``).
    """
    items = [windows] if hasattr(windows, "relationships") else list(windows)  # type: ignore[arg-type]
    relationships: set[ServiceMapRelationship] = set()
    isolated: set[IsolatedService] = set()
    for window in items:
        relationships |= window.relationships
        isolated |= window.isolated
    return documents(relationships, isolated)
