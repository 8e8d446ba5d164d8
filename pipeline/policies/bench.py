"""Cost of the policy engine per trace: ``python -m pipeline.policies.bench [POLICY_FILE]``.

Builds synthetic 10-span traces (one resource with 5 attributes, 8 attributes per span,
about 3.5 KB serialized, none an error, none slow, none a health check: the common
"dropped" case), then times ``engine.evaluate`` on a fresh view of each trace four ways:

* ``engine.view(data, id, size, raw=bytes)``: the serialized bytes passed in, so the
  substring pre-checks need no serialization (for a caller that holds the bytes);
* ``engine.view(data, id)``: no bytes, no size; the view serializes once for its
  pre-checks and computes the size;
* parse + evaluate with the bytes passed in as ``raw``;
* what the sampler does (``pipeline.sampler.core``): parse the buffered ``TracesData``
  bytes and evaluate ``TraceView(data, trace_id, len(bytes))``, which passes the size but
  not the bytes, so the view serializes the parsed spans once for its pre-checks.

The default policy file is ``policies-default.yaml`` of the ``pipeline.topologies``
package data (the repository's ``topologies/``).
"""

from __future__ import annotations

import random
import sys
import time
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from pipeline.policies.config import SamplingConfig, load_policy_file, load_policy_text
from pipeline.policies.engine import PolicyEngine
from pipeline.policies.trace import TraceView

DEFAULT_FILE: Traversable = files("pipeline.topologies").joinpath("policies-default.yaml")


def load(policy_file: str | Path | Traversable) -> SamplingConfig:
    """A policy file given as a path, or as package data (any ``Traversable``)."""
    if isinstance(policy_file, str | Path):
        return load_policy_file(policy_file)
    return load_policy_text(policy_file.read_text(encoding="utf-8"), str(policy_file))


def _kv(key: str, value: str | int) -> KeyValue:
    v = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    return KeyValue(key=key, value=v)


def synthetic_trace(rng: random.Random, spans: int = 10) -> tuple[bytes, TracesData]:
    trace_id = rng.randbytes(16)
    data = TracesData()
    rs = data.resource_spans.add()
    rs.resource.attributes.extend(
        _kv(k, v)
        for k, v in [
            ("service.name", "checkout"),
            ("service.version", "1.2.3"),
            ("host.name", "node-7"),
            ("k8s.pod.name", "checkout-7d9f"),
            ("telemetry.sdk.language", "python"),
        ]
    )
    ss = rs.scope_spans.add()
    ss.scope.name = "opentelemetry.instrumentation.flask"
    t0 = 1_700_000_000_000_000_000
    for i in range(spans):
        s = ss.spans.add(
            trace_id=trace_id,
            span_id=rng.randbytes(8),
            name=f"GET /api/items/{i}",
            kind=Span.SPAN_KIND_SERVER if i == 0 else Span.SPAN_KIND_CLIENT,
            start_time_unix_nano=t0 + i * 1_000_000,
            end_time_unix_nano=t0 + i * 1_000_000 + 20_000_000,
        )
        s.attributes.extend(
            _kv(k, v)
            for k, v in [
                ("http.request.method", "GET"),
                ("http.route", "/api/items/{id}"),
                ("url.path", f"/api/items/{i}"),
                ("http.response.status_code", 200),
                ("server.address", "checkout"),
                ("network.protocol.version", "1.1"),
                ("user_agent.original", "Mozilla/5.0"),
                ("client.address", "10.0.0.1"),
            ]
        )
    return trace_id, data


def measure(
    policy_file: str | Path | Traversable = DEFAULT_FILE, traces: int = 2000, rounds: int = 5
) -> dict:
    rng = random.Random(1)
    items = []
    for _ in range(traces):
        tid, data = synthetic_trace(rng)
        raw = data.SerializeToString()
        items.append((tid, data, raw))
    engine = PolicyEngine(load(policy_file))
    out: dict[str, float] = {}

    def run(label: str, body) -> None:
        best = float("inf")
        for _ in range(rounds):
            t = time.perf_counter()
            body()
            best = min(best, time.perf_counter() - t)
        out[label] = best / traces * 1e6

    def with_raw() -> None:
        for tid, data, raw in items:
            engine.evaluate(engine.view(data, tid, len(raw), raw=raw))

    def without_raw() -> None:
        for tid, data, _ in items:
            engine.evaluate(engine.view(data, tid))

    def parse_and_evaluate() -> None:
        for tid, _, raw in items:
            engine.evaluate(engine.view(TracesData.FromString(raw), tid, len(raw), raw=raw))

    def as_the_sampler() -> None:
        for tid, _, raw in items:
            engine.evaluate(TraceView(TracesData.FromString(raw), tid, len(raw)))

    run("evaluate, raw bytes given (us/trace)", with_raw)
    run("evaluate, view serializes (us/trace)", without_raw)
    run("parse + evaluate (us/trace)", parse_and_evaluate)
    run("parse + evaluate as the sampler (us/trace)", as_the_sampler)
    out["kept"] = sum(engine.evaluate(engine.view(d, t, raw=r)).sampled for t, d, r in items)
    out["bytes/trace"] = sum(len(r) for _, _, r in items) / traces
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    result = measure(args[0] if args else DEFAULT_FILE)
    for key, value in result.items():
        print(f"{key:44s} {value:10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
