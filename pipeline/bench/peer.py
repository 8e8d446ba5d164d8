"""The peer: the OpenTelemetry Collector's tail sampler, measured beside ours in one run.

Jaeger v2 embeds the Collector with its ``tail_sampling`` processor. It is built once from
the Go module proxy (``go get -tool`` in a scratch module, then ``go build``: about five
minutes on two cores) into a cache outside the repository (``~/.cache/spansieve/peer``,
or ``$SPANSIEVE_PEER_CACHE``); without Go the stage is skipped and says why.

Both sides take the same policies (errors, latency > 800 ms, 1 %, decision_wait 5 s) and
the same traffic: the load generator plays the estate in protobuf mode with the same seed,
so both receive the same requests, at each fixed rate for ``seconds``, the peer first,
then ours. The peer runs OTLP/HTTP receiver -> ``tail_sampling`` -> ``nop``; ours is the
gateway and a worker with the sampler role only, on private topics. CPU-seconds (user +
system) of each process are counted from the first request until ``decision_wait`` plus
a margin after the last, so that every trace of the run is decided, and reported per
10 000 spans sent; the Kafka broker's CPU over our run is reported apart. Idle cost: CPU
per minute of each process with no traffic, measured before the first rate.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from pipeline.bench.cpu import cpu_seconds
from pipeline.bench.endtoend import running_pipeline
from pipeline.config.settings import Settings
from pipeline.loadgen import run_loadgen
from pipeline.local.run import free_port, port_is_free, wait_until

PEER_MODULE = "github.com/jaegertracing/jaeger/cmd/jaeger"
PEER_VERSION = "v1.75.0"
DECISION_WAIT = 5.0
SETTLE = DECISION_WAIT + 5.0  # after the last request: every trace decided
IDLE_SECONDS = 30.0
PER = 10_000  # spans: CPU is reported per this many
POLICIES = """\
- {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
- {name: slow, type: latency, latency: {threshold_ms: 800}}
- {name: one-percent, type: probabilistic, probabilistic: {sampling_percentage: 1}}
"""


def _indented(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line for line in text.splitlines(keepends=True))


OUR_POLICIES = f"decision_wait: {DECISION_WAIT:g}s\npolicies:\n{_indented(POLICIES, 2)}"


def peer_config(http_port: int) -> str:
    """The Collector configuration of the peer: OTLP/HTTP -> tail_sampling -> nop."""
    return f"""\
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http_port}
processors:
  tail_sampling:
    decision_wait: {DECISION_WAIT:g}s
    num_traces: 200000
    policies:
{_indented(POLICIES, 6)}exporters:
  nop: {{}}
service:
  telemetry:
    logs:
      level: warn
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tail_sampling]
      exporters: [nop]
"""


def peer_cache() -> Path:
    default = Path.home() / ".cache" / "spansieve" / "peer"
    return Path(os.environ.get("SPANSIEVE_PEER_CACHE", default)) / f"jaeger-{PEER_VERSION}"


def build_peer(log=print) -> Path | None:
    """The peer's binary, built on first use; None (and why, through ``log``) without Go."""
    folder = peer_cache()
    binary = folder / "jaeger"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        log("peer: no Go toolchain on this machine; the peer stage is skipped")
        return None
    folder.mkdir(parents=True, exist_ok=True)
    steps = []
    if not (folder / "go.mod").exists():
        steps.append([go, "mod", "init", "spansieve.local/peer"])
    steps += [
        [go, "get", "-tool", f"{PEER_MODULE}@{PEER_VERSION}"],
        [go, "build", "-o", str(binary), PEER_MODULE],
    ]
    for step in steps:
        log(f"peer: {' '.join(step[1:])} (in {folder}; the build takes minutes)")
        done = subprocess.run(step, cwd=folder, capture_output=True, text=True)
        if done.returncode:
            log(f"peer: {' '.join(step[1:])} failed:\n{done.stderr[-2000:]}")
            return None
    return binary


@contextmanager
def running_peer(binary: Path, folder: Path) -> Iterator[tuple[psutil.Process, str]]:
    """The peer listening on a private OTLP/HTTP port: (its process, its endpoint)."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = folder / "peer.yaml"
    config.write_text(peer_config(port))
    with (folder / "peer.log").open("ab") as log:
        child = subprocess.Popen(
            [str(binary), "--config", str(config)], stdout=log, stderr=log, cwd=folder
        )
    try:
        if not wait_until(lambda: not port_is_free(port), "peer listening", 60):
            log_text = (folder / "peer.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the peer did not start:\n{log_text}")
        yield psutil.Process(child.pid), f"http://127.0.0.1:{port}"
    finally:
        child.terminate()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()


def kafka_broker() -> psutil.Process | None:
    """The local Kafka broker's process, if one runs on this machine."""
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "java" in cmdline and "kafka.Kafka" in cmdline:
            return process
    return None


@dataclass
class Load:
    """One fixed-rate run against one side."""

    rate: float
    spans: int
    refused_spans: int
    cpu: dict[str, float]  # process name -> CPU seconds over the run
    rss: dict[str, int]  # process name -> resident bytes at the end

    def per_spans(self, name: str) -> float:
        """CPU seconds of ``name`` per ``PER`` spans sent."""
        return self.cpu[name] * PER / self.spans if self.spans else float("nan")


def measure(processes: dict[str, psutil.Process], target: str, rate: float, seconds: float) -> Load:
    """Play the estate at ``rate`` for ``seconds`` into ``target``; CPU until decided."""
    before = {name: cpu_seconds(p) for name, p in processes.items()}
    result = run_loadgen(target, rate=rate, duration=seconds, burst=False, mode="protobuf")
    time.sleep(SETTLE)
    cpu = {name: cpu_seconds(p) - before[name] for name, p in processes.items()}
    rss = {name: p.memory_info().rss for name, p in processes.items()}
    # Refused by the receiver; the load generator's own shortfall is not the receiver's.
    refused = result.failed_spans + result.rejected_spans
    return Load(rate, result.spans_sent, refused, cpu, rss)


def idle_cpu_per_minute(processes: dict[str, psutil.Process]) -> dict[str, float]:
    before = {name: cpu_seconds(p) for name, p in processes.items()}
    time.sleep(IDLE_SECONDS)
    return {
        name: (cpu_seconds(p) - before[name]) * 60.0 / IDLE_SECONDS for name, p in processes.items()
    }


def bench_peer(base: Settings, folder: Path, rates: list[float], seconds: float) -> dict:
    """Ours and the peer at each rate; see the module docstring."""
    binary = build_peer()
    if binary is None:
        return {"skipped": "no peer binary (see the log above)"}
    broker = kafka_broker()
    rows = []
    with (
        running_peer(binary, folder / "peer") as (peer, endpoint),
        running_pipeline(
            base, folder / "ours", DECISION_WAIT, OUR_POLICIES, worker_roles="sampler"
        ) as ours,
    ):
        our_processes = {"gateway": ours.gateway, "worker": ours.worker}
        if broker is not None:
            our_processes["kafka"] = broker
        idle = idle_cpu_per_minute({"peer": peer, **our_processes})
        gateway = f"http://127.0.0.1:{ours.settings.gateway_http_port}"
        for rate in rates:
            theirs = measure({"peer": peer}, endpoint, rate, seconds)
            mine = measure(our_processes, gateway, rate, seconds)
            ours_per = mine.per_spans("gateway") + mine.per_spans("worker")
            peer_per = theirs.per_spans("peer")
            rows.append(
                {
                    "rate": rate,
                    "peer_spans": theirs.spans,
                    "peer_refused_spans": theirs.refused_spans,
                    "peer_cpu_per_10k": peer_per,
                    "peer_rss": theirs.rss["peer"],
                    "ours_spans": mine.spans,
                    "ours_refused_spans": mine.refused_spans,
                    "gateway_cpu_per_10k": mine.per_spans("gateway"),
                    "worker_cpu_per_10k": mine.per_spans("worker"),
                    "kafka_cpu_per_10k": mine.per_spans("kafka") if broker else None,
                    "ours_cpu_per_10k": ours_per,
                    "ours_rss": mine.rss["gateway"] + mine.rss["worker"],
                    "ratio_ours_to_peer": ours_per / peer_per if peer_per else float("nan"),
                }
            )
    return {
        "peer": f"{PEER_MODULE}@{PEER_VERSION}",
        "seconds_per_rate": seconds,
        "decision_wait_s": DECISION_WAIT,
        "idle_cpu_s_per_minute": idle,
        "rates": rows,
    }
