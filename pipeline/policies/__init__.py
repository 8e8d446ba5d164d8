"""Tail-sampling policies (OpenTelemetry Collector `tail_sampling` semantics).

One module per policy type (its evaluator, its config model, its ``register`` call), all
imported by ``registry.load_all`` when the package is imported; ``config`` reads the file,
``engine`` decides. What the sampler does with the buffered spans of one trace
(``spans``: the bytes of one ``TracesData``)::

    from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
    from pipeline.policies import PolicyEngine, TraceView, load_policy_file

    engine = PolicyEngine(load_policy_file("topologies/policies-default.yaml"))
    data = TracesData.FromString(spans)
    verdict = engine.evaluate(TraceView(data, trace_id, len(spans)))
    verdict.sampled, verdict.policy      # e.g. (True, "errors"); (False, None)

``engine.view(data, trace_id, len(spans), raw=spans)`` builds the same view; passing
the bytes as ``raw`` spares the view a serialization for its substring pre-checks.
"""

from pipeline.policies import registry

registry.load_all()  # import (register) every policy type before anything reads them

from pipeline.policies.config import (  # noqa: E402
    PolicyConfigError,
    SamplingConfig,
    load_policy_file,
)
from pipeline.policies.decision import Decision  # noqa: E402
from pipeline.policies.engine import EngineDecision, PolicyEngine  # noqa: E402
from pipeline.policies.trace import TraceView  # noqa: E402

__all__ = [
    "Decision",
    "EngineDecision",
    "PolicyConfigError",
    "PolicyEngine",
    "SamplingConfig",
    "TraceView",
    "load_policy_file",
]
