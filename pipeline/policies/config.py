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

Durations take Go's syntax ("30s", "500ms", "1m30s", "1.5h") or a plain number of
SECONDS (the collector would read a bare integer as nanoseconds; nobody means that).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from pipeline.config.yaml_file import (
    ConfigError,
    Duration,
    NonEmptyStr,
    StrictModel,
    child_node,
    compose_yaml,
    custom_error,
    describe_value,
    format_path,
    node_position,
    read_config_file,
    to_config_error,
)
from pipeline.config.yaml_file import parse_duration as parse_duration  # re-exported
from pipeline.policies import ottl

# The policy loader's errors are the generic config errors (same text, same fields).
PolicyConfigError = ConfigError

# --------------------------------------------------------------------------- sections


class LatencyCfg(StrictModel):
    """Trace duration = latest span end - earliest span start."""

    threshold_ms: int = Field(0, ge=0, description="lower bound (ms); inclusive without upper")
    upper_threshold_ms: int = Field(0, ge=0, description="upper bound (ms); 0 = none")

    @model_validator(mode="after")
    def _bounds(self) -> LatencyCfg:
        if self.upper_threshold_ms and self.upper_threshold_ms <= self.threshold_ms:
            raise custom_error(
                "upper_threshold_ms ({upper}) must be greater than threshold_ms ({lower}), "
                "or 0 for no upper bound",
                ("upper_threshold_ms",),
                upper=self.upper_threshold_ms,
                lower=self.threshold_ms,
            )
        return self


class NumericAttributeCfg(StrictModel):
    key: NonEmptyStr
    min_value: int = Field(0, description="0 means no lower bound (as the collector)")
    max_value: int = Field(0, description="0 means no upper bound (as the collector)")
    invert_match: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> NumericAttributeCfg:
        if self.min_value == 0 and self.max_value == 0:
            raise custom_error(
                "set min_value or max_value (a 0 means 'no bound', as the collector)"
            )
        if self.min_value and self.max_value and self.min_value > self.max_value:
            raise custom_error(
                "min_value ({lo}) is greater than max_value ({hi})",
                ("min_value",),
                lo=self.min_value,
                hi=self.max_value,
            )
        return self


class ProbabilisticCfg(StrictModel):
    sampling_percentage: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="0-100; >= 100 samples all"
    )
    hash_salt: str = Field("", description='empty = the collector default "default-hash-seed"')


StatusCodeName = Literal["OK", "ERROR", "UNSET"]


class StatusCodeCfg(StrictModel):
    status_codes: list[StatusCodeName] = Field(min_length=1)


class StringAttributeCfg(StrictModel):
    key: NonEmptyStr
    enabled_regex_matching: bool = False
    values: list[str] = Field(min_length=1)
    cache_max_size: int = Field(0, ge=0, description="regex result cache; 0 = 128")
    invert_match: bool = False

    @field_validator("values")
    @classmethod
    def _regexes_compile(cls, values: list[str], info) -> list[str]:
        if info.data.get("enabled_regex_matching"):
            for i, pattern in enumerate(values):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise custom_error(
                        "invalid regular expression {pattern}: {error}",
                        (i,),
                        pattern=repr(pattern),
                        error=str(exc),
                    ) from None
        return values


class BooleanAttributeCfg(StrictModel):
    key: NonEmptyStr
    value: bool = False
    invert_match: bool = False


class SpanCountCfg(StrictModel):
    min_spans: int = Field(0, ge=0)
    max_spans: int = Field(0, ge=0, description="0 = no upper bound")

    @model_validator(mode="after")
    def _bounds(self) -> SpanCountCfg:
        if self.max_spans and self.max_spans < self.min_spans:
            raise custom_error(
                "max_spans ({hi}) is less than min_spans ({lo}); use 0 for no upper bound",
                ("max_spans",),
                hi=self.max_spans,
                lo=self.min_spans,
            )
        return self


class TraceStateCfg(StrictModel):
    key: NonEmptyStr
    values: list[str] = Field(min_length=1)


class RateLimitingCfg(StrictModel):
    spans_per_second: int = Field(ge=0)
    burst_capacity: int = Field(0, ge=0, description="0 = 2 x spans_per_second")


class BytesLimitingCfg(StrictModel):
    bytes_per_second: int = Field(ge=0)
    burst_capacity: int = Field(0, ge=0, description="0 = 2 x bytes_per_second")


class OTTLConditionCfg(StrictModel):
    error_mode: Literal["propagate", "ignore", "silent"] = "propagate"
    span: list[str] = Field(default_factory=list)
    spanevent: list[str] = Field(default_factory=list)

    @field_validator("span", "spanevent")
    @classmethod
    def _conditions_parse(cls, conditions: list[str], info) -> list[str]:
        for i, text in enumerate(conditions):
            try:
                ottl.compile_condition(text, info.field_name)
            except ottl.OTTLError as exc:
                raise custom_error("{error}", (i,), error=str(exc)) from None
        return conditions

    @model_validator(mode="after")
    def _some(self) -> OTTLConditionCfg:
        if not self.span and not self.spanevent:
            raise custom_error("give at least one condition in 'span' or 'spanevent'")
        return self


# --------------------------------------------------------------------------- policies


class _PolicyBase(StrictModel):
    name: NonEmptyStr

    @classmethod
    def unknown_key_owner(cls, data: dict[Any, Any]) -> str:
        kind = data.get("type")
        return f"a policy of type {kind!r}" if isinstance(kind, str) else "a policy"


class AlwaysSamplePolicy(_PolicyBase):
    type: Literal["always_sample"]


class TraceFlagsPolicy(_PolicyBase):
    type: Literal["trace_flags"]


class LatencyPolicy(_PolicyBase):
    type: Literal["latency"]
    latency: LatencyCfg = LatencyCfg()


class NumericAttributePolicy(_PolicyBase):
    type: Literal["numeric_attribute"]
    numeric_attribute: NumericAttributeCfg


class ProbabilisticPolicy(_PolicyBase):
    type: Literal["probabilistic"]
    probabilistic: ProbabilisticCfg = ProbabilisticCfg()


class StatusCodePolicy(_PolicyBase):
    type: Literal["status_code"]
    status_code: StatusCodeCfg


class StringAttributePolicy(_PolicyBase):
    type: Literal["string_attribute"]
    string_attribute: StringAttributeCfg


class BooleanAttributePolicy(_PolicyBase):
    type: Literal["boolean_attribute"]
    boolean_attribute: BooleanAttributeCfg


class SpanCountPolicy(_PolicyBase):
    type: Literal["span_count"]
    span_count: SpanCountCfg = SpanCountCfg()


class TraceStatePolicy(_PolicyBase):
    type: Literal["trace_state"]
    trace_state: TraceStateCfg


class RateLimitingPolicy(_PolicyBase):
    type: Literal["rate_limiting"]
    rate_limiting: RateLimitingCfg


class BytesLimitingPolicy(_PolicyBase):
    type: Literal["bytes_limiting"]
    bytes_limiting: BytesLimitingCfg


class OTTLConditionPolicy(_PolicyBase):
    type: Literal["ottl_condition"]
    ottl_condition: OTTLConditionCfg


_SHARED = (
    AlwaysSamplePolicy,
    LatencyPolicy,
    NumericAttributePolicy,
    ProbabilisticPolicy,
    StatusCodePolicy,
    StringAttributePolicy,
    BooleanAttributePolicy,
    SpanCountPolicy,
    TraceStatePolicy,
    TraceFlagsPolicy,
    RateLimitingPolicy,
    BytesLimitingPolicy,
    OTTLConditionPolicy,
)
SharedPolicy = Annotated[Union[_SHARED], Field(discriminator="type")]  # noqa: UP007


class AndCfg(StrictModel):
    and_sub_policy: list[SharedPolicy] = Field(min_length=1)


class AndPolicy(_PolicyBase):
    type: Literal["and"]
    and_: AndCfg = Field(alias="and")


class NotCfg(StrictModel):
    not_sub_policy: SharedPolicy


class NotPolicy(_PolicyBase):
    type: Literal["not"]
    not_: NotCfg = Field(alias="not")


class DropCfg(StrictModel):
    drop_sub_policy: list[SharedPolicy] = Field(min_length=1)


class DropPolicy(_PolicyBase):
    type: Literal["drop"]
    drop: DropCfg


CompositeSubPolicy = Annotated[Union[(*_SHARED, AndPolicy)], Field(discriminator="type")]


class RateAllocationCfg(StrictModel):
    policy: NonEmptyStr
    percent: int = Field(ge=0, le=100, description="0 = equal share")


class CompositeCfg(StrictModel):
    max_total_spans_per_second: int = Field(ge=0)
    policy_order: list[NonEmptyStr] = Field(
        default_factory=list,
        description="accepted and checked, but (as in the collector) sub-policies run in "
        "composite_sub_policy order",
    )
    composite_sub_policy: list[CompositeSubPolicy] = Field(min_length=1)
    rate_allocation: list[RateAllocationCfg] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names(self) -> CompositeCfg:
        names = [p.name for p in self.composite_sub_policy]
        _no_duplicates(names, "composite_sub_policy")
        known = ", ".join(names)
        for i, name in enumerate(self.policy_order):
            if name not in names:
                raise custom_error(
                    "policy_order names {name}, which is not a composite_sub_policy "
                    "(known: {known})",
                    ("policy_order", i),
                    name=repr(name),
                    known=known,
                )
        seen: set[str] = set()
        for i, alloc in enumerate(self.rate_allocation):
            if alloc.policy not in names:
                raise custom_error(
                    "rate_allocation names {name}, which is not a composite_sub_policy "
                    "(known: {known})",
                    ("rate_allocation", i, "policy"),
                    name=repr(alloc.policy),
                    known=known,
                )
            if alloc.policy in seen:
                raise custom_error(
                    "{name} is allocated twice",
                    ("rate_allocation", i, "policy"),
                    name=repr(alloc.policy),
                )
            seen.add(alloc.policy)
        return self


class CompositePolicy(_PolicyBase):
    type: Literal["composite"]
    composite: CompositeCfg


Policy = Annotated[
    Union[(*_SHARED, AndPolicy, NotPolicy, DropPolicy, CompositePolicy)],
    Field(discriminator="type"),
]

POLICY_TYPES: tuple[str, ...] = tuple(
    m.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for m in (*_SHARED, AndPolicy, NotPolicy, DropPolicy, CompositePolicy)
)


def _no_duplicates(names: Sequence[str], where: str) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise custom_error(
                "duplicate policy name {name} (names must be unique)",
                (where, i, "name"),
                name=repr(name),
            )
        seen.add(name)


# --------------------------------------------------------------------------- top level


class DecisionCacheCfg(StrictModel):
    sampled_cache_size: int = Field(0, ge=0)
    non_sampled_cache_size: int = Field(0, ge=0)


class SamplingConfig(StrictModel):
    """The ``tail_sampling`` processor's configuration, plus spansieve's own durations."""

    policies: list[Policy] = Field(min_length=1)
    decision_wait: Duration = Field(30.0, description="wait after a trace's first span")
    num_traces: int = Field(50000, gt=0)
    expected_new_traces_per_sec: int = Field(0, ge=0)
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
        _no_duplicates([p.name for p in self.policies], "policies")
        return self


# --------------------------------------------------------------------------- loading


def _allowed_types(loc: Sequence[str | int]) -> str:
    """The policy types a union at `loc` accepts (for errors that do not list them)."""
    names = [p for p in loc if isinstance(p, str)]
    last = next((p for p in reversed(names) if p.endswith("_sub_policy") or p == "policies"), "")
    shared = [m.model_fields["type"].annotation.__args__[0] for m in _SHARED]
    if last in ("and_sub_policy", "drop_sub_policy", "not_sub_policy"):
        return ", ".join(shared)
    if last == "composite_sub_policy":
        return ", ".join([*shared, "and"])
    return ", ".join(POLICY_TYPES)


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
        return SamplingConfig.model_validate(section)
    except ValidationError as exc:
        raise to_config_error(exc, node, source, prefix, message=_union_message) from None


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
