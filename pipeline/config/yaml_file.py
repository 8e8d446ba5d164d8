"""YAML config files read into pydantic models, with errors a person can act on.

Policies (``pipeline.policies.config``), load-generator topologies
(``pipeline.loadgen.topology``) and the gateway's redaction file
(``pipeline.gateway.redaction``) are all read here and report problems the same way: a
``ConfigError`` naming file, line, column, field path and what is allowed, one problem a
line, e.g.::

    policies.yaml:14:24: policies[2].latency.threshold_ms: expected an integer, got 'fast'

The pieces, in the order a loader uses them:

* ``read_config_file``: the text (a missing or non-UTF-8 file is a ConfigError);
* ``compose_yaml`` / ``compose_mapping``: the node tree (line numbers) and the data; YAML
  syntax errors and duplicate keys are ConfigErrors;
* ``child_node``, ``node_position``, ``format_path``: finding a section and saying where;
* ``validate_node`` / ``to_config_error``: validation, a ``ValidationError`` mapped back
  onto the YAML node each of its errors is about.

The model side (``StrictModel``, ``Duration``, ``custom_error``, ``describe_value``) is
``pipeline.config.models``. Discriminated unions are expected to use a ``type`` key as
their tag.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.config.models import describe_value

__all__ = [
    "DEFAULT_PROBLEM_LIMIT",
    "ConfigError",
    "ConfigProblem",
    "child_node",
    "compose_mapping",
    "compose_yaml",
    "format_path",
    "node_position",
    "read_config_file",
    "to_config_error",
    "validate_node",
]

M = TypeVar("M", bound=BaseModel)

# How many problems validate_node lists before "(and N more errors)".
DEFAULT_PROBLEM_LIMIT = 10

# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class ConfigProblem:
    """One problem of a config file; ``str()`` is "file:line:col: field: message"."""

    source: str
    message: str
    line: int | None = None
    column: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}:{self.column}"
        if self.field:
            return f"{where}: {self.field}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(ValueError):
    """A config file that cannot be used; ``str()`` is "file:line:col: field: message".

    ``source``, ``line``, ``column``, ``field`` and ``message`` describe the first problem
    (the topmost in the file); ``also`` lists further problems, one line each after it;
    ``more`` counts problems left unlisted ("(and 2 more errors)"). ``problems`` is the
    first problem and ``also`` together.
    """

    def __init__(
        self,
        source: str,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
        more: int = 0,
        also: Sequence[ConfigProblem] = (),
    ) -> None:
        self.source = source
        self.line = line
        self.column = column
        self.field = field
        self.message = message
        self.more = more
        self.also = tuple(also)
        text = "\n".join(str(p) for p in self.problems)
        if more:
            text += f" (and {more} more error{'s' if more > 1 else ''})"
        super().__init__(text)

    @property
    def problems(self) -> tuple[ConfigProblem, ...]:
        first = ConfigProblem(self.source, self.message, self.line, self.column, self.field)
        return (first, *self.also)


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
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
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
    limit: int | None = 1,
) -> ConfigError:
    """The ConfigError for a ValidationError's errors, topmost in the file first.

    ``root`` is the node that was validated and ``prefix`` its field path in the file.
    ``message`` may word an error (a pydantic error dict) itself; None means the default.
    ``limit`` is how many problems are listed (None: all); the rest are counted in
    "(and N more errors)".
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
    problems = [
        ConfigProblem(source, text, line + 1, col + 1, format_path([*prefix, *shown]) or None)
        for line, col, shown, text in found
    ]
    listed = problems if limit is None else problems[: max(limit, 1)]
    first = listed[0]
    return ConfigError(
        source,
        first.message,
        line=first.line,
        column=first.column,
        field=first.field,
        more=len(problems) - len(listed),
        also=listed[1:],
    )


# --------------------------------------------------------------------------- loaders


def compose_mapping(text: str, source: str, *, empty: str, expected: str) -> tuple[yaml.Node, dict]:
    """(root node, data) of a YAML document that must be a mapping at the top.

    ``empty`` is the whole message for an empty document ("the file is empty; expected a
    topology"); ``expected`` says what the top holds, for "expected a mapping at the top
    (<expected>), got a list". Raises ConfigError, as ``compose_yaml`` does.
    """
    root, data = compose_yaml(text, source)
    if root is None:
        raise ConfigError(source, empty)
    if not isinstance(data, dict):
        raise ConfigError(
            source,
            f"expected a mapping at the top ({expected}), got {describe_value(data)}",
            **node_position(root),
        )
    return root, data


def validate_node(
    model: type[M],
    data: Any,
    node: yaml.Node,
    source: str,
    prefix: Sequence[str | int] = (),
    *,
    message: Callable[[dict[str, Any]], str | None] | None = None,
    limit: int | None = DEFAULT_PROBLEM_LIMIT,
) -> M:
    """``model`` validated from ``data``, which YAML ``node`` (at field path ``prefix``) holds.

    A ValidationError becomes a ConfigError listing up to ``limit`` problems, topmost
    first, each at its own line and field (see ``to_config_error``).
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise to_config_error(exc, node, source, prefix, message=message, limit=limit) from None
