"""YAML files validated by pydantic, with errors a person can act on.

The sampling-policy loader (``pipeline.policies.config``) and the load generator's
topology loader (``pipeline.loadgen.topology``) both read YAML into strict pydantic
models and report problems the same way: ``ConfigError`` naming file, line, column,
field path and what is allowed, e.g.::

    policies.yaml:14:24: policies[2].latency.threshold_ms: expected an integer, got 'fast'

This module is that shared machinery: the error type, Go-style durations, the strict
model base, a YAML loader that refuses duplicate keys and keeps line numbers, and the
mapping of a pydantic ``ValidationError`` back onto the YAML node it is about.

Durations take Go's syntax ("30s", "500ms", "1m30s", "1.5h") or a plain number of
SECONDS. Discriminated unions are expected to use a ``type`` key as their tag.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "ConfigError",
    "Duration",
    "NonEmptyStr",
    "StrictModel",
    "child_node",
    "compose_yaml",
    "custom_error",
    "describe_value",
    "format_path",
    "parse_duration",
    "read_config_file",
    "to_config_error",
]

# --------------------------------------------------------------------------- errors


class ConfigError(ValueError):
    """A config file that cannot be used; ``str()`` is "file:line:col: field: message"."""

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


def describe_value(value: Any) -> str:
    """A short description of a YAML value for error messages: "a list", "a mapping", repr."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value)


def custom_error(
    message: str, subloc: tuple[str | int, ...] = (), *, at_key: bool = False, **ctx: Any
) -> PydanticCustomError:
    """A validation error for a model validator to raise.

    ``message`` is formatted with ``ctx``; ``subloc`` extends the error's location below
    the model (so the error points at that field's line); ``at_key`` points at the key's
    line rather than at its value.
    """
    extra: dict[str, Any] = {"_subloc": subloc}
    if at_key:
        extra["_at_key"] = True
    return PydanticCustomError("config", message, {**ctx, **extra})


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
    """Seconds from a Go duration string or a plain (non-negative) number of seconds.

    Raises ``PydanticCustomError`` (a ``ValueError``) for anything else.
    """
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


class StrictModel(BaseModel):
    """Frozen, strict, no unknown keys; an unknown key's error lists the allowed ones."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)

    @classmethod
    def unknown_key_owner(cls, data: dict[Any, Any]) -> str:
        """What holds the keys, for "unknown key 'x' in <this>"; subclasses may refine it."""
        return "a section"

    @model_validator(mode="before")
    @classmethod
    def _only_known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = [f.alias or name for name, f in cls.model_fields.items()]
            for key in data:
                if key not in allowed:
                    raise PydanticCustomError(
                        "unknown_key",
                        "unknown key {key}{extra}; allowed keys: {allowed}",
                        {
                            "key": repr(key),
                            "extra": f" in {cls.unknown_key_owner(data)}",
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
                    "got": describe_value(data),
                },
            )
        return data


# --------------------------------------------------------------------------- loading


def read_config_file(path: str | Path) -> str:
    """The text of a config file; ConfigError if it cannot be read or is not UTF-8."""
    source = str(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, f"not UTF-8 text: {exc}") from None


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
                        raise ConfigError(
                            source,
                            f"duplicate key {k.value!r} (first at line "
                            f"{keys[k.value].start_mark.line + 1})",
                            **node_position(k),
                        )
                    keys[k.value] = k
                stack.append(v)
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)


def compose_yaml(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """(root node, data) of a YAML document; (None, None) if it is empty.

    The node tree keeps line numbers for ``to_config_error``. Raises ConfigError for
    invalid YAML and for duplicate keys.
    """
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
        raise ConfigError(
            source,
            f"invalid YAML: {problem}",
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return node, data


def child_node(node: yaml.Node, key: str | int) -> tuple[yaml.Node | None, yaml.Node | None]:
    """(key node, value node) of `key` in a mapping, or (None, item) in a sequence."""
    if isinstance(node, yaml.MappingNode) and isinstance(key, str):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return k, v
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        return None, node.value[key]
    return None, None


def node_position(node: yaml.Node) -> dict[str, int]:
    """``line`` and ``column`` (1-based) of a YAML node, as ConfigError takes them."""
    return {"line": node.start_mark.line + 1, "column": node.start_mark.column + 1}


def _mapping_value(node: yaml.Node, key: str) -> str | None:
    _, v = child_node(node, key)
    return v.value if isinstance(v, yaml.ScalarNode) else None


def format_path(parts: Sequence[str | int]) -> str:
    """A field path for messages: ["policies", 2, "latency"] -> "policies[2].latency"."""
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
        key_node, value_node = child_node(node, part)
        if value_node is None:
            shown.extend(rest)
            return node, shown
        rest.pop(0)
        shown.append(part)
        if not rest and at_key and key_node is not None:
            return key_node, shown
        node = value_node
    return node, shown


_TYPE_NAMES = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
}


def _message(err: dict[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = err.get("input")
    if kind == "missing":
        return f"required key {err['loc'][-1]!r} is missing"
    if kind in _TYPE_NAMES:
        return f"expected {_TYPE_NAMES[kind]}, got {describe_value(got)}"
    if kind == "model_type":
        return f"expected a mapping, got {describe_value(got)}"
    if kind == "literal_error":
        return f"{err['msg'].replace('Input should be', 'expected')}, got {describe_value(got)}"
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
        return f"{err['msg'].replace('Input should be', 'must be')}, got {describe_value(got)}"
    msg = err["msg"]
    return msg.removeprefix("Value error, ")


def to_config_error(
    exc: ValidationError,
    root: yaml.Node,
    source: str,
    prefix: Sequence[str | int] = (),
    *,
    message: Callable[[dict[str, Any]], str | None] | None = None,
) -> ConfigError:
    """The ConfigError for the first (topmost in the file) of a ValidationError's errors.

    ``root`` is the node that was validated and ``prefix`` its field path in the file.
    ``message`` may word an error (a pydantic error dict) itself; None means the default.
    """
    found = []
    for err in exc.errors(include_url=False):
        ctx = err.get("ctx") or {}
        loc = [*err["loc"], *ctx.get("_subloc", ())]
        node, shown = _locate(root, loc, bool(ctx.get("_at_key")))
        if err["type"] == "union_tag_invalid":
            _, v = child_node(node, "type")
            if v is not None:
                node, shown = v, [*shown, "type"]
        text = message(err) if message is not None else None
        if text is None:
            text = _message(err)
        found.append((node.start_mark.line, node.start_mark.column, shown, text))
    found.sort(key=lambda f: (f[0], f[1]))
    line, col, shown, text = found[0]
    return ConfigError(
        source,
        text,
        line=line + 1,
        column=col + 1,
        field=format_path([*prefix, *shown]) or None,
        more=len(found) - 1,
    )
