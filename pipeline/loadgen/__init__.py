"""Load generator: plays a synthetic microservice estate (topologies/*.yaml) at a paced rate.

``run_loadgen(target, topology, rate, duration, ...)`` is what ``spansieve loadgen`` and
the benchmark call. Two modes:

* ``protobuf``: a pool of OTLP export requests is generated up front and replayed with
  fresh trace ids and timestamps patched into the bytes (>= 100 000 spans/s per core);
* ``sdk``: every trace goes through the OpenTelemetry Python SDK and its OTLP exporter.

Both record the ground truth (``LoadgenResult.traces()``, ``summary()``): which traces
were sent when, how many spans each has, which contain an error.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pipeline.config.package_data import data_path
from pipeline.config.settings import Settings
from pipeline.loadgen.generator import TraceGenerator
from pipeline.loadgen.ledger import Ledger, LoadgenResult, TraceRecord
from pipeline.loadgen.pacing import RateProfile
from pipeline.loadgen.pool import Replay, build_pool
from pipeline.loadgen.progress import LoadProgress
from pipeline.loadgen.sdk import run_sdk
from pipeline.loadgen.sender import Endpoint, replay_paced
from pipeline.loadgen.topology import Burst, Topology, TopologyError, load_topology

__all__ = [
    "Burst",
    "Endpoint",
    "LoadgenResult",
    "Topology",
    "TopologyError",
    "TraceRecord",
    "load_topology",
    "resolve_endpoint",
    "run_loadgen",
]

Mode = Literal["protobuf", "sdk"]
Transport = Literal["http", "grpc"]
# The shipped estate (package data), so commands work from any directory and from a wheel.
DEFAULT_TOPOLOGY: Path = data_path("pipeline.topologies", "estate-30.yaml")


def resolve_endpoint(
    target: Settings | str, transport: Transport = "http", api_key: str | None = None
) -> Endpoint:
    """Where the gateway is: from the settings (host and ports), or a URL / host:port.

    A bare base URL gets OTLP/HTTP's ``/v1/traces``; for gRPC a URL's scheme is dropped.
    Without ``api_key``, the first of the settings' gateway API keys is sent, if any.
    """
    if isinstance(target, Settings):
        host = target.gateway_host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        if transport == "grpc":
            address = f"{host}:{target.gateway_grpc_port}"
        else:
            address = f"http://{host}:{target.gateway_http_port}/v1/traces"
        if api_key is None:
            keys = [k.strip() for k in target.gateway_api_keys.split(",") if k.strip()]
            api_key = keys[0] if keys else None
    else:
        address = target.strip()
        if transport == "grpc":
            address = address.split("://", 1)[-1].rstrip("/")
        else:
            if "://" not in address:
                address = f"http://{address}"
            if not address.rstrip("/").endswith("/v1/traces"):
                address = address.rstrip("/") + "/v1/traces"
    headers = (("x-api-key", api_key),) if api_key else ()
    return Endpoint(transport, address, headers)


def plan_pool(rate: float, peak_rate: float) -> tuple[int, int]:
    """(spans per request, requests in the pool) for a target rate.

    About 20 requests a second at the steady rate, at most 1 000 spans each (the size an
    SDK or collector batch has); the pool holds about a second of the peak rate
    (5 000 to 60 000 spans) so traces repeat their shapes rarely.
    """
    spans_per_request = int(min(1000, max(20, rate / 20)))
    pool_spans = min(60_000, max(5_000, peak_rate))
    return spans_per_request, max(1, math.ceil(pool_spans / spans_per_request))


def run_loadgen(
    target: Settings | str,
    topology: Topology | str | Path = DEFAULT_TOPOLOGY,
    rate: float = 1000.0,
    duration: float = 10.0,
    *,
    seed: int = 1,
    mode: Mode = "protobuf",
    transport: Transport = "http",
    burst: Burst | Literal[False] | None = None,
    concurrency: int = 10,
    api_key: str | None = None,
    progress: bool = False,
    stop: threading.Event | None = None,
    max_retry_seconds: float = 30.0,
    on_start: Callable[[Ledger], None] | None = None,
) -> LoadgenResult:
    """Play ``topology`` at ``rate`` spans/s for ``duration`` s against the gateway.

    ``target`` is Settings (the gateway's host and ports) or an address. ``burst`` None
    uses the topology's burst, False none, a Burst replaces it. The topology's bad
    deploy applies from its ``at`` (pass a topology with ``bad_deploy=None`` to leave it
    out). ``stop`` ends the run early (Ctrl-C does too, in the main thread). Blocks until
    every request was answered or given up on; callable from any thread. ``on_start``
    receives the run's ledger before the first request, for observers in other threads.
    """
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    if not isinstance(topology, Topology):
        topology = load_topology(topology)
    chosen = topology.burst if burst is None else (burst or None)
    profile = RateProfile(rate, chosen)
    endpoint = resolve_endpoint(target, transport, api_key)
    generator = TraceGenerator(topology, seed)
    stop = stop or threading.Event()
    deploy = topology.bad_deploy

    built = time.monotonic()
    replay = None
    if mode == "protobuf":
        peak = rate * (chosen.multiplier if chosen else 1.0)
        spans_per_request, requests = plan_pool(rate, max(rate, peak))
        normal = build_pool(generator, requests, spans_per_request, elapsed=0.0)
        deployed = None
        if deploy is not None and deploy.at < duration:
            deployed = build_pool(generator, requests, spans_per_request, elapsed=deploy.at)
        replay = Replay(normal, deployed, deploy.at if deploy else 0.0)
    elif mode != "sdk":
        raise ValueError(f"unknown mode {mode!r}; expected protobuf or sdk")
    build_seconds = time.monotonic() - built

    started_at = time.time()
    ledger = Ledger(started_at)
    if on_start is not None:
        on_start(ledger)
    cpu_before = os.times()
    description = f"{topology.name} {mode}/{transport}"
    with LoadProgress(ledger, duration, description, progress) as bar, _stop_on_sigint(stop):
        if replay is not None:
            elapsed, shortfall = asyncio.run(
                replay_paced(
                    endpoint,
                    replay,
                    profile,
                    duration,
                    ledger,
                    bar,
                    concurrency=concurrency,
                    max_retry_seconds=max_retry_seconds,
                    stop=stop,
                )
            )
        else:
            elapsed, shortfall = run_sdk(
                endpoint,
                generator,
                profile,
                duration,
                ledger,
                bar,
                concurrency=concurrency,
                max_retry_seconds=max_retry_seconds,
                stop=stop,
            )
    cpu_after = os.times()
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    return LoadgenResult(
        topology=topology.name,
        mode=mode,
        transport=transport,
        endpoint=endpoint.address,
        seed=seed,
        target_rate=rate,
        duration=duration,
        burst=chosen.model_dump() if chosen else None,
        bad_deploy=deploy.model_dump() if deploy else None,
        started_at=started_at,
        elapsed=max(elapsed, time.time() - started_at),  # pacing plus the final answers
        build_seconds=build_seconds,
        cpu_seconds=cpu,
        shortfall_spans=shortfall,
        ledger=ledger,
    )


class _stop_on_sigint:
    """While a run lasts, Ctrl-C in the main thread ends it cleanly (with its summary)."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._previous = None

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, lambda *_: self._stop.set())

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
