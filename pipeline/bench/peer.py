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
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from confluent_kafka import Consumer, TopicPartition

from pipeline.bench.cpu import cpu_seconds
from pipeline.bench.endtoend import running_pipeline
from pipeline.bench.metrics_scrape import scrape
from pipeline.config.settings import Settings
from pipeline.kafka.topics import delete_topics, ensure_topics
from pipeline.loadgen import run_loadgen
from pipeline.local.run import free_port, port_is_free, wait_until

PEER_MODULE = "github.com/jaegertracing/jaeger/cmd/jaeger"
PEER_VERSION = "v1.75.0"
DECISION_WAIT = 5.0
SETTLE = DECISION_WAIT + 5.0  # after the last request: every trace decided
IDLE_SECONDS = 30.0
PER = 10_000  # spans: CPU is reported per this many
SUSTAINED_SHARE = 0.97  # of the target spans the load generator must have delivered
LADDER_SECONDS = 15.0  # each step of the highest-sustained-rate climb
SPANS_RECEIVED = "spansieve_sampler_spans_received_total"
KAFKA_PEER_JOIN_SECONDS = 10.0  # the back Collector's consumer group settles
POLICIES = """\
- {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
- {name: slow, type: latency, latency: {threshold_ms: 800}}
- {name: one-percent, type: probabilistic, probabilistic: {sampling_percentage: 1}}
"""


def _indented(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line for line in text.splitlines(keepends=True))


OUR_POLICIES = f"decision_wait: {DECISION_WAIT:g}s\npolicies:\n{_indented(POLICIES, 2)}"


_TELEMETRY = """\
  telemetry:
    logs:
      level: warn
    metrics:
      level: none
"""


def _tail_sampling() -> str:
    return f"""\
  tail_sampling:
    decision_wait: {DECISION_WAIT:g}s
    num_traces: 200000
    policies:
{_indented(POLICIES, 6)}"""


def _sampling_collector(receivers: str, receiver: str) -> str:
    """A Collector configuration: ``receivers`` (YAML) -> tail_sampling -> nop."""
    return f"""\
receivers:
{receivers}processors:
{_tail_sampling()}exporters:
  nop: {{}}
service:
{_TELEMETRY}  pipelines:
    traces:
      receivers: [{receiver}]
      processors: [tail_sampling]
      exporters: [nop]
"""


def _otlp_http(http_port: int) -> str:
    return f"""\
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http_port}
"""


def peer_config(http_port: int) -> str:
    """The Collector configuration of the peer: OTLP/HTTP -> tail_sampling -> nop."""
    return _sampling_collector(_otlp_http(http_port), "otlp")


def kafka_peer_configs(http_port: int, brokers: str, topic: str, group: str) -> tuple[str, str]:
    """The Collectors of the peer with our durability: (front, back) configurations.

    Front: OTLP/HTTP -> Kafka exporter, spans partitioned by trace id, acks from all
    in-sync replicas, lz4, and no sending queue, so a request is answered only once Kafka
    has its spans (the gateway's guarantee; with the default in-memory queue the Collector
    answers first). Back: Kafka receiver -> tail_sampling -> nop.
    """
    brokers_list = ", ".join(f'"{b}"' for b in brokers.split(","))
    front = f"""\
receivers:
{_otlp_http(http_port)}exporters:
  kafka:
    brokers: [{brokers_list}]
    traces:
      topic: {topic}
      encoding: otlp_proto
    partition_traces_by_id: true
    producer:
      required_acks: -1
      compression: lz4
    sending_queue:
      enabled: false
service:
{_TELEMETRY}  pipelines:
    traces:
      receivers: [otlp]
      exporters: [kafka]
"""
    kafka_receiver = f"""\
  kafka:
    brokers: [{brokers_list}]
    traces:
      topic: {topic}
      encoding: otlp_proto
    group_id: {group}
    initial_offset: latest
"""
    back = _sampling_collector(kafka_receiver, "kafka")
    return front, back


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
def _collector(
    binary: Path, folder: Path, name: str, config: str, ready
) -> Iterator[psutil.Process]:
    """One Collector process running ``config``, until ``ready()`` holds (or it failed)."""
    path = folder / f"{name}.yaml"
    path.write_text(config)
    with (folder / f"{name}.log").open("ab") as log:
        child = subprocess.Popen(
            [str(binary), "--config", str(path)], stdout=log, stderr=log, cwd=folder
        )
    try:
        if not wait_until(lambda: child.poll() is None and ready(), f"{name} ready", 60):
            log_text = (folder / f"{name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} did not start:\n{log_text}")
        yield psutil.Process(child.pid)
    finally:
        child.terminate()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()


@contextmanager
def running_peer(binary: Path, folder: Path) -> Iterator[tuple[psutil.Process, str]]:
    """The peer listening on a private OTLP/HTTP port: (its process, its endpoint)."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with _collector(
        binary, folder, "peer", peer_config(port), lambda: not port_is_free(port)
    ) as peer:
        yield peer, f"http://127.0.0.1:{port}"


@dataclass
class KafkaPeer:
    """The running two-Collector peer."""

    front: psutil.Process
    back: psutil.Process
    endpoint: str
    topic: str
    group: str


@contextmanager
def running_kafka_peer(binary: Path, folder: Path, settings: Settings) -> Iterator[KafkaPeer]:
    """The two-Collector peer over Kafka, on a private topic deleted afterwards."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    topic = f"peer-{uuid.uuid4().hex[:8]}-spans"
    ensure_topics(settings, [topic])
    port = free_port()
    group = f"{topic}-sampler"
    front, back = kafka_peer_configs(port, settings.kafka_bootstrap, topic, group)
    try:
        with (
            _collector(binary, folder, "peer-back", back, lambda: True) as back_process,
            _collector(
                binary, folder, "peer-front", front, lambda: not port_is_free(port)
            ) as front_process,
        ):
            # The back Collector joins its group in the background: wait for its partitions.
            time.sleep(KAFKA_PEER_JOIN_SECONDS)
            yield KafkaPeer(front_process, back_process, f"http://127.0.0.1:{port}", topic, group)
    finally:
        delete_topics(settings, [topic])


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
    seconds: float
    spans: int
    refused_spans: int
    cpu: dict[str, float]  # process name -> CPU seconds over the run
    rss: dict[str, int]  # process name -> resident bytes at the end
    drained: bool = True  # the side had read everything it accepted by the end

    def per_spans(self, *names: str) -> float:
        """CPU seconds of ``names`` together per ``PER`` spans sent."""
        if not self.spans:
            return float("nan")
        return sum(self.cpu[name] for name in names) * PER / self.spans

    @property
    def sustained(self) -> bool:
        """Nothing refused, the load generator kept pace, nothing left unread."""
        paced = self.spans >= SUSTAINED_SHARE * self.rate * self.seconds
        return self.refused_spans == 0 and paced and self.drained


def measure(
    processes: dict[str, psutil.Process],
    target: str,
    rate: float,
    seconds: float,
    drained: Callable[[int], bool] | None = None,
) -> Load:
    """Play the estate at ``rate`` for ``seconds`` into ``target``; CPU until decided.

    ``drained(spans accepted)`` tells, after the settle time, whether the side read all it
    accepted (the sides with Kafka between receiver and sampler can fall behind).
    """
    before = {name: cpu_seconds(p) for name, p in processes.items()}
    result = run_loadgen(target, rate=rate, duration=seconds, burst=False, mode="protobuf")
    time.sleep(SETTLE)
    cpu = {name: cpu_seconds(p) - before[name] for name, p in processes.items()}
    rss = {name: p.memory_info().rss for name, p in processes.items()}
    # Refused by the receiver; the load generator's own shortfall is not the receiver's.
    refused = result.failed_spans + result.rejected_spans
    accepted = result.spans_sent - refused
    done = drained(accepted) if drained is not None else True
    return Load(rate, seconds, result.spans_sent, refused, cpu, rss, done)


def idle_cpu_per_minute(processes: dict[str, psutil.Process]) -> dict[str, float]:
    before = {name: cpu_seconds(p) for name, p in processes.items()}
    time.sleep(IDLE_SECONDS)
    return {
        name: (cpu_seconds(p) - before[name]) * 60.0 / IDLE_SECONDS for name, p in processes.items()
    }


def group_lag(settings: Settings, group: str, topic: str) -> int:
    """Messages of ``topic`` not yet committed by consumer ``group``."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        wanted = [TopicPartition(topic, number) for number in partitions]
        committed = consumer.committed(wanted, timeout=10)
        lag = 0
        for position in committed:
            _, high = consumer.get_watermark_offsets(position, timeout=10)
            lag += high - max(position.offset, 0)
        return lag
    finally:
        consumer.close()


class Side:
    """One side of the comparison: its processes, endpoint and how to tell it kept up."""

    def __init__(
        self,
        processes: dict[str, psutil.Process],
        own: tuple[str, ...],
        endpoint: str,
        drained: Callable[[int], bool] | None = None,
    ) -> None:
        self.processes = processes  # measured: its own processes and the broker if any
        self.own = own  # the processes its CPU per span counts (the broker is apart)
        self.endpoint = endpoint
        self.drained = drained

    def run(self, rate: float, seconds: float) -> Load:
        return measure(self.processes, self.endpoint, rate, seconds, self.drained)


def _our_drain_check(metrics_url: str) -> Callable[[int], bool]:
    """Ours kept up when the worker received every span the gateway accepted."""
    baseline = [scrape(metrics_url).get(SPANS_RECEIVED, 0.0)]

    def drained(accepted: int) -> bool:
        received = scrape(metrics_url).get(SPANS_RECEIVED, 0.0)
        kept_up = received - baseline[0] >= accepted
        baseline[0] = received
        return kept_up

    return drained


def highest_sustained(side: Side, ladder: list[float], seconds: float) -> dict:
    """Climb ``ladder`` until a rate is not sustained; the last rate that was."""
    best, tried = None, []
    for rate in ladder:
        load = side.run(rate, seconds)
        tried.append(
            {
                "rate": rate,
                "spans": load.spans,
                "refused_spans": load.refused_spans,
                "drained": load.drained,
                "cpu_per_10k": load.per_spans(*side.own),
                "rss": sum(load.rss[name] for name in side.own),
            }
        )
        if not load.sustained:
            break
        best = rate
    return {"highest_sustained": best, "tried": tried}


def bench_peer(
    base: Settings, folder: Path, rates: list[float], seconds: float, ladder: list[float]
) -> dict:
    """Ours and both peers at each rate, then each side's highest sustained rate."""
    binary = build_peer()
    if binary is None:
        return {"skipped": "no peer binary (see the log above)"}
    broker = kafka_broker()
    apart = {"kafka": broker} if broker is not None else {}
    rows = []
    with (
        running_peer(binary, folder / "peer") as (peer, endpoint),
        running_kafka_peer(binary, folder / "peer-kafka", base) as kafka_peer,
        running_pipeline(
            base, folder / "ours", DECISION_WAIT, OUR_POLICIES, worker_roles="sampler"
        ) as ours,
    ):
        sides = {
            "peer": Side({"peer": peer}, ("peer",), endpoint),
            "peer_kafka": Side(
                {"front": kafka_peer.front, "back": kafka_peer.back, **apart},
                ("front", "back"),
                kafka_peer.endpoint,
                # Its offsets are committed every second: a few messages may show as lag.
                lambda _accepted: (
                    group_lag(base, kafka_peer.group, kafka_peer.topic) <= base.partitions
                ),
            ),
            "ours": Side(
                {"gateway": ours.gateway, "worker": ours.worker, **apart},
                ("gateway", "worker"),
                f"http://127.0.0.1:{ours.settings.gateway_http_port}",
                _our_drain_check(ours.worker_metrics),
            ),
        }
        every = {
            "peer": peer,
            "peer_front": kafka_peer.front,
            "peer_back": kafka_peer.back,
            "gateway": ours.gateway,
            "worker": ours.worker,
            **apart,
        }
        idle = idle_cpu_per_minute(every)
        for rate in rates:
            loads = {name: side.run(rate, seconds) for name, side in sides.items()}
            rows.append(_rate_row(rate, loads, sides, broker is not None))
        sustained = {
            name: highest_sustained(side, ladder, min(seconds, LADDER_SECONDS))
            for name, side in sides.items()
        }
    return {
        "peer": f"{PEER_MODULE}@{PEER_VERSION}",
        "seconds_per_rate": seconds,
        "decision_wait_s": DECISION_WAIT,
        "idle_cpu_s_per_minute": idle,
        "rates": rows,
        "sustained": sustained,
    }


def _rate_row(rate: float, loads: dict[str, Load], sides: dict[str, Side], broker: bool) -> dict:
    peer, kafka_peer, mine = loads["peer"], loads["peer_kafka"], loads["ours"]
    peer_per = peer.per_spans("peer")
    kafka_peer_per = kafka_peer.per_spans(*sides["peer_kafka"].own)
    ours_per = mine.per_spans(*sides["ours"].own)
    return {
        "rate": rate,
        "peer_spans": peer.spans,
        "peer_refused_spans": peer.refused_spans,
        "peer_cpu_per_10k": peer_per,
        "peer_rss": peer.rss["peer"],
        "peer_kafka_spans": kafka_peer.spans,
        "peer_kafka_refused_spans": kafka_peer.refused_spans,
        "peer_kafka_cpu_per_10k": kafka_peer_per,
        "peer_kafka_broker_cpu_per_10k": kafka_peer.per_spans("kafka") if broker else None,
        "peer_kafka_rss": kafka_peer.rss["front"] + kafka_peer.rss["back"],
        "ours_spans": mine.spans,
        "ours_refused_spans": mine.refused_spans,
        "gateway_cpu_per_10k": mine.per_spans("gateway"),
        "worker_cpu_per_10k": mine.per_spans("worker"),
        "kafka_cpu_per_10k": mine.per_spans("kafka") if broker else None,
        "ours_cpu_per_10k": ours_per,
        "ours_rss": mine.rss["gateway"] + mine.rss["worker"],
        "ratio_ours_to_peer": ours_per / peer_per if peer_per else float("nan"),
        "ratio_ours_to_peer_kafka": ours_per / kafka_peer_per if kafka_peer_per else float("nan"),
    }
