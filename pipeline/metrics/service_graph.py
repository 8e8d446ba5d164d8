"""Service-graph edges paired within a decided trace, in tumbling event-time windows.

The sampler hands every decided trace (kept or dropped) to :meth:`ServiceGraph.add_trace`.
Because the whole trace is at hand, pairing needs no store with a TTL as the OpenTelemetry
Collector's ``servicegraph`` connector does; the outcome is the connector's (defaults, the
``virtualNode`` feature gate on, as it is stable):

* Only spans whose resource has ``service.name`` take part (the connector skips others).
* Client side: a CLIENT or PRODUCER span. Server side: a SERVER or CONSUMER span whose
  ``parent_span_id`` is the client-side span's ``span_id``. Same-service pairs count too
  (the connector does not filter them). One client-side span makes at most one edge; the
  first server-side child (in trace order) pairs with it.
* ``connection_type``: ``""`` (plain request), ``"messaging_system"`` when the client side is
  a PRODUCER or the server side a CONSUMER, ``"database"``, ``"virtual_node"``.
* Database: a client-side span with ``db.name`` (resource attributes first, then the span's,
  as the connector looks it up) is an edge to a server named by that value, type
  ``database``, server latency = client latency = the span's duration, whatever its
  children are.
* Virtual server: a client-side span with no db.name and no server-side child becomes an
  edge to a server named by the first of ``virtual_node_peer_attributes`` present among the
  span's attributes (default ``peer.service``, ``db.name``, ``db.system``), else
  ``"unknown"``; type ``virtual_node``; its server latency is 0 (observed as 0, as the
  connector does). ``messaging.system`` is not a default peer attribute of the connector.
* Virtual client: a root SERVER or CONSUMER span (no parent) is an edge from ``"user"``,
  type ``virtual_node``, client latency 0. A non-root server-side span whose parent is not
  a client-side span of the trace makes no edge.
* ``failed``: either side has status ERROR.
* Latencies in seconds (end - start, clamped at 0) into explicit-bucket histograms with the
  connector's default bounds ``DEFAULT_LATENCY_BUCKETS_SECONDS`` (``le`` semantics: a value
  equal to a bound falls in that bound's bucket).

Windows: tumbling, ``window_seconds`` (15 by default), keyed by the client-side span's end
time (the server-side span's for ``user`` edges). :meth:`ServiceGraph.close` returns, in
start order, every window whose end is ``<= watermark`` and forgets it.

Late rule: an edge whose window is already closed is counted in the earliest window still
open (the one starting where the last close stopped), never dropped and never counted
twice; ``late_edges`` counts how often. Totals stay exact; such an edge's timing shifts by
its lateness.

The same pass also gathers the relationships of Data Prepper's service map (see
:mod:`pipeline.metrics.service_map`) into each window: :meth:`ServiceGraph.add_trace` from
every cross-service parent -> child pair (every span indexed by id), keyed by the trace's
latest span end; :meth:`ServiceGraph.add_sides` (the sampler's path) from the pairs among
client- and server-side spans only, every server-side child of each parent (see
:meth:`ServiceGraph._map_from_pairs`), keyed by the root's end.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from pipeline.metrics.service_map import (
    SPAN_KIND_NAMES,
    IsolatedService,
    ServiceMapRelationship,
    span_kind_name,
)
from pipeline.wire.otlp import ResourceRun, flat_spans

DEFAULT_WINDOW_SECONDS = 15.0
# The connector's defaultLatencyHistogramBuckets (seconds).
DEFAULT_LATENCY_BUCKETS_SECONDS: tuple[float, ...] = (
    0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0,
)  # fmt: skip
# The connector's defaultPeerAttributes, highest priority first.
DEFAULT_VIRTUAL_NODE_PEER_ATTRIBUTES: tuple[str, ...] = ("peer.service", "db.name", "db.system")
# The connector's defaultDatabaseNameAttributes.
DEFAULT_DATABASE_NAME_ATTRIBUTES: tuple[str, ...] = ("db.name",)

CONNECTION_NONE = ""
CONNECTION_MESSAGING = "messaging_system"
CONNECTION_DATABASE = "database"
CONNECTION_VIRTUAL_NODE = "virtual_node"
VIRTUAL_CLIENT = "user"
UNKNOWN_PEER = "unknown"

METRIC_REQUEST_TOTAL = "traces_service_graph_request_total"
METRIC_REQUEST_FAILED_TOTAL = "traces_service_graph_request_failed_total"
METRIC_REQUEST_SERVER_SECONDS = "traces_service_graph_request_server_seconds"
METRIC_REQUEST_CLIENT_SECONDS = "traces_service_graph_request_client_seconds"

_SERVER = 2
_CLIENT = 3
_PRODUCER = 4
_CONSUMER = 5
_STATUS_ERROR = 2
_NANOS = 1_000_000_000


class EdgeKey(NamedTuple):
    """Prometheus labels ``client``, ``server``, ``connection_type`` (a named tuple: made
    once per edge per trace, it must be cheap to build)."""

    client: str
    server: str
    connection_type: str


@dataclass(slots=True)
class Histogram:
    """Explicit-bucket histogram; ``counts`` has ``len(bounds) + 1`` entries (last = +Inf)."""

    bounds: Sequence[float]
    counts: list[int]
    sum: float = 0.0

    @classmethod
    def empty(cls, bounds: Sequence[float]) -> Histogram:
        return cls(bounds, [0] * (len(bounds) + 1))

    @property
    def count(self) -> int:
        """Observations: the sum of the bucket counts (not kept apart, read rarely)."""
        return sum(self.counts)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


@dataclass(slots=True)
class EdgeStats:
    requests: int
    failed: int
    client_seconds: Histogram
    server_seconds: Histogram
    # An exemplar trace id, preferring a kept trace (a dashboard can open it).
    exemplar_trace_id: bytes = b""
    exemplar_kept: bool = False


@dataclass(slots=True)
class ServiceGraphWindow:
    start_unix_nanos: int
    end_unix_nanos: int
    edges: dict[EdgeKey, EdgeStats] = field(default_factory=dict)
    relationships: set[ServiceMapRelationship] = field(default_factory=set)
    isolated: set[IsolatedService] = field(default_factory=set)
    # The relationships above as (client service, client kind, server service, server
    # kind, server span name, root name) with kinds as numbers: cheap to look up.
    pair_keys: set[tuple] = field(default_factory=set)
    # What the last checkpoint saw, per edge: its request count, failed count, and the
    # client and server histograms' bucket counts and sums.
    checkpointed: dict[EdgeKey, tuple] = field(default_factory=dict)


def _edge_counts(st: EdgeStats) -> tuple:
    return (
        st.requests,
        st.failed,
        tuple(st.client_seconds.counts),
        st.client_seconds.sum,
        tuple(st.server_seconds.counts),
        st.server_seconds.sum,
    )


_UNSET = object()  # not looked up yet
_RESOURCE_CACHE_SIZE = 4096  # distinct resources remembered (cleared when full)


def _attribute_texts(attributes: Iterable, wanted: frozenset[str]) -> dict[str, str]:
    """The first value (as text) of each attribute named in ``wanted``: one pass (reading
    attributes through upb costs about 0.3 µs each, so a span is read once)."""
    found: dict[str, str] = {}
    for kv in attributes:
        key = kv.key
        if key in wanted and key not in found:
            v = kv.value
            which = v.WhichOneof("value")
            if which == "string_value":
                found[key] = v.string_value
            elif which is not None:
                found[key] = str(getattr(v, which))
    return found


def _first_of(found: dict[str, str], keys: Sequence[str]) -> str | None:
    """The value of the first of ``keys`` (priority order) in ``found``."""
    for key in keys:
        if key in found:
            return found[key]
    return None


def _encoded_key(key: str) -> bytes:
    """How an attribute key appears in a span's protobuf bytes: KeyValue's field 1 (tag
    0x0a) and its length, when that fits in one byte (else the bare key, a looser test).
    ``db.name`` must not match inside ``db.namespace``."""
    data = key.encode()
    return b"\n" + bytes([len(data)]) + data if len(data) < 128 else data


def _service_name(resource_attributes: Iterable) -> str | None:
    for kv in resource_attributes:
        if kv.key == "service.name":
            return kv.value.string_value or None
    return None


def _seconds(start: int, end: int) -> float:
    d = end - start
    return d / _NANOS if d > 0 else 0.0


class ServiceGraph:
    """Service-graph aggregator fed whole traces at decision time (pure, single-threaded)."""

    def __init__(
        self,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        latency_buckets_seconds: Sequence[float] = DEFAULT_LATENCY_BUCKETS_SECONDS,
        virtual_node_peer_attributes: Sequence[str] = DEFAULT_VIRTUAL_NODE_PEER_ATTRIBUTES,
        database_name_attributes: Sequence[str] = DEFAULT_DATABASE_NAME_ATTRIBUTES,
        service_map: bool = True,
    ) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be > 0")
        if list(latency_buckets_seconds) != sorted(latency_buckets_seconds):
            raise ValueError("latency buckets must be sorted")
        self.window_nanos = int(window_seconds * _NANOS)
        self.bounds: tuple[float, ...] = tuple(float(b) for b in latency_buckets_seconds)
        self.peer_attributes = tuple(virtual_node_peer_attributes)
        self.db_attributes = tuple(database_name_attributes)
        self.service_map = service_map
        self._windows: dict[int, ServiceGraphWindow] = {}
        self._closed_until = 0  # windows starting before this are closed
        self.late_edges = 0
        # service.name by the resource's serialized bytes (None: the resource has none).
        self._services: dict[bytes, str | None] = {}
        # The first database-name attribute of a resource, by its serialized bytes.
        self._resource_db_names: dict[bytes, str | None] = {}
        # Database-name keys as they are encoded, to skip lookups absent from a trace.
        self._db_keys = tuple(_encoded_key(key) for key in self.db_attributes)
        # The window of the last edge recorded, and the span ends it takes (not late).
        self._current: tuple[int, int, ServiceGraphWindow | None] = (0, 0, None)
        self._db_wanted = frozenset(self.db_attributes)
        self._db_or_peer_wanted = frozenset(self.db_attributes + self.peer_attributes)
        self._checkpointed_late = 0
        self._checkpointed_closed = 0

    # -- windows ---------------------------------------------------------------------

    def _window(self, end_unix_nanos: int, count_late: bool = True) -> ServiceGraphWindow:
        start = end_unix_nanos - end_unix_nanos % self.window_nanos
        if start < self._closed_until:
            start = self._closed_until
            if count_late:
                self.late_edges += 1
        w = self._windows.get(start)
        if w is None:
            w = self._windows[start] = ServiceGraphWindow(start, start + self.window_nanos)
        return w

    def close(self, watermark_unix_nanos: int) -> list[ServiceGraphWindow]:
        """Windows with ``end <= watermark``, oldest first; they are forgotten here."""
        limit = watermark_unix_nanos - watermark_unix_nanos % self.window_nanos
        if limit > self._closed_until:
            self._closed_until = limit
            self._current = (0, 0, None)
        done = sorted(s for s in self._windows if s + self.window_nanos <= watermark_unix_nanos)
        return [self._windows.pop(s) for s in done]

    @property
    def open_windows(self) -> list[ServiceGraphWindow]:
        return [self._windows[s] for s in sorted(self._windows)]

    # -- checkpoints (exact counts across a change of owner) --------------------------

    def checkpoint(self) -> dict | None:
        """What changed in the open windows since the last checkpoint, as JSON-able data.

        Per changed edge: the increments of its counts and histograms, and its exemplar.
        The service-map relationships are not included. None when nothing changed.
        """
        windows = []
        late = self.late_edges - self._checkpointed_late
        for start, w in self._windows.items():
            changed = []
            for key, st in w.edges.items():
                if (before := w.checkpointed.get(key)) is not None and before[0] == st.requests:
                    continue  # every recorded edge adds a request
                now = _edge_counts(st)
                if before is None:
                    before = (0, 0, (0,) * len(now[2]), 0.0, (0,) * len(now[4]), 0.0)
                changed.append(
                    [
                        [key.client, key.server, key.connection_type],
                        now[0] - before[0],
                        now[1] - before[1],
                        [a - b for a, b in zip(now[2], before[2], strict=True)],
                        now[3] - before[3],
                        [a - b for a, b in zip(now[4], before[4], strict=True)],
                        now[5] - before[5],
                        st.exemplar_trace_id.hex(),
                        st.exemplar_kept,
                    ]
                )
                w.checkpointed[key] = now
            if changed:
                windows.append([start, changed])
        if not windows and not late and self._closed_until == self._checkpointed_closed:
            return None
        self._checkpointed_late = self.late_edges
        self._checkpointed_closed = self._closed_until
        return {"closed_until": self._closed_until, "late_edges": late, "windows": windows}

    def restore(self, checkpoints: Sequence[dict]) -> None:
        """Add up checkpoints (oldest first) into the open windows; see ``checkpoint``."""
        self._current = (0, 0, None)
        for cp in checkpoints:
            self._closed_until = max(self._closed_until, cp["closed_until"])
        for cp in checkpoints:
            self.late_edges += cp["late_edges"]
            for start, changed in cp["windows"]:
                if start < self._closed_until:
                    continue  # closed, and sent, by a previous owner
                w = self._windows.get(start)
                if w is None:
                    w = self._windows[start] = ServiceGraphWindow(start, start + self.window_nanos)
                for names, requests, failed, client, c_sum, server, s_sum, trace, kept in changed:
                    key = EdgeKey(*names)
                    st = w.edges.get(key)
                    if st is None:
                        st = w.edges[key] = EdgeStats(
                            0, 0, Histogram.empty(self.bounds), Histogram.empty(self.bounds)
                        )
                    st.requests += requests
                    st.failed += failed
                    for histogram, counts, total in (
                        (st.client_seconds, client, c_sum),
                        (st.server_seconds, server, s_sum),
                    ):
                        for i, count in enumerate(counts):
                            histogram.counts[i] += count
                        histogram.sum += total
                    if trace and (not st.exemplar_trace_id or (kept and not st.exemplar_kept)):
                        st.exemplar_trace_id = bytes.fromhex(trace)
                        st.exemplar_kept = kept
        for w in self._windows.values():
            w.checkpointed = {key: _edge_counts(st) for key, st in w.edges.items()}
        self._checkpointed_late = self.late_edges
        self._checkpointed_closed = self._closed_until

    # -- aggregation -----------------------------------------------------------------

    def _record(self, rows: list[tuple], trace_id: bytes, kept: bool) -> None:
        """Count one trace's edges: rows of (client-side end, key, failed, client seconds,
        server seconds), ``key`` a plain (client, server, connection_type) tuple (it
        equals, and hashes as, the :class:`EdgeKey` stored on the edge's first use). One
        call per trace: this is the graph's innermost loop."""
        lo, hi, window = self._current
        bounds = self.bounds
        for end, key, failed, client_s, server_s in rows:
            if not lo <= end < hi:
                window = self._window(end)
                lo, hi = window.start_unix_nanos, window.end_unix_nanos
                if lo <= end < hi:  # not late: later ends in the same window take it too
                    self._current = (lo, hi, window)
                else:
                    lo = hi = 0
            edges = window.edges  # type: ignore[union-attr]
            st = edges.get(key)
            if st is None:
                st = edges[EdgeKey(*key)] = EdgeStats(
                    0, 0, Histogram.empty(bounds), Histogram.empty(bounds)
                )
            st.requests += 1
            if failed:
                st.failed += 1
            h = st.client_seconds  # Histogram.observe, inlined
            h.counts[bisect_left(bounds, client_s)] += 1
            h.sum += client_s
            h = st.server_seconds
            h.counts[bisect_left(bounds, server_s)] += 1
            h.sum += server_s
            if not st.exemplar_trace_id or (kept and not st.exemplar_kept):
                st.exemplar_trace_id = trace_id
                st.exemplar_kept = kept

    def add_trace(self, data: TracesData, trace_id: bytes, kept: bool) -> None:
        """Pair the spans of one whole trace and count its edges (kept or dropped alike)."""
        spans, runs = flat_spans(data.resource_spans)
        self.add_spans(spans, runs, trace_id, kept)

    def add_spans(
        self, spans: list[Span], runs: list[ResourceRun], trace_id: bytes, kept: bool
    ) -> None:
        """:meth:`add_trace` over the flat spans of ``pipeline.wire.otlp.flat_spans``."""
        # One pass: the client- and server-side spans of resources that name their
        # service; every span by id only for the service map.
        by_id: dict[bytes, tuple] = {}
        clients: list[tuple] = []
        servers: list[tuple] = []
        root_name: str | None = None
        trace_end = 0
        service_map = self.service_map
        services = self._services
        for res, first, last in runs:
            raw = res.SerializeToString()
            service = services.get(raw, _UNSET)
            if service is _UNSET:
                if len(services) >= _RESOURCE_CACHE_SIZE:
                    services.clear()
                service = services[raw] = _service_name(res.attributes)
            if service is None:
                continue
            for i in range(first, last):
                span = spans[i]
                kind = span.kind
                entry = (i, service, kind, raw)
                if kind in (_CLIENT, _PRODUCER):
                    clients.append(entry)
                elif kind in (_SERVER, _CONSUMER):
                    servers.append(entry)
                elif not service_map:
                    continue
                if service_map:
                    by_id[span.span_id] = entry
                    if root_name is None and not span.parent_span_id:
                        root_name = span.name
                    if span.end_time_unix_nano > trace_end:
                        trace_end = span.end_time_unix_nano
        codes = [span.status.code for span in spans]
        times = [(span.start_time_unix_nano, span.end_time_unix_nano) for span in spans]
        self.add_sides(spans, codes, times, clients, servers, trace_id, kept, services=None)
        if service_map and by_id:
            self._add_service_map(spans, by_id, root_name, trace_end)

    def add_sides(
        self,
        spans: list[Span],
        codes: list[int],
        times: list[tuple[int, int]],
        clients: list[tuple],
        servers: list[tuple],
        trace_id: bytes,
        kept: bool,
        services: set[str] | None = None,
        raw: bytes | None = None,
    ) -> None:
        """Pair one trace's client-side and server-side spans and count the edges.

        ``spans``, ``codes``, ``times``: the trace's flat spans and their status codes
        and (start, end) times. Entries of ``clients`` and ``servers`` are ``(index,
        service, kind, resource bytes)`` of spans of resources that name their service, in
        trace order (``RedAggregator.add_spans`` gathers them in its pass).

        ``services`` (the trace's named services) turns on the service map from the same
        spans (see :meth:`_map_from_pairs`). ``raw``, the trace's protobuf bytes when the
        caller has them, spares reading the attributes of client-side spans for a
        database name when no database-name key occurs anywhere in the trace.
        """
        mapping = services is not None and self.service_map
        # Server-side children by parent id: the first child pairs with a client-side
        # parent; the later ones (all, with no client-side span) only matter to the map.
        # Roots -> "user".
        child_of: dict[bytes, tuple] = {}
        more: list[tuple[tuple, bytes]] = []  # (server-side child, its parent id)
        root: tuple | None = None
        rows: list[tuple] = []  # the trace's edges, see _record
        for entry in servers:
            i = entry[0]
            parent = spans[i].parent_span_id
            if not parent:
                if root is None:
                    root = entry
                start, end = times[i]
                key = (VIRTUAL_CLIENT, entry[1], CONNECTION_VIRTUAL_NODE)
                rows.append((end, key, codes[i] == _STATUS_ERROR, 0.0, _seconds(start, end)))
            elif not clients:
                if mapping:  # no client-side parent to pair with: children for the map
                    more.append((entry, parent))
            elif parent not in child_of:
                child_of[parent] = entry
            elif mapping:
                more.append((entry, parent))
        pairs: list[tuple[tuple, tuple, bytes]] = []
        if clients:
            self._pair(spans, codes, times, clients, child_of, pairs, rows, raw)
        if rows:
            self._record(rows, trace_id, kept)
        if services is not None and mapping:
            self._map_from_pairs(
                spans, times, pairs, child_of, more, clients, servers, root, services
            )

    def _pair(
        self,
        spans: list[Span],
        codes: list[int],
        times: list[tuple[int, int]],
        clients: list[tuple],
        child_of: dict[bytes, tuple],
        pairs: list[tuple[tuple, tuple, bytes]],
        rows: list[tuple],
        raw: bytes | None,
    ) -> None:
        """Append the edges of the client-side spans (database, paired, virtual node) to
        ``rows`` (see :meth:`_record`) and each (client entry, first server-side child
        entry, client span id) to ``pairs`` for the map, database clients included (Data
        Prepper relates them too)."""
        db_attrs = self.db_attributes
        # A substring search costs about 2 µs on a 15 KB trace: worth it for the lookups
        # every client-side span would make, not for the peer of an unpaired one.
        has_db = raw is None or any(key in raw for key in self._db_keys)
        resource_db_names = self._resource_db_names
        add = rows.append
        for entry in clients:
            i, service, kind, res = entry
            span = spans[i]
            start, end = times[i]
            client_s = (end - start) / _NANOS if end > start else 0.0
            failed = codes[i] == _STATUS_ERROR
            child = None
            if child_of:
                sid = span.span_id
                child = child_of.get(sid)
                if child is not None:
                    pairs.append((entry, child, sid))
            db_name = None
            found: dict[str, str] | None = None
            if has_db:
                db_name = resource_db_names.get(res, _UNSET)  # type: ignore[arg-type]
                if db_name is _UNSET:
                    db_name = self._resource_db_name(res)
                if db_name is None:
                    # Read the span once for both lookups when it may need the peer too.
                    wanted = self._db_or_peer_wanted if child is None else self._db_wanted
                    found = _attribute_texts(span.attributes, wanted)
                    db_name = _first_of(found, db_attrs)
            if db_name is not None:
                key = (service, db_name, CONNECTION_DATABASE)
                server_s = client_s
            elif child is not None:
                c = child[0]
                messaging = kind == _PRODUCER or child[2] == _CONSUMER
                key = (service, child[1], CONNECTION_MESSAGING if messaging else CONNECTION_NONE)
                server_s = _seconds(*times[c])
                failed = failed or codes[c] == _STATUS_ERROR
            else:
                if found is None:
                    found = _attribute_texts(span.attributes, self._db_or_peer_wanted)
                peer = _first_of(found, self.peer_attributes) or UNKNOWN_PEER
                key = (service, peer, CONNECTION_VIRTUAL_NODE)
                server_s = 0.0
            add((end, key, failed, client_s, server_s))

    def _resource_db_name(self, resource: bytes) -> str | None:
        """The first database-name attribute of a serialized resource (cached)."""
        names = self._resource_db_names
        if len(names) >= _RESOURCE_CACHE_SIZE:
            names.clear()
        attributes = Resource.FromString(resource).attributes
        found = _attribute_texts(attributes, self._db_wanted) if attributes else {}
        name = names[resource] = _first_of(found, self.db_attributes)
        return name

    def _map_from_pairs(
        self,
        spans: list[Span],
        times: list[tuple[int, int]],
        pairs: list[tuple[tuple, tuple, bytes]],
        child_of: dict[bytes, tuple],
        more: list[tuple[tuple, bytes]],
        clients: list[tuple],
        servers: list[tuple],
        root: tuple | None,
        services: set[str],
    ) -> None:
        """Data Prepper's service-map relationships and isolated services of one trace.

        Data Prepper relates every cross-service parent -> child span pair. Here the
        parents are the client- and server-side spans, and the children the server-side
        ones (every child of a parent, with or without a client span in between): the
        spans the RED pass hands over with their service. A pair with an internal span
        on either side (the pass does not hand those over) is left out; its services
        are isolated unless another pair links them. The window is the root's end, else
        the latest end of the client/server-side spans, else of any span (a trace of
        internal spans only, such as a batch job, is an isolated service of the map).
        """
        if not services:
            return
        if root is not None:
            root_name: str | None = spans[root[0]].name
            end = times[root[0]][1]
        else:
            root_name = next((sp.name for sp in spans if not sp.parent_span_id), None)
            if clients or servers:
                end = max(times[entry[0]][1] for entry in (*clients, *servers))
            elif root_name is not None:  # internal spans only (a batch job): on the map
                end = max(t[1] for t in times)
            else:  # internal spans, no root: late spans of a trace recorded when decided
                return
        lo, hi, window = self._current  # the window of the last edge, if not late
        if not lo <= end < hi or window is None:
            window = self._window(end, count_late=False)
        paired: set[str] = set()
        # One service: nothing to relate. No root: no trace group, no relationship, as in
        # add_trace (Data Prepper >= 2.10 relates such pairs with a null trace group).
        if root_name is not None and len(services) > 1:
            links: list[tuple[tuple, tuple, bytes]] = pairs
            if more or len(pairs) != len(child_of):
                links = pairs + self._other_links(spans, pairs, child_of, more, root, servers)
            seen = window.pair_keys
            note = paired.add
            for parent, child, _ in links:
                parent_service = parent[1]
                child_service = child[1]
                if child_service == parent_service:
                    continue
                note(parent_service)
                note(child_service)
                name = spans[child[0]].name
                # A relationship already in the window costs a tuple and a set lookup.
                key = (parent_service, parent[2], child_service, child[2], name, root_name)
                if key in seen:
                    continue
                seen.add(key)
                window.relationships.add(
                    ServiceMapRelationship(
                        parent_service,
                        span_kind_name(parent[2]),
                        child_service,
                        span_kind_name(child[2]),
                        name,
                        root_name,
                    )
                )
        isolated = window.isolated
        for service in services - paired if paired else services:
            isolated.add((service, root_name))  # an IsolatedService's fields

    @staticmethod
    def _other_links(
        spans: list[Span],
        pairs: list[tuple[tuple, tuple, bytes]],
        child_of: dict[bytes, tuple],
        more: list[tuple[tuple, bytes]],
        root: tuple | None,
        servers: list[tuple],
    ) -> list[tuple[tuple, tuple, bytes]]:
        """(parent entry, child entry, parent id) of the server-side children ``pairs``
        lacks: later children of a parent, and children of a server-side parent (a call
        without a client span).

        A span id read costs about 0.1 µs, so the root's is read first (the usual parent
        of such a call), the other server-side spans' only for a parent still missing,
        and only until it is found.
        """
        if root is not None and not child_of:  # no client-side span in the trace
            root_id = spans[root[0]].span_id
            links = [(root, child, parent) for child, parent in more if parent == root_id]
            if len(links) == len(more):
                return links
        by_id = {sid: client for client, _, sid in pairs}  # their first children: in pairs
        todo = [(child, parent) for parent, child in child_of.items() if parent not in by_id]
        todo += more
        if root is not None:
            by_id.setdefault(spans[root[0]].span_id, root)
        links = [(by_id[parent], child, parent) for child, parent in todo if parent in by_id]
        if len(links) < len(todo):
            wanted = {parent for _, parent in todo if parent not in by_id}
            for entry in servers:
                sid = spans[entry[0]].span_id
                if sid in wanted:
                    wanted.discard(sid)
                    links += [(entry, child, parent) for child, parent in todo if parent == sid]
                    if not wanted:
                        break
        return links

    def _add_service_map(
        self, spans: list[Span], by_id: dict[bytes, tuple], root_name: str | None, end: int
    ) -> None:
        rels: set[ServiceMapRelationship] = set()
        services: set[str] = set()
        paired: set[str] = set()
        for i, service, kind, _ in by_id.values():
            span = spans[i]
            services.add(service)
            parent = by_id.get(span.parent_span_id) if span.parent_span_id else None
            if parent is None or root_name is None or parent[1] == service:
                continue
            paired.add(service)
            paired.add(parent[1])
            rels.add(
                ServiceMapRelationship(
                    parent[1],
                    SPAN_KIND_NAMES[parent[2]] if 0 <= parent[2] < 6 else SPAN_KIND_NAMES[0],
                    service,
                    SPAN_KIND_NAMES[kind] if 0 <= kind < 6 else SPAN_KIND_NAMES[0],
                    span.name,
                    root_name,
                )
            )
        # Late service-map entries follow the same rule (but are not counted in late_edges).
        window = self._window(end, count_late=False)
        window.relationships |= rels
        isolated = window.isolated
        for service in services - paired:
            isolated.add((service, root_name))  # an IsolatedService's fields
