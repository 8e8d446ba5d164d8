"""What the ``spansieve loadgen`` command prints, and how it reads its burst flags."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from pipeline.config.models import parse_duration
from pipeline.loadgen.generator import TraceGenerator
from pipeline.loadgen.ledger import LoadgenResult
from pipeline.loadgen.topology import Burst, Topology

_KIND_NAMES = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def _seconds(text: str) -> float:
    """Seconds from a flag: a Go duration ("90s", "1m30s") or a plain number."""
    try:
        return parse_duration(float(text))
    except ValueError:
        return parse_duration(text.strip())


def run_seconds(text: str) -> float:
    """Seconds from a --duration value ("90s", "5m", "120")."""
    try:
        seconds = _seconds(text)
    except ValueError as exc:
        raise ValueError(f"--duration: {exc}") from None
    if seconds <= 0:
        raise ValueError("--duration must be more than 0")
    return seconds


def resolve_burst(
    configured: Burst | None,
    no_burst: bool,
    multiplier: float | None,
    at: str | None,
    duration: str | None,
    run: float,
) -> Burst | bool | None:
    """The burst the flags ask for: None = the topology's, False = none, or a new Burst.

    Flags left out come from the topology's burst; without one, the burst starts at 0 s
    and lasts the rest of the run.
    """
    given = multiplier is not None or at is not None or duration is not None
    if no_burst:
        if given:
            raise ValueError("--no-burst cannot be combined with --burst-* flags")
        return False
    if not given:
        return None
    if multiplier is None and configured is None:
        raise ValueError("--burst-multiplier is needed: the topology has no burst")
    if multiplier is None and configured is not None:
        multiplier = configured.multiplier
    try:
        start = _seconds(at) if at is not None else (configured.at if configured else 0.0)
        length = (
            _seconds(duration)
            if duration is not None
            else (configured.duration if configured else max(run - start, 0.0))
        )
        return Burst.model_validate({"multiplier": multiplier, "at": start, "duration": length})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"burst: {problems}") from None
    except ValueError as exc:
        raise ValueError(f"burst: {exc}") from None


def describe_topology(topology: Topology, seed: int = 1, sample: int = 3000) -> str:
    """A few lines about a topology, from a sample of generated requests."""
    generator = TraceGenerator(topology, seed)
    traces = spans = errors = 0
    kinds: Counter[int] = Counter()
    for number in range(sample):
        for trace in generator.generate(number * 1_000_000, 0.0):
            traces += 1
            spans += len(trace.spans)
            errors += trace.error
            kinds.update(span.kind for span in trace.spans)
    lines = [
        f"{topology.name}: {len(topology.services)} services, "
        f"{sum(s.instances for s in topology.services.values())} instances, "
        f"{len(topology.datastores)} datastores, {len(topology.topics)} topics, "
        f"{len(topology.entry_points)} entry points",
        f"sample of {sample} requests (seed {seed}): {traces} traces, "
        f"{spans / traces:.1f} spans per trace, {errors / traces:.2%} of traces with an error",
        "spans by kind: "
        + ", ".join(f"{_KIND_NAMES[k]} {n / spans:.0%}" for k, n in sorted(kinds.items())),
    ]
    deploy = topology.bad_deploy
    if deploy is not None:
        errors_after = traces_after = 0
        for number in range(sample):
            for trace in generator.generate(number * 1_000_000, deploy.at):
                traces_after += 1
                errors_after += trace.error
        lines.append(
            f"bad deploy: {deploy.service} {deploy.version} from {deploy.at:g} s "
            f"(error rate {deploy.error_rate:g}): {errors_after / traces_after:.2%} of traces "
            "with an error after it"
        )
    if topology.burst is not None:
        burst = topology.burst
        lines.append(f"burst: x{burst.multiplier:g} from {burst.at:g} s for {burst.duration:g} s")
    skewed = [
        f"{name}[{index}] {skew * 1000:+g} ms"
        for name, service in topology.services.items()
        for index, skew in service.clock_skew.items()
    ]
    if skewed:
        lines.append("skewed clocks: " + ", ".join(skewed))
    return "\n".join(lines)


def print_result(result: LoadgenResult, summary: Path | None = None) -> None:
    """The run's figures as a table on stdout."""
    table = Table(title=f"spansieve loadgen: {result.topology} ({result.mode}/{result.transport})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("endpoint", result.endpoint),
        ("elapsed", f"{result.elapsed:.1f} s (pool built in {result.build_seconds:.1f} s)"),
        ("spans sent", f"{result.spans_sent:,}"),
        ("traces sent", f"{result.traces_sent:,} ({result.error_traces_sent:,} with an error)"),
        ("requests sent", f"{result.requests_sent:,}"),
        ("rate", f"{result.spans_per_second:,.0f} spans/s (target {result.target_rate:,.0f})"),
        ("per CPU second", f"{result.spans_per_cpu_second:,.0f} spans"),
        ("throttled (retried)", f"{result.throttled:,} answers, {result.retries:,} retries"),
        ("connection errors", f"{result.connection_errors:,}"),
        ("failed", f"{result.failed_requests:,} requests, {result.failed_spans:,} spans"),
        ("rejected (partial success)", f"{result.rejected_spans:,} spans"),
        ("shortfall (not sent in time)", f"{result.shortfall_spans:,} spans"),
    ]
    if result.burst:
        burst = result.burst
        window = f"from {burst['at']:g} s for {burst['duration']:g} s"
        rows.append(("burst", f"x{burst['multiplier']:g} {window}"))
    if result.ledger.last_error:
        rows.append(("last error", result.ledger.last_error[:200]))
    if summary is not None:
        rows.append(("ground truth", str(summary)))
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)
