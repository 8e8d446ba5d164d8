"""The redaction file: the Collector ``redaction`` processor's keys, read and checked.

``load_redaction_config(path)`` takes a bare mapping of the keys or a whole Collector
configuration (the first processor named ``redaction`` or ``redaction/<name>``). It is read
like every spansieve YAML file (``pipeline.config.yaml_file``), so its errors are the same
``RedactionConfigError`` = ``ConfigError``, one problem a line::

    pii.yaml:5:5: blocked_values[1]: invalid regular expression '(unclosed': ...
    pii.yaml:6:10: summary: expected 'debug', 'info' or 'silent', got 'loud'

Configured patterns are written for Go's RE2: the common RE2-isms are accepted (a leading
``(?i)``, ``(?<name>...)``, ``\\z``; see ``normalize_regex``) and what Python would do
differently (backreferences, conditionals) is refused. The redactor itself is
``pipeline.gateway.redaction``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field

from pipeline.config.models import StrictModel
from pipeline.config.yaml_file import (
    ConfigError,
    child_node,
    compose_mapping,
    node_position,
    read_config_file,
    validate_node,
)

__all__ = [
    "BuiltinName",
    "RedactionConfig",
    "RedactionConfigError",
    "checked_regex",
    "checked_value_regex",
    "load_redaction_config",
    "normalize_regex",
]

# The built-in value patterns a file may name (their expressions: redaction.BUILTIN_PATTERNS).
BuiltinName = Literal["credit_card", "email", "us_ssn", "bearer_token"]

# ---------------------------------------------------------------------------------------------
# Regular expressions: Collector configs are written for Go's RE2; accept the common RE2-isms.
# ---------------------------------------------------------------------------------------------

_LEADING_FLAGS = re.compile(r"\(\?([aiLmsux]+)\)")
_NAMED_GROUP = re.compile(r"(?<!\\)((?:\\\\)*)\(\?P?<([A-Za-z_]\w*)>")
_END_OF_TEXT = re.compile(r"(?<!\\)((?:\\\\)*)\\z")
_BACKREFERENCE = re.compile(r"(?<!\\)(?:\\\\)*(?:\\[1-9]|\(\?P=|\(\?\()")
_REGEX_NOTE = " (Python re syntax; RE2 habits like a leading (?i), (?<name>...) and \\z work)"


def normalize_regex(pattern: str) -> str:
    """Python form of a configured pattern, safe to embed in a larger alternation.

    Named groups become plain groups (names could clash between patterns; Go's ``(?<n>``
    works too), RE2's ``\\z`` becomes ``\\Z``, and leading global flags such as ``(?i)``
    become a scoped group ``(?i:...)``.
    """
    pattern = _END_OF_TEXT.sub(r"\1\\Z", pattern)
    pattern = _NAMED_GROUP.sub(r"\1(", pattern)
    flags = _LEADING_FLAGS.match(pattern)
    if flags:
        rest = pattern[flags.end() :]
        tail = "\n)" if "x" in flags.group(1) else ")"
        pattern = f"(?{flags.group(1)}:{rest}{tail}"
    return pattern


def checked_regex(pattern: str) -> str:
    """``pattern`` if it compiles (after ``normalize_regex``); ValueError saying why not."""
    if _BACKREFERENCE.search(pattern):
        raise ValueError(
            f"regular expression {pattern!r} uses a backreference or conditional group, "
            "which is not supported (RE2, the Collector's syntax, has none either)"
        )
    try:
        re.compile(normalize_regex(pattern))
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}{_REGEX_NOTE}") from None
    return pattern


def checked_value_regex(pattern: str) -> str:
    """``checked_regex``, and the pattern must not match the empty string."""
    checked_regex(pattern)
    if re.fullmatch(normalize_regex(pattern), ""):
        raise ValueError(
            f"regular expression {pattern!r} matches the empty string, so it would mask "
            "between every character; make it match at least one character"
        )
    return pattern


# ---------------------------------------------------------------------------------------------
# The file
# ---------------------------------------------------------------------------------------------

# The redaction loader's errors are the generic config errors (same text, same fields).
RedactionConfigError = ConfigError


def _none_as_empty(value: Any) -> Any:
    """``key:`` with nothing under it (e.g. every item commented out) is an empty list."""
    return [] if value is None else value


_KeyList = Annotated[list[str], BeforeValidator(_none_as_empty)]
_RegexList = Annotated[
    list[Annotated[str, AfterValidator(checked_regex)]], BeforeValidator(_none_as_empty)
]
_ValueRegexList = Annotated[
    list[Annotated[str, AfterValidator(checked_value_regex)]], BeforeValidator(_none_as_empty)
]


class RedactionConfig(StrictModel):
    """The Collector ``redaction`` processor's keys, plus spansieve's ``builtin_patterns``.

    Unknown keys are errors, as in every spansieve file; values are read leniently ("true"
    or 1 for a boolean, as pydantic's lax mode does), hence ``strict=False``.
    """

    model_config = ConfigDict(strict=False)

    allow_all_keys: bool = False
    allowed_keys: _KeyList = Field(default_factory=list)
    ignored_keys: _KeyList = Field(default_factory=list)
    blocked_key_patterns: _RegexList = Field(default_factory=list)
    blocked_values: _ValueRegexList = Field(default_factory=list)
    allowed_values: _RegexList = Field(default_factory=list)
    hash_function: Literal["none", "md5", "sha1", "sha3"] = "none"
    # The Collector's default (an empty summary) adds no attributes, i.e. "silent".
    summary: Literal["debug", "info", "silent"] = "silent"
    builtin_patterns: Annotated[list[BuiltinName], BeforeValidator(_none_as_empty)] = Field(
        default_factory=list
    )

    @classmethod
    def unknown_key_owner(cls, data: dict[Any, Any]) -> str:
        return "the redaction config"


def _is_redaction(name: Any) -> bool:
    return isinstance(name, str) and (name == "redaction" or name.startswith("redaction/"))


def _redaction_section(
    root: yaml.Node, data: dict, source: str
) -> tuple[yaml.Node, Any, tuple[str, ...]]:
    """(node, data, field path) of the redaction keys: the file itself, or a processor."""
    if "processors" not in data:
        return root, data, ()
    key_node, processors_node = child_node(root, "processors")
    processors = data["processors"]
    if isinstance(processors, dict) and processors_node is not None:
        for name, section in processors.items():
            if _is_redaction(name):
                _, node = child_node(processors_node, name)
                if node is not None:
                    return node, section, ("processors", name)
    raise ConfigError(
        source,
        "a collector config needs a processor named 'redaction' or 'redaction/<name>'",
        field="processors",
        **(node_position(key_node) if key_node is not None else {}),
    )


def load_redaction_config(path: str | Path) -> RedactionConfig:
    """Read a redaction YAML file: a bare mapping of the keys, or a Collector config.

    In a Collector config the first processor named ``redaction`` or ``redaction/<name>``
    is used; ``redaction:`` with nothing under it means the Collector's defaults. Every
    problem raises :class:`RedactionConfigError` naming file, line, column and field.
    """
    source = str(path)
    root, data = compose_mapping(
        read_config_file(path),
        source,
        empty="the file is empty; expected redaction keys (to turn redaction off, "
        "configure no file)",
        expected="redaction keys, or a collector config with processors.redaction",
    )
    node, section, prefix = _redaction_section(root, data, source)
    if section is None:
        section = {}
    return validate_node(RedactionConfig, section, node, source, prefix)
