"""Tail-sampling policies (OpenTelemetry Collector `tail_sampling` semantics).

from pipeline.policies import PolicyEngine, load_policy_file
engine = PolicyEngine(load_policy_file("topologies/policies-default.yaml"))
decision = engine.evaluate(engine.view(traces_data, trace_id, raw=serialized))
"""

from pipeline.policies.config import PolicyConfigError, SamplingConfig, load_policy_file
from pipeline.policies.decision import Decision
from pipeline.policies.engine import EngineDecision, PolicyEngine
from pipeline.policies.trace import TraceView

__all__ = [
    "Decision",
    "EngineDecision",
    "PolicyConfigError",
    "PolicyEngine",
    "SamplingConfig",
    "TraceView",
    "load_policy_file",
]
