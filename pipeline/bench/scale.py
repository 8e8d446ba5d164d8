"""The scale model: what the design target (10 M spans/s) needs, from measured figures.

Every input is a number a benchmark run measured on this machine, except the few
assumptions named in ASSUMPTIONS (they are industry rules of thumb, stated so that a
reader can redo the arithmetic with their own).
"""

from __future__ import annotations

import math

DESIGN_SPANS_PER_S = 10_000_000
KEPT_SHARES = (0.01, 0.05)
RETENTION_DAYS = 7
ASSUMPTIONS = {
    "kafka_partition_mb_per_s": 10.0,  # sustained produce+consume per partition
    "kafka_broker_mb_per_s": 100.0,  # produce per broker, before replication
    "kafka_replication": 3,
    "opensearch_replicas": 1,
    "core_headroom": 0.7,  # run cores at 70 % so bursts and rebalances fit
}


def scale_model(results: dict, target: float = DESIGN_SPANS_PER_S) -> dict:
    """Cores, partitions, nodes and storage for ``target`` spans/s (None where unmeasured)."""
    headroom = ASSUMPTIONS["core_headroom"]
    model: dict = {"target_spans_per_s": target, "assumptions": ASSUMPTIONS}
    gateway = results.get("gateway", {})
    per_gateway_core = min(
        (gateway[t]["spans_per_core_s"] for t in ("http", "grpc") if t in gateway), default=None
    )
    model["gateway_cores"] = _cores(target, per_gateway_core, headroom)
    sampler = results.get("sampler", {})
    model["worker_cores"] = _cores(target, sampler.get("spans_per_core_s"), headroom)

    wire_bytes = gateway.get("request_bytes", 0) / max(gateway.get("request_spans", 1), 1)
    if wire_bytes:
        mb_per_s = target * wire_bytes / 1e6
        partitions = mb_per_s / ASSUMPTIONS["kafka_partition_mb_per_s"]
        model["span_bytes_on_wire"] = wire_bytes
        model["kafka_ingest_mb_per_s"] = mb_per_s
        model["kafka_partitions"] = _power_of_two(max(partitions, model["worker_cores"] or 1))
        replicated = mb_per_s * ASSUMPTIONS["kafka_replication"]
        model["kafka_brokers"] = math.ceil(replicated / ASSUMPTIONS["kafka_broker_mb_per_s"])

    sink = results.get("sink", {})
    raw_bulk = sink.get("raw_bulk", {}).get("docs_per_s")
    sink_per_core = sink.get("sink", {}).get("docs_per_cpu_s")
    disk = sink.get("bytes_per_span", {}).get("ours")
    per_share = {}
    for share in KEPT_SHARES:
        kept = target * share
        entry: dict = {"kept_spans_per_s": kept}
        entry["sink_cores"] = _cores(kept, sink_per_core, headroom)
        # Nodes like the benchmark's (one node on 2 cores shared with everything else).
        entry["opensearch_nodes"] = _cores(kept, raw_bulk, headroom)
        if disk:
            stored = kept * 86_400 * RETENTION_DAYS * disk
            entry["storage_tb_primary"] = stored / 1e12
            entry["storage_tb_with_replicas"] = (
                stored * (1 + ASSUMPTIONS["opensearch_replicas"]) / 1e12
            )
        per_share[f"{share:.0%}"] = entry
    model["kept"] = per_share
    return model


def _cores(rate: float, per_core: float | None, headroom: float) -> int | None:
    if not per_core:
        return None
    return math.ceil(rate / (per_core * headroom))


def _power_of_two(count: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(count, 1))))
