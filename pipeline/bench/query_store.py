"""The query bench's private store: a million spans of the load generator's estate and the
span metrics the worker would have counted from them.

Why the estate (``topologies/estate-30.yaml``, 30 services) and not the sink bench's
single-service traces: its traces cross services (client and server spans, database
calls, messaging), which RBAC's placeholders and the services page need, and the
metrics store it fills has the series count of a real estate.

How it is filled, without holding the store in memory: traces are generated in batches of
``BATCH_TRACES``, their starts spread evenly over the ``TRAFFIC_MINUTES`` before the fill
began (the last hour of traffic, plus the rate window the SPM answers look back over);
each batch is regrouped into one ``TracesData`` per trace (what the sampler writes to the
sampled topic), encoded as the sink encodes it, cut into ``_bulk`` bodies and posted with
raw ``_bulk`` on a thread while the next batch is built, then dropped. Every trace also
goes through the worker's own span-metrics code (``SpanMetrics``: RED and service graph,
one partition), whose 15 s windows, closed a minute behind the batches, become
metrics-store documents through the sink's ``metric_documents`` and go out with the
spans: services x operations x kinds (x status) x windows of them.
One hot span index, refreshed once at the end and never force-merged, as a live index is.
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import aiohttp
from opensearchpy import OpenSearch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pipeline.bench.sink import encode_all, raw_bulk
from pipeline.config.settings import Settings
from pipeline.loadgen import DEFAULT_TOPOLOGY
from pipeline.loadgen.generator import GeneratedTrace, TraceGenerator, encode_request
from pipeline.loadgen.topology import load_topology
from pipeline.sampler.span_metrics import KIND_RED, KIND_SERVICE_GRAPH, SpanMetrics
from pipeline.sink.bulk import bulk_body, chunked
from pipeline.sink.metrics_documents import metric_documents
from pipeline.store.indices import store_names
from pipeline.store.metrics_indices import metrics_index, metrics_index_base
from pipeline.store.setup import ensure_store
from pipeline.wire.otlp import TracesData, regroup_spans

#: Traces of the full run: 1 011 851 spans with seed 5 (the estate averages ~11 a trace).
DEFAULT_TRACES = 92_000
BATCH_TRACES = 2_000
TRAFFIC_MINUTES = 75  # the services page's hour, SPM's 10 min rate window, 5 min spare
BULK_CONCURRENCY = 2
#: The tag the tag search looks for; the services whose spans carry it are recorded.
TAG = ("http.response.status_code", "200")
SERVER_KIND = "SPAN_KIND_SERVER"


def estate_services() -> list[str]:
    """The estate's services, sorted (known before any trace is made)."""
    return sorted(load_topology(DEFAULT_TOPOLOGY).services)


def half_glob(services: list[str]) -> str:
    """A shell glob ``[x-y]*`` on first letters that covers as near half the services as
    first letters allow: the restricted role of the RBAC measurement."""
    ordered = sorted(services)
    first = ordered[0][0]
    best, best_gap = first, len(ordered)
    for letter in sorted({name[0] for name in ordered}):
        covered = sum(1 for name in ordered if name[0] <= letter)
        gap = abs(2 * covered - len(ordered))
        if 0 < covered < len(ordered) and gap < best_gap:
            best, best_gap = letter, gap
    return f"[{first}-{best}]*"


def matcher(glob: str) -> Callable[[str], bool]:
    """Whether a service is covered by ``glob``, as RBAC matches it (case-sensitive)."""
    return lambda service: fnmatch.fnmatchcase(service, glob)


@dataclass
class QueryStore:
    """What the measurements need to know of the filled store."""

    trace_ids: list[str] = field(default_factory=list)
    #: traces with spans of granted and of foreign services (placeholders under RBAC)
    crossing_ids: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    #: services whose spans carry ``TAG`` (seen in the first batch)
    tagged_services: list[str] = field(default_factory=list)
    #: services with server-kind RED series (what SPM answers by default)
    server_services: list[str] = field(default_factory=list)
    spans: int = 0
    metric_documents: int = 0
    red_documents: int = 0
    seconds: float = 0.0


def progress(counted: str) -> Progress:
    """A progress bar on stderr; ``counted`` says what the numbers count, as a rich
    template (``"{task.completed:,}/{task.total:,} requests"``)."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=24),
        TextColumn(counted),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=Console(stderr=True))


def _batches(
    generator: TraceGenerator, traces: int, first_ns: int, spacing_ns: int
) -> Iterator[list[GeneratedTrace]]:
    """``traces`` traces in batches, the n-th starting at ``first_ns + n * spacing_ns``;
    a request's message continuations past the count are left out."""
    made = 0
    while made < traces:
        batch: list[GeneratedTrace] = []
        while len(batch) < BATCH_TRACES and made + len(batch) < traces:
            produced = generator.generate(first_ns + (made + len(batch)) * spacing_ns)
            batch.extend(produced[: traces - made - len(batch)])
        made += len(batch)
        yield batch


def _tagged(batch: list[GeneratedTrace]) -> set[str]:
    key, value = TAG
    return {
        record.instance.service
        for trace in batch
        for record in trace.spans
        if any(k == key and str(v) == value for k, v in record.attributes)
    }


def _post(url: str, index: str, bodies: list[bytes], attempts: int = 5) -> None:
    """Post the bodies; again, whole, when a round fails (documents have ids, so a body
    posted twice overwrites itself): a shared node may refuse for a while (429)."""
    for attempt in range(attempts):
        try:
            asyncio.run(raw_bulk(url, index, bodies, BULK_CONCURRENCY))
            return
        except (RuntimeError, aiohttp.ClientError):
            if attempt == attempts - 1:
                raise
            time.sleep(2.0 * (attempt + 1))


def fill_store(
    client: OpenSearch,
    settings: Settings,
    traces: int,
    seed: int,
    granted: Callable[[str], bool],
) -> QueryStore:
    """Fill the private store of ``settings`` (see the module doc); ``granted`` says
    which services the restricted role sees, to pick the traces that cross its border."""
    started = time.perf_counter()
    ensure_store(client, settings)
    alias = store_names(settings).span_alias
    store = QueryStore()
    metrics = _MetricsFeed(client, settings, store)
    services: set[str] = set()
    first_ns = time.time_ns() - TRAFFIC_MINUTES * 60 * 10**9
    spacing = TRAFFIC_MINUTES * 60 * 10**9 // max(traces, 1)
    generator = TraceGenerator(load_topology(DEFAULT_TOPOLOGY), seed=seed)
    pending: Future | None = None
    counted = "{task.completed:,}/{task.total:,} traces, {task.fields[spans]:,} spans"
    with ThreadPoolExecutor(1) as poster, progress(counted) as bar:
        task = bar.add_task("query bench store", total=traces, spans=0)
        for batch in _batches(generator, traces, first_ns, spacing):
            if not store.tagged_services:
                store.tagged_services = sorted(_tagged(batch))
            for trace in batch:
                seen = {record.instance.service for record in trace.spans}
                services |= seen
                trace_id = trace.trace_id.hex()
                store.trace_ids.append(trace_id)
                if any(map(granted, seen)) and not all(map(granted, seen)):
                    store.crossing_ids.append(trace_id)
            request = encode_request(batch)
            pieces = regroup_spans(request.resource_spans, lambda span: span.trace_id)
            metrics.add(pieces)
            docs = encode_all([piece.SerializeToString() for piece in pieces.values()])
            jobs = [
                (alias, [bulk_body(chunk) for chunk in chunked(docs, settings.store_bulk_bytes)])
            ]
            store.spans += len(docs)
            del docs, pieces, request
            # Windows ending a minute before this batch's first trace are complete.
            jobs += metrics.close(min(t.spans[0].start for t in batch) / 1e9 - 60)
            if pending is not None:
                pending.result()
            pending = poster.submit(_post_all, settings.opensearch_url, jobs)
            bar.update(task, advance=len(batch), spans=store.spans)
        if pending is not None:
            pending.result()
    _post_all(settings.opensearch_url, metrics.close(time.time() + 86_400))
    store.services = sorted(services)
    store.server_services = sorted(metrics.servers)
    client.indices.refresh(index=alias)
    client.indices.refresh(index=f"{metrics.base}-*")
    stored = client.count(index=alias)["count"]
    if stored != store.spans:
        raise RuntimeError(f"query bench store holds {stored} spans, {store.spans} were sent")
    store.seconds = time.perf_counter() - started
    return store


def _post_all(url: str, jobs: list[tuple[str, list[bytes]]]) -> None:
    for index, bodies in jobs:
        _post(url, index, bodies)


class _MetricsFeed:
    """The worker's span-metrics code over the bench's traces (one partition), its closed
    windows as ``_bulk`` bodies for the monthly metrics indices (created from the template
    first, as the metrics writer does)."""

    def __init__(self, client: OpenSearch, settings: Settings, store: QueryStore) -> None:
        self.client = client
        self.settings = settings
        self.store = store
        self.span_metrics = SpanMetrics(settings)
        self.base = metrics_index_base(settings)
        self.indices: set[str] = set()
        self.servers: set[str] = set()  # services with server-kind RED series

    def add(self, pieces: dict[bytes, TracesData]) -> None:
        for trace_id, piece in pieces.items():
            self.span_metrics.add(0, piece, trace_id, True)

    def close(self, watermark_seconds: float) -> list[tuple[str, list[bytes]]]:
        """(index, bodies) of the documents of every window ending by the watermark."""
        lines: dict[str, list[bytes]] = {}
        for kind, key, value in self.span_metrics.close(0, watermark_seconds):
            if kind not in (KIND_RED, KIND_SERVICE_GRAPH):
                continue  # service-map documents go to the span store's map, not here
            for doc in metric_documents(value, key):
                index = metrics_index(self.base, doc.start_unix_nanos)
                lines.setdefault(index, []).append(
                    b'{"index":{"_id":"%s"}}\n%s\n' % (doc.id.encode(), doc.encoded())
                )
                self.store.metric_documents += 1
                if kind == KIND_RED:
                    self.store.red_documents += 1
                    if doc.source.get("span.kind") == SERVER_KIND:
                        self.servers.add(doc.source.get("service.name", ""))
        for index in lines.keys() - self.indices:
            if not self.client.indices.exists(index=index):
                self.client.indices.create(index=index)
            self.indices.add(index)
        max_bytes = self.settings.store_bulk_bytes
        return [
            (index, [b"".join(chunk) for chunk in chunked(found, max_bytes, len)])
            for index, found in lines.items()
        ]


def describe(store: QueryStore) -> str:
    """One line on what was stored, for the console."""
    return (
        f"query bench store: {store.spans:,} spans in {len(store.trace_ids):,} traces of "
        f"{len(store.services)} services, {store.metric_documents:,} metric documents, "
        f"filled in {store.seconds:.0f} s"
    )
