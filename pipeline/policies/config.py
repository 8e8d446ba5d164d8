"""Sampling-policy configuration: the OpenTelemetry Collector ``tail_sampling`` shape.

``load_policy_file(path)`` reads either a bare policy file::

    decision_wait: 30s
    policies:
      - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}

or a whole collector configuration, taking ``processors.tail_sampling`` (or
``processors.tail_sampling/<name>``), or a file whose only top-level key is
``tail_sampling``. Policy types, their keys and defaults are the collector's; unknown
keys are errors (the collector silently ignores a section of another type, we don't).
Errors are ``PolicyConfigError`` naming the file, line, column, field path and what is
allowed, e.g.::

    policies.yaml:14:24: policies[2].latency.threshold_ms: expected an integer, got 'fast'

Durations take Go's syntax ("30s", "500ms", "1m30s", "1.5h") or a plain number of
SECONDS (the collector would read a bare integer as nanoseconds; nobody means that).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pipeline.policies import ottl

# --------------------------------------------------------------------------- errors


class PolicyConfigError(ValueError):
    """A policy file that cannot be used; ``str()`` is "file:line:col: field: message"."""

    def __init__(
        self,
        source: str,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
        more: int = 0,
    ) -> None:
        self.source = source
        self.line = line
        self.column = column
        self.field = field
        self.message = message
        self.more = more
        where = source if line is None else f"{source}:{line}:{column}"
        text = f"{where}: {field}: {message}" if field else f"{where}: {message}"
        if more:
            text += f" (and {more} more error{'s' if more > 1 else ''})"
        super().__init__(text)


# --------------------------------------------------------------------------- durations

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_DURATION_HELP = 'a Go duration like "30s", "500ms", "1m30s" or a number of seconds'


def parse_duration(value: Any) -> float:
    """Seconds from a Go duration string or a plain (non-negative) number of seconds."""
    if isinstance(value, bool):
        raise PydanticCustomError(
            "duration", "expected {help}, got {got}", {"help": _DURATION_HELP, "got": repr(value)}
        )
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        seconds = 0.0
        if text in ("0", "+0"):
            text = ""
        elif not text:
            raise PydanticCustomError(
                "duration", "expected {help}, got an empty string", {"help": _DURATION_HELP}
            )
        pos = 1 if text.startswith("+") else 0
        while pos < len(text):
            m = _DURATION_PART.match(text, pos)
            if m is None:
                raise PydanticCustomError(
                    "duration",
                    "invalid duration {got}: expected {help} (units: ns, us, ms, s, m, h)",
                    {"got": repr(value), "help": _DURATION_HELP},
                )
            seconds += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
            pos = m.end()
    else:
        raise PydanticCustomError(
            "duration", "expected {help}, got {got}", {"help": _DURATION_HELP, "got": repr(value)}
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise PydanticCustomError(
            "duration", "duration must be a finite value >= 0, got {got}", {"got": repr(value)}
        )
    return seconds


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": r"^(0|\+?((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$",
                },
                {"type": "number", "minimum": 0},
            ],
            "description": "Go duration string or number of seconds",
        }
    ),
]

# --------------------------------------------------------------------------- model base

NonEmptyStr = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)

    @model_validator(mode="before")
    @classmethod
    def _only_known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = [f.alias or name for name, f in cls.model_fields.items()]
            for key in data:
                if key not in allowed:
                    what = "policy" if "type" in allowed and "name" in allowed else "section"
                    extra = ""
                    if what == "policy" and isinstance(data.get("type"), str):
                        extra = f" of type {data['type']!r}"
                    raise PydanticCustomError(
                        "unknown_key",
                        "unknown key {key}{extra}; allowed keys: {allowed}",
                        {
                            "key": repr(key),
                            "extra": f" in a {what}{extra}",
                            "allowed": ", ".join(allowed),
                            "_subloc": (str(key),),
                            "_at_key": True,
                        },
                    )
        elif data is not None and not isinstance(data, BaseModel):
            raise PydanticCustomError(
                "mapping_expected",
                "expected a mapping of keys ({allowed}), got {got}",
                {
                    "allowed": ", ".join(f.alias or n for n, f in cls.model_fields.items()),
                    "got": _describe(data),
                },
            )
        return data


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value)


def _custom(message: str, subloc: tuple = (), **ctx: Any) -> PydanticCustomError:
    return PydanticCustomError("policy_config", message, {**ctx, "_subloc": subloc})


# --------------------------------------------------------------------------- sections


class LatencyCfg(_Model):
    """Trace duration = latest span end - earliest span start."""

    threshold_ms: int = Field(0, ge=0, description="lower bound (ms); inclusive without upper")
    upper_threshold_ms: int = Field(0, ge=0, description="upper bound (ms); 0 = none")

    @model_validator(mode="after")
    def _bounds(self) -> LatencyCfg:
        if self.upper_threshold_ms and self.upper_threshold_ms <= self.threshold_ms:
            raise _custom(
                "upper_threshold_ms ({upper}) must be greater than threshold_ms ({lower}), "
                "or 0 for no upper bound",
                ("upper_threshold_ms",),
                upper=self.upper_threshold_ms,
                lower=self.threshold_ms,
            )
        return self


class NumericAttributeCfg(_Model):
    key: NonEmptyStr
    min_value: int = Field(0, description="0 means no lower bound (as the collector)")
    max_value: int = Field(0, description="0 means no upper bound (as the collector)")
    invert_match: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> NumericAttributeCfg:
        if self.min_value == 0 and self.max_value == 0:
            raise _custom("set min_value or max_value (a 0 means 'no bound', as the collector)")
        if self.min_value and self.max_value and self.min_value > self.max_value:
            raise _custom(
                "min_value ({lo}) is greater than max_value ({hi})",
                ("min_value",),
                lo=self.min_value,
                hi=self.max_value,
            )
        return self


class ProbabilisticCfg(_Model):
    sampling_percentage: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="0-100; >= 100 samples all"
    )
    hash_salt: str = Field("", description='empty = the collector default "default-hash-seed"')


StatusCodeName = Literal["OK", "ERROR", "UNSET"]


class StatusCodeCfg(_Model):
    status_codes: list[StatusCodeName] = Field(min_length=1)


class StringAttributeCfg(_Model):
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
                    raise _custom(
                        "invalid regular expression {pattern}: {error}",
                        (i,),
                        pattern=repr(pattern),
                        error=str(exc),
                    ) from None
        return values


class BooleanAttributeCfg(_Model):
    key: NonEmptyStr
    value: bool = False
    invert_match: bool = False


class SpanCountCfg(_Model):
    min_spans: int = Field(0, ge=0)
    max_spans: int = Field(0, ge=0, description="0 = no upper bound")

    @model_validator(mode="after")
    def _bounds(self) -> SpanCountCfg:
        if self.max_spans and self.max_spans < self.min_spans:
            raise _custom(
                "max_spans ({hi}) is less than min_spans ({lo}); use 0 for no upper bound",
                ("max_spans",),
                hi=self.max_spans,
                lo=self.min_spans,
            )
        return self


class TraceStateCfg(_Model):
    key: NonEmptyStr
    values: list[str] = Field(min_length=1)


class RateLimitingCfg(_Model):
    spans_per_second: int = Field(ge=0)
    burst_capacity: int = Field(0, ge=0, description="0 = 2 x spans_per_second")


class BytesLimitingCfg(_Model):
    bytes_per_second: int = Field(ge=0)
    burst_capacity: int = Field(0, ge=0, description="0 = 2 x bytes_per_second")


class OTTLConditionCfg(_Model):
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
                raise _custom("{error}", (i,), error=str(exc)) from None
        return conditions

    @model_validator(mode="after")
    def _some(self) -> OTTLConditionCfg:
        if not self.span and not self.spanevent:
            raise _custom("give at least one condition in 'span' or 'spanevent'")
        return self


# --------------------------------------------------------------------------- policies


class _PolicyBase(_Model):
    name: NonEmptyStr


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


class AndCfg(_Model):
    and_sub_policy: list[SharedPolicy] = Field(min_length=1)


class AndPolicy(_PolicyBase):
    type: Literal["and"]
    and_: AndCfg = Field(alias="and")


class NotCfg(_Model):
    not_sub_policy: SharedPolicy


class NotPolicy(_PolicyBase):
    type: Literal["not"]
    not_: NotCfg = Field(alias="not")


class DropCfg(_Model):
    drop_sub_policy: list[SharedPolicy] = Field(min_length=1)


class DropPolicy(_PolicyBase):
    type: Literal["drop"]
    drop: DropCfg


CompositeSubPolicy = Annotated[Union[(*_SHARED, AndPolicy)], Field(discriminator="type")]


class RateAllocationCfg(_Model):
    policy: NonEmptyStr
    percent: int = Field(ge=0, le=100, description="0 = equal share")


class CompositeCfg(_Model):
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
                raise _custom(
                    "policy_order names {name}, which is not a composite_sub_policy "
                    "(known: {known})",
                    ("policy_order", i),
                    name=repr(name),
                    known=known,
                )
        seen: set[str] = set()
        for i, alloc in enumerate(self.rate_allocation):
            if alloc.policy not in names:
                raise _custom(
                    "rate_allocation names {name}, which is not a composite_sub_policy "
                    "(known: {known})",
                    ("rate_allocation", i, "policy"),
                    name=repr(alloc.policy),
                    known=known,
                )
            if alloc.policy in seen:
                raise _custom(
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
            raise _custom(
                "duplicate policy name {name} (names must be unique)",
                (where, i, "name"),
                name=repr(name),
            )
        seen.add(name)


# --------------------------------------------------------------------------- top level


class DecisionCacheCfg(_Model):
    sampled_cache_size: int = Field(0, ge=0)
    non_sampled_cache_size: int = Field(0, ge=0)


class SamplingConfig(_Model):
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


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML would keep the last silently)."""


def _check_duplicate_keys(node: yaml.Node, source: str) -> None:
    stack = [node]
    seen_nodes: set[int] = set()
    while stack:
        n = stack.pop()
        if id(n) in seen_nodes:
            continue
        seen_nodes.add(id(n))
        if isinstance(n, yaml.MappingNode):
            keys: dict[str, yaml.Node] = {}
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    if k.value in keys:
                        raise PolicyConfigError(
                            source,
                            f"duplicate key {k.value!r} (first at line "
                            f"{keys[k.value].start_mark.line + 1})",
                            line=k.start_mark.line + 1,
                            column=k.start_mark.column + 1,
                        )
                    keys[k.value] = k
                stack.append(v)
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)


def _compose(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_duplicate_keys(node, source)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or str(exc)
        raise PolicyConfigError(
            source,
            f"invalid YAML: {problem}",
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyConfigError(source, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return node, data


def _child(node: yaml.Node, key: str | int) -> tuple[yaml.Node | None, yaml.Node | None]:
    """(key node, value node) of `key` in a mapping, or (None, item) in a sequence."""
    if isinstance(node, yaml.MappingNode) and isinstance(key, str):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return k, v
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        return None, node.value[key]
    return None, None


def _mapping_value(node: yaml.Node, key: str) -> str | None:
    _, v = _child(node, key)
    return v.value if isinstance(v, yaml.ScalarNode) else None


def _format_path(parts: Sequence[str | int]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + p
    return out


def _locate(root: yaml.Node, loc: Sequence[str | int], at_key: bool) -> tuple[yaml.Node, list]:
    """The deepest YAML node along a pydantic error location, and the display path."""
    node = root
    shown: list[str | int] = []
    rest = list(loc)
    tag_skipped_at: int | None = None
    while rest:
        part = rest[0]
        # a discriminated union puts the tag ("latency") right after the item: skip it once
        if (
            isinstance(part, str)
            and tag_skipped_at != id(node)
            and isinstance(node, yaml.MappingNode)
            and _mapping_value(node, "type") == part
        ):
            tag_skipped_at = id(node)
            rest.pop(0)
            continue
        key_node, value_node = _child(node, part)
        if value_node is None:
            shown.extend(rest)
            return node, shown
        rest.pop(0)
        shown.append(part)
        if not rest and at_key and key_node is not None:
            return key_node, shown
        node = value_node
    return node, shown


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


_TYPE_NAMES = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
}


def _message(err: dict) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = err.get("input")
    if kind == "missing":
        return f"required key {err['loc'][-1]!r} is missing"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        allowed = _allowed_types(err["loc"])
        if kind == "union_tag_not_found":
            return f"policy has no 'type'; allowed types here: {allowed}"
        tag = ctx.get("tag")
        if tag in POLICY_TYPES:
            return f"policy type {tag!r} is not allowed here; allowed types here: {allowed}"
        return f"unknown policy type {tag!r}; allowed types: {allowed}"
    if kind in _TYPE_NAMES:
        return f"expected {_TYPE_NAMES[kind]}, got {_describe(got)}"
    if kind == "model_type":
        return f"expected a mapping, got {_describe(got)}"
    if kind == "literal_error":
        return f"{err['msg'].replace('Input should be', 'expected')}, got {_describe(got)}"
    if kind in ("too_short", "too_long") and isinstance(got, list | str):
        if kind == "too_short" and isinstance(got, list):
            return f"must have at least {ctx.get('min_length')} item(s)"
        return err["msg"]
    if kind in (
        "greater_than_equal",
        "greater_than",
        "less_than_equal",
        "less_than",
        "finite_number",
    ):
        return f"{err['msg'].replace('Input should be', 'must be')}, got {_describe(got)}"
    msg = err["msg"]
    return msg.removeprefix("Value error, ")


def _to_config_error(
    exc: ValidationError, root: yaml.Node, source: str, prefix: list
) -> PolicyConfigError:
    found = []
    for err in exc.errors(include_url=False):
        ctx = err.get("ctx") or {}
        loc = [*err["loc"], *ctx.get("_subloc", ())]
        node, shown = _locate(root, loc, bool(ctx.get("_at_key")))
        if err["type"] == "union_tag_invalid":
            _, v = _child(node, "type")
            if v is not None:
                node, shown = v, [*shown, "type"]
        found.append((node.start_mark.line, node.start_mark.column, shown, _message(err)))
    found.sort(key=lambda f: (f[0], f[1]))
    line, col, shown, message = found[0]
    return PolicyConfigError(
        source,
        message,
        line=line + 1,
        column=col + 1,
        field=_format_path([*prefix, *shown]) or None,
        more=len(found) - 1,
    )


def _is_tail_sampling(key: Any) -> bool:
    return key == "tail_sampling" or str(key).startswith("tail_sampling/")


def _select(root: yaml.Node, data: Any, source: str, processor: str | None):
    """(node, data, field-path prefix) of the tail_sampling configuration in the file."""
    if not isinstance(data, dict):
        raise PolicyConfigError(
            source,
            f"expected a mapping at the top (policies: [...] or a collector config), "
            f"got {_describe(data)}",
            line=root.start_mark.line + 1,
            column=root.start_mark.column + 1,
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
                raise PolicyConfigError(
                    source,
                    f"no processor {wanted!r} in {_format_path(where) or 'the file'}; found: "
                    f"{', '.join(names) or 'none'}",
                )
            names = [wanted]
        if not names:
            raise PolicyConfigError(
                source,
                f"no tail_sampling processor under {_format_path(where)}; found: "
                f"{', '.join(map(str, container)) or 'nothing'}",
                line=container_node.start_mark.line + 1,
                column=container_node.start_mark.column + 1,
            )
        if len(names) > 1:
            raise PolicyConfigError(
                source,
                f"several tail_sampling processors ({', '.join(names)}): say which one",
            )
        _, node = _child(container_node, names[0])
        return node, container[names[0]], [*where, names[0]]

    if "processors" in data and "policies" not in data:
        procs_node = _child(root, "processors")[1]
        if not isinstance(data["processors"], dict):
            raise PolicyConfigError(
                source,
                "'processors' must be a mapping",
                line=procs_node.start_mark.line + 1,
                column=procs_node.start_mark.column + 1,
            )
        return pick(procs_node, data["processors"], ["processors"])
    if data and all(_is_tail_sampling(k) for k in data):
        return pick(root, data, [])
    return root, data, []


def load_policy_text(
    text: str, source: str = "<string>", processor: str | None = None
) -> SamplingConfig:
    """Parse policy YAML given as text; see load_policy_file."""
    root, data = _compose(text, source)
    if root is None:
        raise PolicyConfigError(source, "the file is empty; expected 'policies: [...]'")
    node, section, prefix = _select(root, data, source, processor)
    if section is None:
        raise PolicyConfigError(
            source,
            "the tail_sampling section is empty; expected 'policies: [...]'",
            line=node.start_mark.line + 1,
            column=node.start_mark.column + 1,
            field=_format_path(prefix) or None,
        )
    try:
        return SamplingConfig.model_validate(section)
    except ValidationError as exc:
        raise _to_config_error(exc, node, source, prefix) from None


def load_policy_file(path: str | Path, processor: str | None = None) -> SamplingConfig:
    """Read a policy file: bare, ``tail_sampling:`` at the top, or a collector config.

    ``processor`` picks one of several ``tail_sampling/<name>`` processors ("name" or the
    full id). Raises PolicyConfigError with file, line, field path and allowed values.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyConfigError(source, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PolicyConfigError(source, f"not UTF-8 text: {exc}") from None
    return load_policy_text(text, source, processor)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a bare policy file (schemas/sampling-policy.schema.json)."""
    schema = SamplingConfig.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://spansieve.dev/schemas/sampling-policy.schema.json"
    schema["title"] = "spansieve sampling policies (OpenTelemetry Collector tail_sampling shape)"
    return schema
