"""TraceView: the buffered spans of one trace, as the policies read them.

Everything a policy needs is derived once per trace and cached on the view: the flattened
span list, span count, start/end times, and attribute maps restricted to the keys the
configured policies ask for (the engine passes that key set in). So however many
policies look at ``http.route``, the spans' attribute lists are walked once.

Policies that look for particular strings (string/numeric/boolean attribute keys,
exact string values) first test whether those bytes occur at all in the trace's
serialized form (``raw``): a protobuf string is always stored verbatim, so when the
bytes are absent no attribute can match and the attribute walk is skipped. ``raw`` may be
given (any bytes that hold the spans' serialized form, e.g. the buffered ``TracesData``
bytes the spans were parsed from); otherwise it is produced once with
``SerializeToString`` on first use (about 7 us for 10 spans, less than walking their
attributes). The sampler (``pipeline.sampler.core``) parses a trace's buffered bytes into
a ``TracesData`` and builds ``TraceView(data, trace_id, len(buffered), raw=buffered)``:
the buffered pieces, concatenated, are the serialized form, so nothing is serialized
again. It then hands the view's flat ``spans`` and ``resource_runs`` to the span metrics,
so the nested structure is walked once per trace.

Attribute maps keep the FIRST entry of a duplicated key, as pdata's ``Map.Get`` does.
Values are the protobuf ``AnyValue`` messages; ``v.string_value`` / ``v.int_value`` /
``v.bool_value`` then read like pdata's ``Str()`` / ``Int()`` / ``Bool()``: the zero value
("", 0, False) when the value is of another type, which is exactly what the collector's
attribute policies compare.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, TracesData

from pipeline.wire.otlp import UNKNOWN_SERVICE, ResourceRun, flat_spans, service_name

AttrMap = dict[str, AnyValue]

# A resource's serialized bytes -> its service.name: a deployment has a few hundred
# distinct resources, and serializing one is cheaper than walking its attributes.
_SERVICES: dict[bytes, str] = {}
_SERVICES_MAX = 4096


def service_of(resource) -> str:
    """The resource's service.name ("unknown_service" without one), cached."""
    raw = resource.SerializeToString()
    service = _SERVICES.get(raw)
    if service is None:
        service = service_name(resource.attributes) or UNKNOWN_SERVICE
        if len(_SERVICES) >= _SERVICES_MAX:
            _SERVICES.clear()
        _SERVICES[raw] = service
    return service


def _varint_len(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


class TraceView:
    """All buffered spans of one trace.

    ``data`` is a ``TracesData`` (or any sequence of ``ResourceSpans``) holding only spans of
    ``trace_id``. ``size_bytes`` is the serialized size the bytes_limiting policy charges
    (computed with ``ByteSize()`` when not given). ``keys`` restricts the attribute maps to
    the keys that matter; None means all keys. ``due`` is when the trace's decision fell
    due, in the event time of the worker's partition (the adaptive policy counts the
    trace in that moment's slot); None where nobody waited for it.
    """

    __slots__ = (
        "_data",
        "_keys",
        "_raw",
        "_res_attrs",
        "_resource_spans",
        "_run_services",
        "_runs",
        "_services_checked",
        "_size_bytes",
        "_span_attrs",
        "_spans",
        "_status_codes",
        "_times",
        "due",
        "trace_id",
    )

    def __init__(
        self,
        data: TracesData | Iterable[ResourceSpans],
        trace_id: bytes,
        size_bytes: int | None = None,
        *,
        keys: frozenset[str] | None = None,
        raw: bytes | None = None,
        due: float | None = None,
        run_services: list[str] | None = None,
    ) -> None:
        rs = data.resource_spans if isinstance(data, TracesData) else data
        self._resource_spans: Sequence[ResourceSpans] = (
            rs if isinstance(rs, Sequence) or hasattr(rs, "__len__") else list(rs)
        )
        self.trace_id = trace_id
        self.due = due  # when the trace's decision fell due (event time); None: not known
        self._size_bytes = size_bytes
        self._keys = keys
        self._raw = raw
        self._data = data if isinstance(data, TracesData) else None
        self._spans: list[Span] | None = None
        self._runs: list[ResourceRun] | None = None
        self._run_services = run_services  # checked against the runs on first use
        self._services_checked = False
        self._times: list[tuple[int, int]] | None = None
        self._status_codes: list[int] | None = None
        self._span_attrs: list[AttrMap] | None = None
        self._res_attrs: list[AttrMap] | None = None

    def with_keys(self, keys: frozenset[str] | None) -> TraceView:
        """The same trace, with attribute maps restricted to `keys` (cache not shared)."""
        return TraceView(
            self._resource_spans,
            self.trace_id,
            self._size_bytes,
            keys=keys,
            raw=self._raw,
            due=self.due,
            run_services=self._run_services,
        )

    @property
    def raw(self) -> bytes:
        """The spans' protobuf bytes (given, or serialized once); for substring pre-checks."""
        if self._raw is None:
            if self._data is not None:
                self._raw = self._data.SerializeToString()
            else:
                self._raw = b"".join(rs.SerializeToString() for rs in self._resource_spans)
        return self._raw

    @property
    def resource_spans(self) -> Sequence[ResourceSpans]:
        return self._resource_spans

    @property
    def size_bytes(self) -> int:
        if self._size_bytes is None:
            total = 0
            for rs in self._resource_spans:
                n = rs.ByteSize()
                total += 1 + _varint_len(n) + n  # field 1 tag, length, message
            self._size_bytes = total
        return self._size_bytes

    @property
    def spans(self) -> list[Span]:
        """All spans, in collector order: resource, then scope, then span."""
        if self._spans is None:
            self._spans, self._runs = flat_spans(self._resource_spans)
        return self._spans

    @property
    def resource_runs(self) -> list[ResourceRun]:
        """(resource, start, end) per ResourceSpans: ``spans[start:end]`` are its spans."""
        if self._runs is None:
            self._spans, self._runs = flat_spans(self._resource_spans)
        return self._runs

    @property
    def run_services(self) -> list[str]:
        """The service.name of each of ``resource_runs``: as the pieces header gave them
        when given for exactly these runs, else from the resources (once per trace)."""
        given = self._run_services
        if self._services_checked:
            return given  # type: ignore[return-value]
        runs = self.resource_runs
        if given is None or len(given) != len(runs):
            given = self._run_services = [service_of(resource) for resource, _, _ in runs]
        self._services_checked = True
        return given

    def service_of_span(self, index: int) -> str:
        """The service.name of ``spans[index]``."""
        for (_, _, last), service in zip(self.resource_runs, self.run_services, strict=True):
            if index < last:
                return service
        raise IndexError(index)

    @property
    def span_count(self) -> int:
        return len(self.spans)

    @property
    def times(self) -> list[tuple[int, int]]:
        """(start_time_unix_nano, end_time_unix_nano) of every span, in span order."""
        if self._times is None:
            self._times = [(s.start_time_unix_nano, s.end_time_unix_nano) for s in self.spans]
        return self._times

    @property
    def status_codes(self) -> list[int]:
        """The status code of every span, in span order (reading one costs ~0.2 us)."""
        if self._status_codes is None:
            self._status_codes = [s.status.code for s in self.spans]
        return self._status_codes

    @property
    def span_attrs(self) -> list[AttrMap]:
        """Per span, key -> AnyValue (first occurrence wins), restricted to the view's keys."""
        if self._span_attrs is None:
            self._span_attrs = [self._attr_map(s.attributes) for s in self.spans]
        return self._span_attrs

    @property
    def resource_attrs(self) -> list[AttrMap]:
        """Per ResourceSpans (spans or not), its resource's attributes as key -> AnyValue."""
        if self._res_attrs is None:
            self._res_attrs = [
                self._attr_map(rs.resource.attributes) for rs in self._resource_spans
            ]
        return self._res_attrs

    def _attr_map(self, attributes) -> AttrMap:
        keys = self._keys
        out: AttrMap = {}
        if keys is None:
            for kv in attributes:
                out.setdefault(kv.key, kv.value)
        else:
            for kv in attributes:
                k = kv.key
                if k in keys and k not in out:
                    out[k] = kv.value
        return out
