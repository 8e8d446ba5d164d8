"""The ``where`` search parameter: conditions with OR, regexes, negation, numeric
comparisons and trace-level facts, which Jaeger's ``tags`` (equality, ANDed) cannot say.

Jaeger clients never send ``where`` (``/api/traces``; ``query.where`` under
``/api/v3``), so Jaeger's own parameters keep their meaning. Example::

    http.response.status_code>=500 service.version!=1.2
    (http.route=~"/api/.*" OR db.system=redis) trace.duration>2s trace.error=true

Grammar (whitespace is any Unicode space; positions in errors count characters from 1)::

    where      = [clause { space clause }]      clauses are ANDed
    clause     = comparison | "(" comparison { space "OR" space comparison } ")"
    comparison = word [space] operator [space] word
    operator   = "=" | "!=" | "=~" | "!~" | ">" | ">=" | "<" | "<="
    word       = bare | quoted
    bare       = one or more characters other than space and ( ) " = ! < > ~
    quoted     = '"' characters '"'   where \\" is " and \\\\ is \\ (any other \\ stays)

Groups do not nest; ``OR`` is also read as ``or``; ``(a=1)`` is just ``a=1``. A value
with spaces, parentheses, quotes or operator characters must be quoted
(``http.route=~"/api/(v1|v2)/.*"``).

Keys and what they compare:

* an attribute key: the span's attribute or its resource's (as ``tags`` match them).
  ``=`` compares the stored text (``200``, ``true``) or, for a number, the number;
  ``>``/``>=``/``<``/``<=`` take a number and compare the attribute's numeric ``.num``
  field; ``=~`` is an OpenSearch ``regexp`` (Lucene syntax, default flags) that must match
  the whole stored text, as OpenSearch anchors it (OpenSearch checks its syntax: one it
  cannot read is answered with HTTP 400 and Lucene's reason);
* the keys Jaeger derives from span fields: ``error`` (true or false), ``span.kind``
  (server, client, ...), ``otel.status_code`` (UNSET, OK, ERROR) with ``=``/``!=``;
  ``otel.status_description`` and ``otel.scope.name``/``version`` (or ``otel.library.*``)
  also with regexes;
* ``name`` or ``span.name`` (the span's name), ``duration`` (the span's own, a Go
  duration such as ``150ms``, ``2s``, ``1.5m``);
* the trace's, from the fields every span of a kept trace carries: ``trace.duration``
  (first start to last end), ``trace.error`` (some span failed), ``trace.spans`` (span
  count), ``trace.services`` (some service of the trace: ``=`` / ``=~``; ``!=`` means none
  is), ``trace.root.name``, ``trace.root.duration``, ``trace.root.status_code`` (the root
  span's, Data Prepper's ``traceGroup`` fields). The root's service is not stored per
  trace, so there is no ``trace.root.service``.

These names always mean the fields above, never an attribute of the same name.

Span-level comparisons hold on one span, the same one ``service``, ``operation`` and
``tags`` pick (Jaeger's rule); trace-level ones only add a filter. ``!=`` and ``!~`` are
the negation of ``=`` and ``=~``: spans without the attribute match them too. Late spans
(indexed after their trace was decided) carry facts about themselves only and no root.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, NoReturn

from pipeline.config.durations import parse_go_duration
from pipeline.query.params import SPAN_KINDS, STATUS_CODES, ParamError
from pipeline.query.search import SCOPE_TAGS, tag_clause
from pipeline.store.fields import RESOURCE_ATTRIBUTES, SPAN_ATTRIBUTES

JSON = dict[str, Any]

WHERE = "where"  # /api/traces
V3_WHERE = "query.where"  # /api/v3/traces, /api/v3/trace-summaries
#: comparisons in one search at most: each becomes up to four query clauses, and
#: OpenSearch refuses a bool query of more than 1024
MAX_COMPARISONS = 100

EQUALITY = ("=", "!=")
REGEX = ("=~", "!~")
ORDER = (">", ">=", "<", "<=")
#: longest first, so ">=" is read as one operator, not ">" before a value "=..."
OPERATORS = ("!=", "!~", "=~", ">=", "<=", "=", ">", "<")
_OPERATOR_LIST = "=, !=, =~, !~, >, >=, <, <="
_RANGE = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}
_POSITIVE = {"!=": "=", "!~": "=~"}
_NOT_BARE = frozenset('()"=!<>~')
_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_COUNT = re.compile(r"[0-9]+")
_BOOLEANS = {"true": True, "false": False}


class _Kind(Enum):
    """What a field holds, hence which operators and values it takes."""

    TEXT = "text"  # keyword: = != =~ !~
    DURATION = "duration"  # long nanoseconds, values as Go durations: = != and order
    COUNT = "count"  # integer: = != and order
    BOOLEAN = "boolean"  # = != with true/false
    STATUS = "status"  # status code by name (UNSET, OK, ERROR): = !=


_OPERATORS_OF = {
    _Kind.TEXT: EQUALITY + REGEX,
    _Kind.DURATION: EQUALITY + ORDER,
    _Kind.COUNT: EQUALITY + ORDER,
    _Kind.BOOLEAN: EQUALITY,
    _Kind.STATUS: EQUALITY,
}

#: keys naming a document field rather than an attribute
FIELDS: dict[str, tuple[str, _Kind]] = {
    "name": ("name", _Kind.TEXT),
    "span.name": ("name", _Kind.TEXT),
    "duration": ("durationInNanos", _Kind.DURATION),
    "otel.status_description": ("status.message", _Kind.TEXT),
    **{
        key: (f"instrumentationScope.{key.rsplit('.', 1)[1]}", _Kind.TEXT)
        for key in sorted(SCOPE_TAGS)
    },
    "trace.duration": ("traceFields.durationInNanos", _Kind.DURATION),
    "trace.error": ("traceFields.error", _Kind.BOOLEAN),
    "trace.spans": ("traceFields.spanCount", _Kind.COUNT),
    "trace.services": ("traceFields.services", _Kind.TEXT),
    "trace.root.name": ("traceGroup", _Kind.TEXT),
    "trace.root.duration": ("traceGroupFields.durationInNanos", _Kind.DURATION),
    "trace.root.status_code": ("traceGroupFields.statusCode", _Kind.STATUS),
}
TRACE_KEYS = tuple(key for key in FIELDS if key.startswith("trace."))
#: keys ``tag_clause`` maps to span fields, compared as it does (equality only)
DERIVED_TAGS = ("error", "span.kind", "otel.status_code")


class _Invalid(ValueError):
    """A comparison the grammar allows but its key cannot take; ``part`` ("key", "op" or
    "value") tells the parser which position to name."""

    def __init__(self, message: str, part: str = "value") -> None:
        super().__init__(message)
        self.part = part


# --- clauses ------------------------------------------------------------------------------


def _not(clause: JSON) -> JSON:
    return {"bool": {"must_not": [clause]}}


def _any_of(clauses: list[JSON]) -> JSON:
    return {"bool": {"should": clauses, "minimum_should_match": 1}}


def _attribute_fields(key: str) -> tuple[str, str]:
    """The span and resource attribute fields of ``key`` ("." stored as "@")."""
    field = key.replace(".", "@")
    return SPAN_ATTRIBUTES + field, RESOURCE_ATTRIBUTES + field


def _field_value(kind: _Kind, op: str, value: str) -> int | bool | str:
    """The value to compare a field of ``kind`` with; ``_Invalid`` says what was expected."""
    if kind is _Kind.TEXT:
        return value
    if kind is _Kind.DURATION:
        try:
            nanos = parse_go_duration(value)
        except ValueError:
            nanos = None
        if nanos is None or nanos < 0:
            raise _Invalid(
                f'expected a duration such as 2s, 150ms or 1.5m after {op}, not "{value}"'
            )
        return nanos
    if kind is _Kind.COUNT:
        if not _COUNT.fullmatch(value):
            raise _Invalid(f'expected a whole number after {op}, not "{value}"')
        return int(value)
    if kind is _Kind.BOOLEAN:
        if value.lower() not in _BOOLEANS:
            raise _Invalid(f'expected true or false after {op}, not "{value}"')
        return _BOOLEANS[value.lower()]
    if value.upper() not in STATUS_CODES:
        raise _Invalid(f'expected one of {", ".join(STATUS_CODES)} after {op}, not "{value}"')
    return STATUS_CODES[value.upper()]


def _check_derived(key: str, op: str, value: str) -> None:
    """The values the tags ``tag_clause`` derives from span fields can take, normalized as
    it normalizes them."""
    if op not in EQUALITY:
        raise _Invalid(f"{op} does not apply to {key}; use = or !=", "op")
    if key == "error":
        valid, expected = value.lower() in _BOOLEANS, tuple(_BOOLEANS)
    elif key == "span.kind":
        valid, expected = value.strip().lower() in SPAN_KINDS, tuple(SPAN_KINDS)
    else:
        valid, expected = value.upper() in STATUS_CODES, tuple(STATUS_CODES)
    if not valid:
        raise _Invalid(f'expected one of {", ".join(expected)} after {op}, not "{value}"')


def _positive_clause(key: str, op: str, value: str) -> JSON:
    """The clause of ``key op value`` for ``op`` other than != and !~."""
    if key in DERIVED_TAGS:
        _check_derived(key, op, value)
        return tag_clause(key, value)
    if key in FIELDS:
        field, kind = FIELDS[key]
        if op not in _OPERATORS_OF[kind]:
            allowed = ", ".join(_OPERATORS_OF[kind])
            raise _Invalid(f"{op} does not apply to {key}; use {allowed}", "op")
        compared = _field_value(kind, op, value)
        if op == "=":
            return {"term": {field: compared}}
        if op == "=~":
            return {"regexp": {field: {"value": compared}}}
        return {"range": {field: {_RANGE[op]: compared}}}
    if key.startswith("trace."):
        raise _Invalid(f'unknown trace key "{key}"; use one of {", ".join(TRACE_KEYS)}', "key")
    if op == "=":
        return tag_clause(key, value)
    if op == "=~":
        return _any_of([{"regexp": {f: {"value": value}}} for f in _attribute_fields(key)])
    if not _NUMBER.fullmatch(value) or abs(float(value)) == float("inf"):
        raise _Invalid(f'expected a number after {op}, not "{value}"')
    number = float(value)
    return _any_of([{"range": {f"{f}.num": {_RANGE[op]: number}}} for f in _attribute_fields(key)])


def comparison_clause(key: str, op: str, value: str) -> JSON:
    """The OpenSearch filter of one comparison; ``ValueError`` when ``key`` cannot take
    ``op`` or ``value`` (the parser turns that into a ``ParamError`` with a position)."""
    if op in _POSITIVE:
        return _not(_positive_clause(key, _POSITIVE[op], value))
    if op not in OPERATORS:
        raise _Invalid(f"expected an operator ({_OPERATOR_LIST}), not {op!r}", "op")
    return _positive_clause(key, op, value)


@dataclass(frozen=True)
class Comparison:
    """``key op value`` as written (the value's text, unquoted)."""

    key: str
    op: str
    value: str

    def clause(self) -> JSON:
        return comparison_clause(self.key, self.op, self.value)

    def regexes(self) -> tuple[Comparison, ...]:
        """Itself if it compares with a regex (which only OpenSearch checks)."""
        return (self,) if self.op in REGEX else ()

    def __str__(self) -> str:
        return f"{_word(self.key)}{self.op}{_word(self.value)}"


@dataclass(frozen=True)
class AnyOf:
    """A parenthesised group: at least one of its comparisons holds."""

    comparisons: tuple[Comparison, ...]

    def clause(self) -> JSON:
        return _any_of([comparison.clause() for comparison in self.comparisons])

    def regexes(self) -> tuple[Comparison, ...]:
        return tuple(c for c in self.comparisons if c.op in REGEX)

    def __str__(self) -> str:
        return "(" + " OR ".join(map(str, self.comparisons)) + ")"


Condition = Comparison | AnyOf


#: trace-level keys that tell what RBAC placeholders withhold from a principal limited to
#: some services (other services' names, their spans' names and statuses); durations and
#: span counts are not among them, since placeholders keep timing
WITHHELD_TRACE_KEYS = frozenset(
    {"trace.error", "trace.services", "trace.root.name", "trace.root.status_code"}
)


def withheld_keys(conditions: Sequence[Condition]) -> list[str]:
    """The keys in ``conditions`` a principal limited to some services must not search by
    (``WITHHELD_TRACE_KEYS``), in order; for the app to refuse with 403."""
    found = (
        c for item in conditions for c in (item.comparisons if isinstance(item, AnyOf) else (item,))
    )
    return list(dict.fromkeys(c.key for c in found if c.key in WITHHELD_TRACE_KEYS))


def format_where(conditions: Sequence[Condition]) -> str:
    """The text of ``conditions``, which ``parse_where`` reads back to the same."""
    return " ".join(map(str, conditions))


def _bare(char: str) -> bool:
    return not char.isspace() and char not in _NOT_BARE


def _word(text: str) -> str:
    """``text`` bare when it reads back as itself, else quoted; "OR" is always quoted so a
    key never looks like the keyword."""
    if text and all(map(_bare, text)) and text.upper() != "OR":
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- parser -------------------------------------------------------------------------------


class _Parser:
    """A recursive-descent reader of one ``where`` value; errors name the position."""

    def __init__(self, text: str, param: str, where: str) -> None:
        self.text = text
        self.param = param
        self.where = where  # "" or " of value 2" when the parameter is repeated
        self.pos = 0

    def fail(self, pos: int, message: str) -> NoReturn:
        raise ParamError(self.param, f"at {pos + 1}{self.where}: {message}")

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def space(self) -> bool:
        """Skips whitespace; whether there was any."""
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.pos > start

    def conditions(self) -> list[Condition]:
        found: list[Condition] = []
        self.space()
        while not self.at_end():
            if self.peek() == ")":
                self.fail(self.pos, 'unmatched ")"')
            found.append(self.group() if self.peek() == "(" else self.comparison())
            if not self.space() and not self.at_end() and self.peek() != ")":
                self.fail(self.pos, f'expected a space before the next clause, not "{self.peek()}"')
        return found

    def group(self) -> Condition:
        opened = self.pos
        self.pos += 1
        self.space()
        members = [self.comparison()]
        while True:
            spaced = self.space()
            if self.at_end():
                self.fail(self.pos, f'expected OR or ")" to close the group opened at {opened + 1}')
            if self.peek() == ")":
                self.pos += 1
                break
            keyword = self.pos
            if not spaced or self.bare().upper() != "OR":
                self.fail(keyword, 'expected OR or ")" after a comparison in a group')
            if not self.space():
                found = "the end" if self.at_end() else f'"{self.peek()}"'
                self.fail(self.pos, f"expected a space and a comparison after OR, not {found}")
            members.append(self.comparison())
        return members[0] if len(members) == 1 else AnyOf(tuple(members))

    def bare(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and _bare(self.text[self.pos]):
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str:
        opened = self.pos
        self.pos += 1
        chars: list[str] = []
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char == "\\" and text[self.pos + 1 : self.pos + 2] in ('"', "\\"):
                chars.append(text[self.pos + 1])
                self.pos += 2
            elif char == '"':
                self.pos += 1
                return "".join(chars)
            else:
                chars.append(char)
                self.pos += 1
        self.fail(opened, "unclosed quote")

    def word(self, what: str) -> str:
        if self.peek() == '"':
            return self.quoted()
        word = self.bare()
        if not word:
            found = "the end" if self.at_end() else f'"{self.peek()}"'
            hint = " (groups do not nest)" if self.peek() == "(" else ""
            self.fail(self.pos, f"expected {what}, not {found}{hint}")
        return word

    def comparison(self) -> Comparison:
        key_at = self.pos
        key = self.word("a key such as http.route, name, duration or trace.duration")
        if not key:
            self.fail(key_at, "a key must not be empty")
        self.space()
        op_at = self.pos
        op = next((op for op in OPERATORS if self.text.startswith(op, self.pos)), None)
        if op is None:
            hint = ""
            if key.upper() in ("AND", "OR"):
                hint = "; clauses separated by spaces are ANDed, OR goes inside parentheses"
            self.fail(op_at, f'expected an operator ({_OPERATOR_LIST}) after "{key}"{hint}')
        self.pos += len(op)
        self.space()
        value_at = self.pos
        value = self.word(f"a value after {op}")
        try:
            comparison_clause(key, op, value)
        except _Invalid as exc:
            self.fail({"key": key_at, "op": op_at}.get(exc.part, value_at), str(exc))
        return Comparison(key, op, value)


def parse_where(texts: Sequence[str], param: str = WHERE) -> tuple[Condition, ...]:
    """The conditions of every ``where`` value (all ANDed); blank values are none.

    ``ParamError`` naming ``param``, the position and what was expected on any problem."""
    values = [text for text in texts if text.strip()]
    found: list[Condition] = []
    for number, text in enumerate(values, 1):
        where = f" of value {number}" if len(values) > 1 else ""
        found.extend(_Parser(text, param, where).conditions())
    count = sum(len(c.comparisons) if isinstance(c, AnyOf) else 1 for c in found)
    if count > MAX_COMPARISONS:
        raise ParamError(param, f"{count} comparisons; at most {MAX_COMPARISONS} are allowed")
    return tuple(found)
