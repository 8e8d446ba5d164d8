"""Sink benchmark: documents/s through our index path next to a raw ``_bulk`` ceiling, and
bytes per span on disk with our index settings next to OpenSearch's defaults.

Workload: the reference requests of ``pipeline.bench.workload`` (a dozen attributes per
span, five resource attributes), regrouped into one serialized ``TracesData`` per trace:
exactly the messages the sink reads from the sampled topic.

* **sink path**: message bytes -> protobuf parse -> documents -> ``BulkIndexer``, through
  the agent's own ``write_batch`` and ``BatchPipeline`` with the same batch size, body
  size, concurrency and batches in flight -> acknowledged by OpenSearch.
  Reported per wall second and per CPU second of this process (the sink's own cost).
* **raw ``_bulk``**: the very same NDJSON bodies, prebuilt, posted with the same
  concurrency by a bare aiohttp client: what OpenSearch alone can take (the ceiling).
* **separate cores**: the same rounds again with every thread of the local node pinned
  to one core and the sink (this process) to another, as deployed, where sink workers
  and OpenSearch nodes have machines of their own. With shared cores every document's
  sink CPU is taken from the node, so that ratio also measures the 2-core box.
* **CPU per document** of the sink process and of the OpenSearch node (when the local
  stack's pid file names it): on one machine both share the cores, so the sink's rate
  is bounded by cores / (sink + node CPU per document), reported beside it.
* **bytes per span**: the store size of each index after a refresh and a force-merge to
  one segment, divided by its documents; ours (template: mapping + ``best_compression``)
  and OpenSearch's defaults (no template: dynamic mapping, LZ4). When the node's data
  folder is readable (a node on this machine), ours is also split by Lucene structure:
  stored fields (``_source``, ``_id``, ``_routing``), terms, postings, doc values, points.

Call ``bench_sink(Settings(), traces=10_000)`` on a running local stack, or
``python -m pipeline.bench.sink [TRACES]``; it returns (and the module prints) a dict.
The indices it makes are named ``bench-<random>-...`` and deleted afterwards.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
from opensearchpy import AsyncOpenSearch, OpenSearch

from pipeline.bench.cpu import cpu_seconds
from pipeline.config.settings import Settings
from pipeline.sink.batches import BatchPipeline, BatchResult, write_batch
from pipeline.sink.bulk import BulkIndexer, Doc, bulk_body, chunked
from pipeline.sink.documents import encoded_documents, parse_traces
from pipeline.store.client import OrjsonSerializer
from pipeline.store.indices import store_names
from pipeline.store.setup import ensure_store
from pipeline.wire.otlp import regroup_spans

from .workload import build_export_request

TRACES_PER_REQUEST = 50
SPANS_PER_REQUEST = 512


def opensearch_process(settings: Settings) -> psutil.Process | None:
    """The local node's process, to read its CPU time: from the stack's pid file, or the
    process listening on its port (a node another checkout's stack started)."""
    try:
        pid = int((settings.state_dir / "run" / "opensearch.pid").read_text().strip())
    except (OSError, ValueError):
        pid = _listener_pid(settings.opensearch_port)
    try:
        process = psutil.Process(pid) if pid else None
        return process if process and "OpenSearchRunner" in " ".join(process.cmdline()) else None
    except psutil.Error:
        return None


def _listener_pid(port: int) -> int | None:
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return None
    return next(
        (c.pid for c in connections if c.status == psutil.CONN_LISTEN and c.laddr.port == port),
        None,
    )


def _cpu(process: psutil.Process | None) -> float:
    """The node's CPU seconds, 0 when its process is unknown (never this process's)."""
    return cpu_seconds(process) if process is not None else 0.0


def kept_trace_messages(traces: int, seed: int = 11) -> list[bytes]:
    """Serialized per-trace TracesData, as the sampler writes them to the sampled topic."""
    rng = random.Random(seed)
    messages: list[bytes] = []
    while len(messages) < traces:
        request = build_export_request(rng, SPANS_PER_REQUEST, TRACES_PER_REQUEST)
        for piece in regroup_spans(request.resource_spans, lambda span: span.trace_id).values():
            messages.append(piece.SerializeToString())
    return messages[:traces]


def encode_all(messages: list[bytes]) -> list[Doc]:
    """Every span document of the messages, encoded as the sink encodes them."""
    docs = []
    for message in messages:
        docs.extend(Doc(*encoded) for encoded in encoded_documents(parse_traces(message)))
    return docs


async def _sink_path(settings: Settings, alias: str, messages: list[bytes]) -> dict[str, float]:
    """Our index path, batch by batch as the agent runs it (same pipeline, same settings)."""
    client = AsyncOpenSearch(
        hosts=[settings.opensearch_url],
        timeout=settings.store_request_timeout,
        max_retries=0,
        serializer=OrjsonSerializer(),
    )
    indexer = BulkIndexer(
        client,
        alias,
        max_bytes=settings.store_bulk_bytes,
        concurrency=settings.store_bulk_concurrency,
        timeout=settings.store_request_timeout,
    )
    totals = {"indexed": 0, "dead": 0}

    async def finished(_tag: int, result: BatchResult) -> None:
        totals["indexed"] += result.indexed
        totals["dead"] += len(result.dead)

    pipeline: BatchPipeline[int] = BatchPipeline(settings.store_batches_in_flight, finished)
    cpu = cpu_seconds()
    started = time.perf_counter()
    try:
        batch = settings.store_batch_traces
        for first in range(0, len(messages), batch):
            await pipeline.submit(first, write_batch(indexer, messages[first : first + batch]))
        await pipeline.drain()
    finally:
        await client.close()
    wall = time.perf_counter() - started
    used = cpu_seconds() - cpu
    indexed = totals["indexed"]
    return {
        "docs": indexed,
        "rejected": totals["dead"],
        "seconds": wall,
        "docs_per_s": indexed / wall,
        "cpu_seconds": used,
        "docs_per_cpu_s": indexed / used if used else 0.0,
    }


async def raw_bulk(url: str, index: str, bodies: list[bytes], concurrency: int) -> float:
    """Post prebuilt bodies with ``concurrency`` in flight; returns the wall seconds."""
    queue = list(reversed(bodies))
    endpoint = f"{url.rstrip('/')}/{index}/_bulk?filter_path=errors"
    headers = {"content-type": "application/x-ndjson"}

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            body = queue.pop()
            async with session.post(endpoint, data=body, headers=headers) as reply:
                result = orjson.loads(await reply.read())
                if reply.status >= 300 or result.get("errors"):
                    raise RuntimeError(f"raw bulk failed: {reply.status} {result}")

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return time.perf_counter() - started


# Lucene file extensions by the structure they hold (segment metadata files go to "other").
STRUCTURES = {
    "stored fields": ("fdt", "fdx", "fdm"),
    "terms": ("tim", "tip", "tmd"),
    "postings": ("doc", "pos", "pay"),
    "doc values": ("dvd", "dvm"),
    "points": ("kdd", "kdi", "kdm"),
    "norms": ("nvd", "nvm"),
}
_STRUCTURE_OF = {ext: name for name, exts in STRUCTURES.items() for ext in exts}


def store_breakdown(client: OpenSearch, index: str) -> dict[str, int] | None:
    """Bytes of the index's live segments by structure, read from the node's data folder
    (shard 0; None when that folder is not on this machine, or a segment is a compound
    file, which small indices get).

    OpenSearch 2.x has no disk-usage API, so this lists the segment files themselves.
    """
    concrete = next(iter(client.indices.get(index=index)))
    client.indices.refresh(index=concrete)  # lets go of the segments a merge replaced
    uuid = client.indices.get_settings(index=concrete)[concrete]["settings"]["index"]["uuid"]
    shards = client.indices.segments(index=concrete)["indices"][concrete]["shards"]
    live = set(shards["0"][0]["segments"])
    folders = [
        Path(entry["path"]) / "indices" / uuid / "0" / "index"
        for node in client.nodes.stats(metric="fs")["nodes"].values()
        for entry in node.get("fs", {}).get("data", [])
    ]
    folder = next((f for f in folders if f.is_dir()), None)
    if folder is None:
        return None
    sizes: dict[str, int] = {}
    for path in folder.iterdir():
        segment, _, rest = path.name.partition(".")
        segment = segment.split("_")[:2]  # "_a_Lucene90_0.dvd" -> ["", "a"]
        if "_".join(segment) not in live:
            continue
        extension = rest.rpartition(".")[2] or rest
        if extension == "cfs":
            return None
        structure = _STRUCTURE_OF.get(extension, "other")
        sizes[structure] = sizes.get(structure, 0) + path.stat().st_size
    return sizes


def _bytes_per_doc(client: OpenSearch, index: str) -> dict[str, float]:
    """Store bytes per document after a refresh and a force-merge to one segment."""
    client.indices.refresh(index=index)
    client.indices.forcemerge(index=index, max_num_segments=1, request_timeout=600)
    client.indices.refresh(index=index)
    stats = client.indices.stats(index=index, metric="store,docs")["_all"]["primaries"]
    docs = stats["docs"]["count"]
    size = stats["store"]["size_in_bytes"]
    return {"docs": docs, "bytes": size, "bytes_per_span": size / docs if docs else 0.0}


@dataclass
class _Rounds:
    """Rates and node CPU of alternating raw-bulk and sink-path rounds."""

    raw: list[float] = field(default_factory=list)
    sink: list[dict[str, float]] = field(default_factory=list)
    node_us_raw: list[float] = field(default_factory=list)  # node CPU µs per document
    node_us_sink: list[float] = field(default_factory=list)

    def best_sink(self) -> dict[str, float]:
        return max(self.sink, key=lambda run: run["docs_per_s"])

    def ratio(self) -> float:
        return self.best_sink()["docs_per_s"] / max(self.raw)


@contextmanager
def separate_cores(node: psutil.Process | None) -> Iterator[bool]:
    """Pin every thread of the local node to core 0 and this process to core 1, as when
    sink and OpenSearch run on their own machines; yields False (and pins nothing) with
    fewer than two cores or no local node. Restores the old affinities afterwards."""
    cores = sorted(os.sched_getaffinity(0))
    if node is None or len(cores) < 2:
        yield False
        return
    own, theirs = os.sched_getaffinity(0), os.sched_getaffinity(node.pid)

    def pin_node(cpus: set[int]) -> None:
        for thread in os.listdir(f"/proc/{node.pid}/task"):
            with suppress(OSError):  # a thread may end meanwhile
                os.sched_setaffinity(int(thread), cpus)

    try:
        pin_node({cores[0]})
        os.sched_setaffinity(0, {cores[1]})
        yield True
    finally:
        os.sched_setaffinity(0, own)
        with suppress(OSError):
            pin_node(theirs)


def _run_rounds(
    client: OpenSearch,
    settings: Settings,
    tag: str,
    messages: list[bytes],
    bodies: list[bytes],
    spans: int,
    rounds: int,
    node: psutil.Process | None,
    keep_last: bool = False,
) -> _Rounds:
    """Raw bulk and sink path alternate, each into a fresh index; with ``keep_last`` the
    last round's sink index is left for measuring its size."""
    result = _Rounds()
    for round_ in range(rounds):
        run = settings.model_copy(update={"store_index_prefix": f"{tag}{round_}-"})
        alias = store_names(run).span_alias
        ensure_store(client, run)
        raw_index = f"{tag}raw{round_}-{alias}-000001"
        client.indices.create(index=raw_index, body=_template_body(client, alias))
        cpu = _cpu(node)
        raw_seconds = asyncio.run(
            raw_bulk(settings.opensearch_url, raw_index, bodies, settings.store_bulk_concurrency)
        )
        result.raw.append(spans / raw_seconds)
        result.node_us_raw.append((_cpu(node) - cpu) / spans * 1e6)
        client.indices.delete(index=raw_index)
        cpu = _cpu(node)
        result.sink.append(asyncio.run(_sink_path(run, alias, messages)))
        result.node_us_sink.append((_cpu(node) - cpu) / spans * 1e6)
        if round_ < rounds - 1 or not keep_last:
            client.indices.delete(index=f"{alias}-*")
    return result


def bench_sink(
    settings: Settings, traces: int = 10_000, seed: int = 11, rounds: int = 2
) -> dict[str, Any]:
    """Run the measurements on the stack at ``settings``; see the module doc.

    Raw bulk and sink path alternate for ``rounds`` rounds, each into a fresh index, and
    the best rate of each counts: the machine is shared, so single runs vary by +-20 %.
    The rounds run twice: with sink and node sharing every core, then on separate cores.
    """
    tag = f"bench-{uuid.uuid4().hex[:8]}-"
    ours = settings.model_copy(update={"store_index_prefix": tag, "store_lifecycle": "worker"})
    client = OpenSearch(hosts=[settings.opensearch_url], timeout=120)
    messages = kept_trace_messages(traces, seed)
    docs = encode_all(messages)
    bodies = [bulk_body(chunk) for chunk in chunked(docs, settings.store_bulk_bytes)]
    spans = len(docs)
    source_bytes = sum(len(doc.source) for doc in docs)
    del docs  # a big live object graph would slow the garbage collector in the sink runs
    node = opensearch_process(settings)
    separate: _Rounds | None = None
    try:
        # Warm the JVM and the code paths on a small index first.
        warm = ours.model_copy(update={"store_index_prefix": f"{tag}warm-"})
        ensure_store(client, warm)
        asyncio.run(_sink_path(warm, store_names(warm).span_alias, messages[:500]))

        with separate_cores(node) as pinned:
            if pinned:
                separate = _run_rounds(
                    client, ours, f"{tag}pinned-", messages, bodies, spans, rounds, node
                )
        shared = _run_rounds(client, ours, tag, messages, bodies, spans, rounds, node, True)
        alias = store_names(ours.model_copy(update={"store_index_prefix": f"{tag}{rounds - 1}-"}))
        size_ours = _bytes_per_doc(client, alias.span_alias)
        breakdown = store_breakdown(client, alias.span_alias)

        default_index = f"{tag}defaults"
        asyncio.run(
            raw_bulk(
                settings.opensearch_url, default_index, bodies, settings.store_bulk_concurrency
            )
        )
        size_default = _bytes_per_doc(client, default_index)
    finally:
        client.indices.delete(index=f"{tag}*", ignore_unavailable=True)
        client.indices.delete_index_template(name=f"{tag}*", ignore=404)

    sink = shared.best_sink()
    opensearch_us = min(shared.node_us_raw) if node else None
    sink_us = 1e6 / sink["docs_per_cpu_s"] if sink["docs_per_cpu_s"] else None
    cores = psutil.cpu_count() or 1
    # When sink and node share the cores, each document costs both CPU times.
    shared_ceiling = (
        cores / ((opensearch_us + sink_us) * 1e-6) if opensearch_us and sink_us else None
    )
    return {
        "workload": {
            "traces": traces,
            "spans": spans,
            "json_bytes_per_span": source_bytes / spans,
            "batch_traces": settings.store_batch_traces,
            "bulk_bytes": settings.store_bulk_bytes,
            "concurrency": settings.store_bulk_concurrency,
            "batches_in_flight": settings.store_batches_in_flight,
        },
        "sink": sink,
        "raw_bulk": {"docs": spans, "docs_per_s": max(shared.raw)},
        "sink_vs_raw": shared.ratio(),
        "separate_cores": (
            {
                "sink_docs_per_s": separate.best_sink()["docs_per_s"],
                "raw_docs_per_s": max(separate.raw),
                "sink_vs_raw": separate.ratio(),
                "runs": {
                    "raw_docs_per_s": separate.raw,
                    "sink_docs_per_s": [run["docs_per_s"] for run in separate.sink],
                },
            }
            if separate
            else None
        ),
        "cpu_us_per_doc": {
            "sink_process": sink_us,
            "opensearch_raw": opensearch_us,
            "opensearch_sink": min(shared.node_us_sink) if node else None,
        },
        "shared_cores_ceiling_docs_per_s": shared_ceiling,
        "runs": {
            "raw_docs_per_s": shared.raw,
            "sink_docs_per_s": [run["docs_per_s"] for run in shared.sink],
        },
        "bytes_per_span": {
            "ours": size_ours["bytes_per_span"],
            "default_settings": size_default["bytes_per_span"],
        },
        "store": {"ours": size_ours, "default_settings": size_default},
        "bytes_per_span_by_structure": (
            {name: size / size_ours["docs"] for name, size in breakdown.items()}
            if breakdown and size_ours["docs"]
            else None
        ),
    }


def _template_body(client: OpenSearch, alias: str) -> dict:
    """Settings and mappings our template gives a span index (for the raw-bulk index)."""
    simulated = client.indices.simulate_index_template(name=f"{alias}-000999")["template"]
    return {"settings": simulated["settings"], "mappings": simulated["mappings"]}


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    print(orjson.dumps(bench_sink(Settings(), count), option=orjson.OPT_INDENT_2).decode())
