"""Sampling-policy configuration: the OpenTelemetry Collector ``tail_sampling`` shape.

``load_policy_file(path)`` reads either a bare policy file::

    decision_wait: 30s
    policies:
      - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}

or a whole collector configuration, taking ``processors.tail_sampling`` (or
``processors.tail_sampling/<name>``), or a file whose only top-level key is
``tail_sampling``. Policy types, their keys and defaults are the collector's; unknown
keys are errors (the collector silently ignores a section of another type, we don't).
Errors are ``PolicyConfigError`` (``pipeline.config.yaml_file.ConfigError``) naming the file,
line, column, field path and what is allowed, e.g.::

    policies.yaml:14:24: policies[2].latency.threshold_ms: expected an integer, got 'fast'

This module holds the top-level keys only. Each policy type's keys are declared by its
own module and registered in ``pipeline.policies.registry``; the ``policies`` list
accepts every registered type.

Durations take Go's syntax ("30s", "500ms", "1m30s", "1.5h") or a plain number of
SECONDS (the collector would read a bare integer as nanoseconds; nobody means that).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from pipeline.config.models import Duration, StrictModel, describe_value
from pipeline.config.yaml_file import (
    ConfigError,
    child_node,
    compose_yaml,
    format_path,
    node_position,
    read_config_file,
    to_config_error,
)
from pipeline.policies import registry

log = logging.getLogger(__name__)

# The policy loader's errors are the generic config errors (same text, same fields).
PolicyConfigError = ConfigError

registry.load_all()
POLICY_TYPES: tuple[str, ...] = registry.type_names()
PolicyConfig = registry.any_policy()

# Keys the collector accepts that change nothing here; loading a file that sets one logs
# a warning (the sampler's PolicySource reports its own such keys when it applies a file).
NO_EFFECT_KEYS: dict[str, str] = {
    "expected_new_traces_per_sec": (
        "the collector uses it only to pre-size its in-memory batches; spansieve buffers "
        "traces in RocksDB and needs no such hint"
    ),
}


# --------------------------------------------------------------------------- top level


class DecisionCacheCfg(StrictModel):
    sampled_cache_size: int = Field(0, ge=0)
    non_sampled_cache_size: int = Field(0, ge=0)


class SamplingConfig(StrictModel):
    """The ``tail_sampling`` processor's configuration, plus spansieve's own durations."""

    policies: list[PolicyConfig] = Field(min_length=1)
    decision_wait: Duration = Field(
        30.0,
        description="decide a trace once no new span of it has arrived for this long "
        "(measured from its last span)",
    )
    num_traces: int = Field(50000, gt=0)
    expected_new_traces_per_sec: int = Field(
        0,
        ge=0,
        description="accepted for collector configs; no effect in spansieve (the collector "
        "pre-sizes its batches with it); a warning is logged when it is set",
    )
    decision_cache: DecisionCacheCfg = DecisionCacheCfg()
    sample_on_first_match: bool = False
    decision_wait_after_root_received: Duration = 0.0
    maximum_trace_size_bytes: int = Field(0, ge=0, description="0 = no limit")
    drop_pending_traces_on_shutdown: bool = False
    block_on_overflow: bool = False
    max_trace_age: Duration = Field(
        300.0, description="spansieve: decide a trace at the latest this long after its first span"
    )
    decision_cache_ttl: Duration = Field(
        600.0, description="spansieve: keep decisions for late spans this long"
    )

    @model_validator(mode="after")
    def _unique_names(self) -> SamplingConfig:
        registry.no_duplicate_names([p.name for p in self.policies], "policies")
        return self


# --------------------------------------------------------------------------- loading


def _allowed_types(loc: Sequence[str | int]) -> str:
    """The policy types the union at `loc` accepts: that of the innermost sub-policy slot."""
    slots = registry.slot_names()
    slot = next(
        (p for p in reversed(loc) if isinstance(p, str) and p in slots), registry.TOP_LEVEL_SLOT
    )
    return ", ".join(registry.slot_types(slot))


def _union_message(err: dict[str, Any]) -> str | None:
    """The wording of a policy-type (discriminated union) error; None for other errors."""
    kind = err["type"]
    if kind not in ("union_tag_invalid", "union_tag_not_found"):
        return None
    allowed = _allowed_types(err["loc"])
    if kind == "union_tag_not_found":
        return f"policy has no 'type'; allowed types here: {allowed}"
    tag = (err.get("ctx") or {}).get("tag")
    if tag in POLICY_TYPES:
        return f"policy type {tag!r} is not allowed here; allowed types here: {allowed}"
    return f"unknown policy type {tag!r}; allowed types: {allowed}"


def _is_tail_sampling(key: Any) -> bool:
    return key == "tail_sampling" or str(key).startswith("tail_sampling/")


def _select(root: yaml.Node, data: Any, source: str, processor: str | None):
    """(node, data, field-path prefix) of the tail_sampling configuration in the file."""
    if not isinstance(data, dict):
        raise ConfigError(
            source,
            f"expected a mapping at the top (policies: [...] or a collector config), "
            f"got {describe_value(data)}",
            **node_position(root),
        )

    def pick(container_node, container: dict, where: list) -> tuple:
        names = [k for k in container if _is_tail_sampling(k)]
        if processor is not None:
            wanted = (
                processor
                if processor.startswith("tail_sampling")
                else (f"tail_sampling/{processor}")
            )
            if wanted not in container:
                raise ConfigError(
                    source,
                    f"no processor {wanted!r} in {format_path(where) or 'the file'}; found: "
                    f"{', '.join(names) or 'none'}",
                )
            names = [wanted]
        if not names:
            raise ConfigError(
                source,
                f"no tail_sampling processor under {format_path(where)}; found: "
                f"{', '.join(map(str, container)) or 'nothing'}",
                **node_position(container_node),
            )
        if len(names) > 1:
            raise ConfigError(
                source,
                f"several tail_sampling processors ({', '.join(names)}): say which one",
            )
        _, node = child_node(container_node, names[0])
        return node, container[names[0]], [*where, names[0]]

    if "processors" in data and "policies" not in data:
        procs_node = child_node(root, "processors")[1]
        if not isinstance(data["processors"], dict):
            raise ConfigError(
                source,
                "'processors' must be a mapping",
                **node_position(procs_node),
            )
        return pick(procs_node, data["processors"], ["processors"])
    if data and all(_is_tail_sampling(k) for k in data):
        return pick(root, data, [])
    return root, data, []


def load_policy_text(
    text: str, source: str = "<string>", processor: str | None = None
) -> SamplingConfig:
    """Parse policy YAML given as text; see load_policy_file."""
    root, data = compose_yaml(text, source)
    if root is None:
        raise ConfigError(source, "the file is empty; expected 'policies: [...]'")
    node, section, prefix = _select(root, data, source, processor)
    if section is None:
        raise ConfigError(
            source,
            "the tail_sampling section is empty; expected 'policies: [...]'",
            **node_position(node),
            field=format_path(prefix) or None,
        )
    try:
        config = SamplingConfig.model_validate(section)
    except ValidationError as exc:
        raise to_config_error(exc, node, source, prefix, message=_union_message) from None
    for key in keys_without_effect(config):
        key_node, _ = child_node(node, key)
        where = source
        if key_node is not None:
            pos = node_position(key_node)
            where = f"{source}:{pos['line']}:{pos['column']}"
        log.warning(
            "%s: %s: accepted for collector configs, but has no effect in spansieve: %s",
            where,
            format_path([*prefix, key]),
            NO_EFFECT_KEYS[key],
        )
    return config


def keys_without_effect(config: SamplingConfig) -> list[str]:
    """The keys of ``NO_EFFECT_KEYS`` that the configuration sets explicitly."""
    return [key for key in NO_EFFECT_KEYS if key in config.model_fields_set]


def load_policy_file(path: str | Path, processor: str | None = None) -> SamplingConfig:
    """Read a policy file: bare, ``tail_sampling:`` at the top, or a collector config.

    ``processor`` picks one of several ``tail_sampling/<name>`` processors ("name" or the
    full id). Raises PolicyConfigError with file, line, field path and allowed values.
    """
    return load_policy_text(read_config_file(path), str(path), processor)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a bare policy file (schemas/sampling-policy.schema.json)."""
    schema = SamplingConfig.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://spansieve.dev/schemas/sampling-policy.schema.json"
    schema["title"] = "spansieve sampling policies (OpenTelemetry Collector tail_sampling shape)"
    return schema
