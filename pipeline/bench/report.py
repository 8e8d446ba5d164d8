"""Prints benchmark results as a table and writes them as JSON."""

from __future__ import annotations

import math
import platform
from pathlib import Path

import orjson
import psutil
from rich.console import Console
from rich.table import Table


def machine() -> dict:
    return {
        "cpu_count": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_json(path: Path, results: dict) -> None:
    path.write_bytes(orjson.dumps({"machine": machine(), **results}, option=orjson.OPT_INDENT_2))


def _cost_row(variant: str, rate: float, cost: float, against: str) -> tuple[str, ...]:
    """A sampler row: spans per worker core with ``variant``, and its extra CPU per span."""
    return (
        "sampler",
        f"spans per worker core, {variant}",
        _rate(rate),
        f"{cost * 100:+.0f} % CPU per span{against}",
    )


def summary_rows(results: dict) -> list[tuple[str, str, str, str]]:
    """(stage, measure, value, against) rows of the one-table summary; missing stages skipped."""
    rows: list[tuple[str, str, str, str]] = []
    gateway = results.get("gateway")
    if gateway:
        parse = gateway["parse_ceiling_spans_per_s"]
        rows.append(("ceiling", "raw protobuf parse", _rate(parse), "one core"))
        produce = gateway["kafka_produce_ceiling_spans_per_s"]
        rows.append(("ceiling", "raw Kafka produce", _rate(produce), "confluent-kafka"))
        for transport in ("http", "grpc"):
            if transport in gateway:
                stage = gateway[transport]
                rows.append(
                    (
                        "gateway",
                        f"OTLP/{transport.upper()} per core",
                        _rate(stage["spans_per_core_s"]),
                        f"{stage['ratio_to_parse_ceiling']:.2f} x parse",
                    )
                )
    sampler = results.get("sampler")
    if sampler:
        consume = sampler["kafka_consume_ceiling_spans_per_s"]
        rows.append(("ceiling", "raw Kafka consume", _rate(consume), "confluent-kafka, per core"))
        rows.append(
            (
                "sampler",
                "spans per worker core",
                _rate(sampler["spans_per_core_s"]),
                f"{sampler['ratio_to_consume_ceiling']:.2f} x consume",
            )
        )
        if sampler.get("spans_per_core_s_metrics_on") is not None:
            rows.append(
                _cost_row(
                    "span metrics on",
                    sampler["spans_per_core_s_metrics_on"],
                    sampler["metrics_cost_ratio"],
                    ", best of 2 interleaved passes each (issue budget 15 %)",
                )
            )
            if sampler.get("metrics_cost_in_run") is not None:
                rows.append(
                    (
                        "sampler",
                        "span metrics, worker's own account",
                        f"{sampler['metrics_cost_in_run'] * 100:+.0f} % CPU",
                        "CPU it spent on span metrics / the rest of the same pass",
                    )
                )
        if sampler.get("adaptive_cost_ratio") is not None:
            rows.append(
                _cost_row(
                    "latency_percentile + adaptive",
                    sampler["spans_per_core_s_adaptive"],
                    sampler["adaptive_cost_ratio"],
                    " against latency > 800 ms + 1 %, best of 2 interleaved passes each"
                    " (budget 15 %)",
                )
            )
        for prefix, traces in (("", "synthetic"), ("estate_", "estate")):
            if sampler.get(f"{prefix}adaptive_cost_in_run") is None:
                continue
            rows.append(
                (
                    "sampler",
                    f"latency_percentile + adaptive ({traces} traces): whole worker /"
                    " policies' own account",
                    f"{sampler[f'{prefix}adaptive_cost_ratio'] * 100:+.0f} % /"
                    f" {sampler[f'{prefix}adaptive_cost_in_run'] * 100:+.0f} % CPU",
                    "best passes' worker CPU; policies' CPU (adaptive - plain) / the plain"
                    " pass's worker CPU (budget 15 %)",
                )
            )
        if sampler.get("estate_metrics_cost_ratio") is not None:
            rows.append(
                (
                    "sampler",
                    "estate traces: spans per worker core, metrics off / on",
                    f"{_rate(sampler['estate_spans_per_core_s'])} / "
                    f"{_rate(sampler['estate_spans_per_core_s_metrics_on'])}",
                    f"{sampler['estate_metrics_cost_ratio'] * 100:+.0f} % CPU per span; "
                    f"worker's own account {sampler['estate_metrics_cost_in_run'] * 100:+.0f} %",
                )
            )
        rows.append(
            (
                "sampler",
                "RSS per buffered span",
                f"{sampler['rss_bytes_per_buffered_span']:,.0f} B",
                f"{sampler['buffered_spans']:,} spans buffered, none decided",
            )
        )
        rows.append(
            (
                "sampler",
                "kept by the errors policy",
                f"{sampler['kept_traces']:,.0f} traces",
                f"{sampler['error_traces']:,} error traces sent",
            )
        )
    sink = results.get("sink")
    if sink:
        raw = sink["raw_bulk"]["docs_per_s"]
        rows.append(("ceiling", "raw OpenSearch _bulk", f"{raw:,.0f} docs/s", "same documents"))
        rows.append(
            (
                "sink",
                "documents indexed",
                f"{sink['sink']['docs_per_s']:,.0f} docs/s",
                f"{sink['sink_vs_raw']:.2f} x raw bulk; "
                f"{sink['sink']['docs_per_cpu_s']:,.0f} per sink core",
            )
        )
        separate = sink.get("separate_cores")
        if separate:
            rows.append(
                (
                    "sink",
                    "documents indexed, separate cores",
                    f"{separate['sink_docs_per_s']:,.0f} docs/s",
                    f"{separate['sink_vs_raw']:.2f} x raw bulk "
                    f"({separate['raw_docs_per_s']:,.0f} docs/s); node and sink one core each",
                )
            )
        size = sink["bytes_per_span"]
        rows.append(
            (
                "sink",
                "bytes per span on disk",
                f"{size['ours']:,.0f} B",
                f"{size['default_settings']:,.0f} B with default settings",
            )
        )
        parts = sink.get("bytes_per_span_by_structure")
        if parts:
            ranked = sorted(
                ((name, value) for name, value in parts.items() if value >= 0.5),
                key=lambda item: -item[1],
            )
            rows.append(
                (
                    "sink",
                    "bytes per span by structure",
                    " / ".join(f"{value:,.0f}" for _, value in ranked),
                    " / ".join(name for name, _ in ranked),
                )
            )
    query = results.get("query")
    if query:
        rows.extend(_query_rows(query))
    e2e = results.get("e2e")
    if e2e:
        rows.extend(_e2e_rows(e2e))
    fresh = results.get("metrics")
    if fresh:
        rows.append(
            (
                "span metrics",
                "freshness p50 / p99",
                f"{fresh['freshness_p50_s']:.1f} / {fresh['freshness_p99_s']:.1f} s",
                f"span end -> its window's calls in the store; decision_wait "
                f"{fresh['decision_wait_s']:g} s, window {fresh['window_s']:g} s, grace "
                f"{fresh['grace_s']:g} s; {fresh['windows_incomplete']} of "
                f"{fresh['windows']} windows incomplete",
            )
        )
    peer = results.get("peer")
    if peer:
        rows.extend(_peer_rows(peer))
    return rows


def _query_kinds(query: dict) -> list[tuple[str, str]]:
    """(result key, what it measures) of the query stage's request kinds, as present
    (results from before the services page, SPM and RBAC have only the first three)."""
    kinds = [
        ("trace_by_id", "trace by id"),
        ("search", f"search, {query['search_limit']} traces"),
        (
            "search_tag_duration",
            f"search by tag + trace duration > {query.get('min_duration_ms', 5)} ms",
        ),
        ("services_page", "services page (services + calls, errors, p95 of all, 1 h)"),
        ("spm_calls", "SPM calls by operation, 1 h"),
    ]
    return [(key, measure) for key, measure in kinds if key in query]


def _known(value: float | None) -> bool:
    """Measured: not NaN, nor None (NaN as JSON writes it)."""
    return value is not None and not math.isnan(value)


def _ms(figures: dict, prefix: str) -> str:
    """``p50 / p95 / p99 ms`` of one side (``p95`` left out where a result lacks it)."""
    keys = [key for q in (50, 95, 99) if (key := f"{prefix}p{q}_ms") in figures]
    shown = [f"{figures[key]:.1f}" if _known(figures[key]) else "n/a" for key in keys]
    return " / ".join(shown) + " ms"


def _failed(figures: dict) -> str:
    """``; failed ...: error`` when some calls of a measurement failed, else ""."""
    if "failed" not in figures:
        return ""
    counts = ", ".join(f"{side} {count}" for side, count in figures["failed"].items())
    error = figures["error"][:160].replace("|", "/")  # a Markdown table cell
    return f"; FAILED calls: {counts}: {error}"


def _percent(ratio: float | None) -> str:
    """A ratio as the share it adds: ``+4 %``."""
    return f"{(ratio - 1) * 100:+.0f} %" if _known(ratio) else "not measured"


def _plus_one(added: float | None) -> float | None:
    return added + 1 if added is not None else None


def _query_rows(query: dict) -> list[tuple[str, str, str, str]]:
    """The store, each kind's percentiles ours against bare, and RBAC's cost per kind."""
    rows = []
    workload = query["workload"]
    if "services" in workload:
        rows.append(
            (
                "query",
                "store",
                f"{workload['spans']:,} spans, {workload['traces']:,} traces",
                f"{workload['services']} services over {workload['traffic_minutes']} min, "
                f"{workload['metric_documents']:,} span-metrics documents; filled in "
                f"{query['fill_seconds']:.0f} s",
            )
        )
    percentiles = "p50 / p95 / p99" if "p95_ms" in query["trace_by_id"] else "p50 / p99"
    for key, measure in _query_kinds(query):
        figures = query[key]
        at = ", ".join(
            f"{figures[f'ratio_p{q}']:.2f} x at p{q}"
            for q in (50, 95)
            if _known(figures.get(f"ratio_p{q}"))
        )
        at = f" ({at})" if at else ""
        rows.append(
            (
                "query",
                f"{measure} {percentiles}",
                _ms(figures, ""),
                f"bare OpenSearch {_ms(figures, 'bare_')}{at}{_failed(figures)}",
            )
        )
    rbac = query.get("rbac")
    if not rbac:
        return rows
    for key, measure in _query_kinds(query):
        figures = rbac[key]
        to_p95 = {name: value for name, value in figures.items() if not name.endswith("p99_ms")}
        rows.append(
            (
                "query",
                f"RBAC on / off: {measure} p50 / p95",
                _ms(to_p95, "on_"),
                f"off {_ms(to_p95, 'off_')}: "
                f"{_percent(figures['ratio_p50'])} at p50, "
                f"{_percent(figures['ratio_p95'])} at p95{_failed(figures)}",
            )
        )
    rows.append(
        (
            "query",
            "RBAC added cost, worst kind",
            f"{_percent(_plus_one(query['rbac_added_p50']))} at p50 / "
            f"{_percent(_plus_one(query['rbac_added_p95']))} at p95",
            f"budget 10 %, worst: {query.get('rbac_worst_kind')}; a token granted "
            f"{rbac['granted']} ({rbac['granted_services']} of "
            f"{workload['services']} services), {rbac['placeholders_per_trace']:.1f} "
            "placeholder spans per looked-up trace; both servers alternating",
        )
    )
    return rows


def _peer_rows(peer: dict) -> list[tuple[str, str, str, str]]:
    """Ours (gateway + worker) against the Collector's tail sampler, per fixed rate."""
    if "skipped" in peer:
        return [("peer", "Collector tail sampler", "skipped", peer["skipped"])]
    rows = []
    for row in peer["rates"]:
        kafka = row["kafka_cpu_per_10k"]
        rows.append(
            (
                "peer",
                f"CPU-s per 10 000 spans at {row['rate']:,.0f} spans/s",
                f"ours {row['ours_cpu_per_10k']:.3f} / peer {row['peer_cpu_per_10k']:.3f} / "
                f"peer over Kafka {row['peer_kafka_cpu_per_10k']:.3f}",
                f"{row['ratio_ours_to_peer']:.2f} x the peer, "
                f"{row['ratio_ours_to_peer_kafka']:.2f} x the peer over Kafka (gateway "
                f"{row['gateway_cpu_per_10k']:.3f} + worker {row['worker_cpu_per_10k']:.3f}"
                + (f"; Kafka broker {kafka:.3f} apart" if kafka is not None else "")
                + f"); RSS ours {_mib(row['ours_rss'])}, peer {_mib(row['peer_rss'])}, "
                f"peer over Kafka {_mib(row['peer_kafka_rss'])}; refused ours "
                f"{row['ours_refused_spans']:,}, peer {row['peer_refused_spans']:,}, "
                f"peer over Kafka {row['peer_kafka_refused_spans']:,}",
            )
        )
    idle = ", ".join(f"{name} {cpu:.2f}" for name, cpu in peer["idle_cpu_s_per_minute"].items())
    rows.append(("peer", "idle CPU-s per minute", idle, "no traffic, each process"))
    sustained = peer.get("sustained", {})
    if sustained:
        text = ", ".join(
            f"{name} {_rate_or_none(result['highest_sustained'])}"
            for name, result in sustained.items()
        )
        tried = max((len(result["tried"]) for result in sustained.values()), default=0)
        rows.append(
            (
                "peer",
                "highest sustained spans/s",
                text,
                f"climbing up to {tried} rates: nothing refused, load kept pace, all read",
            )
        )
    return rows


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def _rate_or_none(rate: float | None) -> str:
    return "none of the ladder" if rate is None else f"{rate:,.0f}"


def _e2e_rows(e2e: dict) -> list[tuple[str, str, str, str]]:
    steady, burst = e2e["steady"], e2e["burst"]
    load = f"{steady['rate_spans_per_s']:,.0f} spans/s paced"
    return [
        (
            "end to end",
            "visibility p50 / p99",
            f"{steady['visibility_p50_s']:.1f} / {steady['visibility_p99_s']:.1f} s",
            f"span sent -> searchable; {load}",
        ),
        (
            "end to end",
            "decision latency p50 / p99",
            f"<= {steady['decision_latency_p50_s']:g} / {steady['decision_latency_p99_s']:g} s",
            f"decision_wait {steady['decision_wait_s']:g} s; histogram bounds",
        ),
        (
            "end to end",
            "gateway / worker per core",
            f"{_rate(steady['gateway_spans_per_core_s'])} / "
            f"{_rate(steady['worker_spans_per_core_s'])}",
            f"at {load} (worker = sampler + sink)",
        ),
        (
            "correctness",
            "error traces kept, complete",
            f"{steady['error_traces_kept_complete'] + burst['error_traces_kept_complete']:,}"
            f" of {steady['error_traces_sent'] + burst['error_traces_sent']:,}",
            "steady + burst runs",
        ),
        (
            "correctness",
            "probabilistic share",
            f"{steady['probabilistic_kept_share']:.2%}",
            f"expected {steady['probabilistic_expected_share']:.0%}; "
            f"kept set == hash prediction: {e2e['kept_as_predicted']}",
        ),
        (
            "burst",
            f"{burst['burst']['multiplier']:g}x for {burst['burst']['duration']:g} s: catch-up",
            _seconds(burst.get("burst_catch_up_s")),
            f"max lag {burst['max_worker_lag_spans']:,.0f} spans; "
            f"{burst['requests_refused']} requests refused; "
            f"/readyz max {burst['gateway_ready_max_ms']:.0f} ms",
        ),
    ]


def print_summary(results: dict, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="spansieve bench")
    for column in ("stage", "measure", "value", "against"):
        table.add_column(column)
    for row in summary_rows(results):
        table.add_row(*row)
    console.print(table)
    model = results.get("scale_model")
    if model:
        print_scale_model(model, console)


def print_scale_model(model: dict, console: Console) -> None:
    table = Table(title=f"scale model for {model['target_spans_per_s']:,.0f} spans/s")
    for column in ("resource", "value"):
        table.add_column(column)
    for key in ("gateway_cores", "worker_cores", "kafka_partitions", "kafka_brokers"):
        if model.get(key) is not None:
            table.add_row(key.replace("_", " "), f"{model[key]:,}")
    for share, entry in model.get("kept", {}).items():
        for key, value in entry.items():
            if value is not None and key != "kept_spans_per_s":
                table.add_row(f"{key.replace('_', ' ')} at {share} kept", _number(value))
    console.print(table)


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _rate(value: float) -> str:
    return f"{value:,.0f} spans/s"


def _seconds(value: float | None) -> str:
    return "not caught up" if value is None else f"{value:.1f} s"


def summary_markdown(results: dict) -> str:
    """The summary and scale model as Markdown tables (for the README's Performance section)."""
    lines = ["| stage | measure | value | against |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in summary_rows(results)]
    model = results.get("scale_model")
    if model:
        lines += ["", "| resource for 10 M spans/s | value |", "|---|---|"]
        for key in ("gateway_cores", "worker_cores", "kafka_partitions", "kafka_brokers"):
            if model.get(key) is not None:
                lines.append(f"| {key.replace('_', ' ')} | {model[key]:,} |")
        for share, entry in model.get("kept", {}).items():
            for key, value in entry.items():
                if value is not None and key != "kept_spans_per_s":
                    lines.append(f"| {key.replace('_', ' ')} at {share} kept | {_number(value)} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m pipeline.bench.report out.json
    import sys

    print(summary_markdown(orjson.loads(Path(sys.argv[1]).read_bytes())))
