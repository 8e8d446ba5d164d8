"""Cost of the policy engine per trace: ``python -m pipeline.policies.bench [POLICY_FILE]``.

Builds synthetic 10-span traces (one resource with 5 attributes, 8 attributes per span,
about 3.5 KB serialized, none an error, none slow, none a health check: the common
"dropped" case), then times ``engine.evaluate(engine.view(...))`` three ways: with the
serialized bytes passed in (what the sampler does), without them (the view serializes
once for its substring pre-checks), and including the protobuf parse.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from pipeline.policies.config import load_policy_file
from pipeline.policies.engine import PolicyEngine

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "topologies" / "policies-default.yaml"


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


def measure(policy_file: str | Path = DEFAULT_FILE, traces: int = 2000, rounds: int = 5) -> dict:
    rng = random.Random(1)
    items = []
    for _ in range(traces):
        tid, data = synthetic_trace(rng)
        raw = data.SerializeToString()
        items.append((tid, data, raw))
    engine = PolicyEngine(load_policy_file(policy_file))
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

    run("evaluate, raw bytes given (us/trace)", with_raw)
    run("evaluate, view serializes (us/trace)", without_raw)
    run("parse + evaluate (us/trace)", parse_and_evaluate)
    out["kept"] = sum(engine.evaluate(engine.view(d, t, raw=r)).sampled for t, d, r in items)
    out["bytes/trace"] = sum(len(r) for _, _, r in items) / traces
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    result = measure(args[0] if args else DEFAULT_FILE)
    for key, value in result.items():
        print(f"{key:40s} {value:10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
