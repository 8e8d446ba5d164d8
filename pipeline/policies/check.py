"""``check_policy_file``: validate a policy file and describe it in a few lines."""

from __future__ import annotations

from pathlib import Path

from pipeline.policies.config import SamplingConfig, load_policy_file
from pipeline.policies.engine import PolicyEngine
from pipeline.policies.registry import PolicyModel


def _seconds(value: float) -> str:
    if value == int(value):
        value = int(value)
        if value and value % 3600 == 0:
            return f"{value // 3600}h"
        if value and value % 60 == 0:
            return f"{value // 60}m"
        return f"{value}s"
    return f"{value * 1000:g}ms" if value < 1 else f"{value:g}s"


def _describe(policy: PolicyModel, indent: str = "  ") -> list[str]:
    lines = [f"{indent}- {policy.name} ({policy.type})"]  # type: ignore[attr-defined]
    for sub in policy.sub_policies():
        lines.extend(_describe(sub, indent + "    "))
    return lines


def summarize(config: SamplingConfig, source: str = "") -> str:
    engine = PolicyEngine(config)  # builds every evaluator: catches what the model cannot
    n = len(config.policies)
    head = f"{source}: " if source else ""
    lines = [
        f"{head}{n} polic{'y' if n == 1 else 'ies'}, decision_wait {_seconds(config.decision_wait)}"
        f", num_traces {config.num_traces}"
        + (", sample_on_first_match" if config.sample_on_first_match else ""),
    ]
    for policy in config.policies:
        lines.extend(_describe(policy))
    if engine.drop_count:
        lines.append(f"  (drop policies are evaluated first: {engine.drop_count})")
    return "\n".join(lines)


def check_policy_file(path: str | Path) -> str:
    """A short human summary of a valid policy file; raises PolicyConfigError otherwise."""
    return summarize(load_policy_file(path), str(path))
