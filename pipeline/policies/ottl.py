"""A documented subset of OTTL boolean conditions, for the ``ottl_condition`` policy.

The collector's ``ottl_condition`` policy takes lists of OTTL conditions for the span
context (``span:``) and the span-event context (``spanevent:``); a trace is Sampled when
any condition holds for any span (or any event of any span). This module parses and
evaluates the part of OTTL that sampling rules use in practice. Anything outside it is
rejected at load time with the column where it starts; nothing is silently ignored.

Grammar (keywords lower case, as in OTTL)::

    condition  := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := term ("and" term)*
    term       := ["not"] (comparison | "true" | "false" | "(" or_expr ")")
    comparison := value op value          op: == != > >= < <=
    value      := path | literal | ENUM
    literal    := "string" | int | float | true | false | nil

Paths in the span context (the ``span.`` prefix is optional)::

    name  kind  status.code  status.message  start_time_unix_nano  end_time_unix_nano
    duration                      (end - start in nanoseconds; a spansieve extension)
    attributes["key"]             (span attributes)
    resource.attributes["key"]

Paths in the span-event context (the ``spanevent.`` prefix is optional)::

    name  time_unix_nano  attributes["key"]      (the event's own)
    span.<any span path above>  resource.attributes["key"]

Enums: ``SPAN_KIND_UNSPECIFIED`` (0), ``SPAN_KIND_INTERNAL`` (1), ``SPAN_KIND_SERVER`` (2),
``SPAN_KIND_CLIENT`` (3), ``SPAN_KIND_PRODUCER`` (4), ``SPAN_KIND_CONSUMER`` (5),
``STATUS_CODE_UNSET`` (0), ``STATUS_CODE_OK`` (1), ``STATUS_CODE_ERROR`` (2).

Strings take Go escapes ``\\" \\\\ \\n \\t \\r \\xhh \\uhhhh``. Comparisons follow OTTL's
rules: a missing attribute is ``nil``; ``nil == nil`` (and ``<=``, ``>=``) is true; int and
float compare numerically; strings and bytes compare lexicographically; bools order
false < true; maps and lists compare only for (deep) equality; any other mix of types is
false for every operator except ``!=``. Every path reads a field that every span or
event has. Consequently no condition of this subset can fail at run time; the
``ottl_condition`` policy still applies its ``error_mode`` (``propagate``, ``ignore``,
``silent``) to a condition that raises, see ``pipeline.policies.ottl_condition``.

Not supported (load-time error): converters and editors (``IsMatch(...)``,
``Substring(...)``...), math (``+ - * /``), byte literals (``0x...``), map/list literals,
nested indexing (``attributes["a"]["b"]``), other paths (``trace_id``, ``span_id``,
``instrumentation_scope...``, ``cache``...).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

ENUMS: dict[str, int] = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
    "STATUS_CODE_UNSET": 0,
    "STATUS_CODE_OK": 1,
    "STATUS_CODE_ERROR": 2,
}
SPAN_FIELDS = (
    "name",
    "kind",
    "status.code",
    "status.message",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "duration",
    'attributes["key"]',
    'resource.attributes["key"]',
)
EVENT_FIELDS = (
    "name",
    "time_unix_nano",
    'attributes["key"]',
    "span.<span path>",
    'resource.attributes["key"]',
)
ERROR_MODES = ("propagate", "ignore", "silent")


class OTTLError(ValueError):
    """A condition outside the supported subset, or malformed; ``pos`` is 0-based."""

    def __init__(self, message: str, pos: int, text: str) -> None:
        super().__init__(f"{message} at column {pos + 1} of {text!r}")
        self.pos = pos


# --------------------------------------------------------------------------- values


def any_value_to_python(value: AnyValue) -> Any:
    """An AnyValue as OTTL sees it: str, bool, int, float, bytes, list, dict or None."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return value.bytes_value
    if kind == "array_value":
        return [any_value_to_python(v) for v in value.array_value.values]
    out: dict[str, Any] = {}
    for kv in value.kvlist_value.values:
        out.setdefault(kv.key, any_value_to_python(kv.value))
    return out


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_BOOL_ORDER: dict[str, Callable[[bool, bool], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": lambda a, b: not a and b,
    "<=": lambda a, b: not a or b,
    ">": lambda a, b: a and not b,
    ">=": lambda a, b: a or not b,
}


def compare(a: Any, b: Any, op: str) -> bool:
    """OTTL's comparison rules (pkg/ottl compare semantics) for the subset's value types."""
    if a is None and b is None:
        return op in ("==", "<=", ">=")
    if a is None:
        a, b = b, None
    if isinstance(a, bool):
        return _BOOL_ORDER[op](a, b) if isinstance(b, bool) else op == "!="
    if isinstance(a, int | float):
        if isinstance(b, int | float) and not isinstance(b, bool):
            return _ORDER[op](a, b)
        return op == "!="
    if isinstance(a, str):
        return _ORDER[op](a, b) if isinstance(b, str) else op == "!="
    if isinstance(a, bytes):
        return _ORDER[op](a, b) if isinstance(b, bytes) else op == "!="
    if isinstance(a, dict | list):
        if type(b) is type(a) and op in ("==", "!="):
            return (a == b) == (op == "==")
        return op == "!="
    return op == "!="


# --------------------------------------------------------------------------- lexer

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<bytes>0x[0-9A-Fa-f]+)
  | (?P<number>[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<op>==|!=|>=|<=|>|<)
  | (?P<math>[-+*/])
  | (?P<punct>[()\[\]{},.:])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _lex(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos] == '"':
                raise OTTLError("unterminated string", pos, text)
            raise OTTLError(f"unexpected character {text[pos]!r}", pos, text)
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


_ESCAPES = {
    '"': '"',
    "\\": "\\",
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "'": "'",
}


def _unquote(tok: _Tok, text: str) -> str:
    body = tok.text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
            continue
        width = {"x": 2, "u": 4, "U": 8}.get(e)
        digits = body[i + 2 : i + 2 + width] if width else ""
        if width and len(digits) == width and all(d in "0123456789abcdefABCDEF" for d in digits):
            out.append(chr(int(digits, 16)))
            i += 2 + width
            continue
        raise OTTLError(f"unsupported escape '\\{e}' in string", tok.pos + 1 + i, text)
    return "".join(out)


# --------------------------------------------------------------------------- parser

Getter = Callable[[tuple], Any]
Cond = Callable[[tuple], bool]


@dataclass
class CompiledCondition:
    """One parsed condition: ``test(ctx) -> bool`` and the attribute keys it reads."""

    text: str
    test: Cond
    span_keys: set[str] = field(default_factory=set)
    resource_keys: set[str] = field(default_factory=set)


def _attr(attrs: dict, key: str) -> Any:
    v = attrs.get(key)
    return None if v is None else any_value_to_python(v)


def _event_attr(event, key: str) -> Any:
    for kv in event.attributes:
        if kv.key == key:
            return any_value_to_python(kv.value)
    return None


# Context tuples: span context = (span, span_attrs, resource_attrs);
# event context = (event, span, span_attrs, resource_attrs).
def _span_getter(field_name: str, offset: int) -> Getter | None:
    s = offset  # index of the span in the context tuple
    simple: dict[str, Getter] = {
        "name": lambda c: c[s].name,
        "kind": lambda c: c[s].kind,
        "status.code": lambda c: c[s].status.code,
        "status.message": lambda c: c[s].status.message,
        "start_time_unix_nano": lambda c: c[s].start_time_unix_nano,
        "end_time_unix_nano": lambda c: c[s].end_time_unix_nano,
        "duration": lambda c: c[s].end_time_unix_nano - c[s].start_time_unix_nano,
    }
    return simple.get(field_name)


class _Parser:
    def __init__(self, text: str, context: str) -> None:
        self.text = text
        self.context = context  # "span" or "spanevent"
        self.toks = _lex(text)
        self.i = 0
        self.span_keys: set[str] = set()
        self.resource_keys: set[str] = set()

    # token helpers
    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, message: str, tok: _Tok | None = None) -> OTTLError:
        tok = tok or self.peek()
        return OTTLError(message, tok.pos, self.text)

    def expect_punct(self, ch: str) -> _Tok:
        tok = self.take()
        if tok.kind != "punct" or tok.text != ch:
            raise self.fail(f"expected {ch!r}, found {tok.text or 'end of condition'!r}", tok)
        return tok

    def is_word(self, word: str) -> bool:
        tok = self.peek()
        return tok.kind == "ident" and tok.text == word

    # grammar
    def parse(self) -> Cond:
        if self.peek().kind == "end":
            raise self.fail("empty condition")
        cond = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            if tok.kind == "math":
                raise self.fail(f"math expressions ({tok.text!r}) are not supported")
            raise self.fail(f"unexpected {tok.text!r}; expected 'and', 'or' or the end")
        return cond

    def or_expr(self) -> Cond:
        parts = [self.and_expr()]
        while self.is_word("or"):
            self.take()
            parts.append(self.and_expr())
        if len(parts) == 1:
            return parts[0]
        return lambda c: any(p(c) for p in parts)

    def and_expr(self) -> Cond:
        parts = [self.term()]
        while self.is_word("and"):
            self.take()
            parts.append(self.term())
        if len(parts) == 1:
            return parts[0]
        return lambda c: all(p(c) for p in parts)

    def term(self) -> Cond:
        negate = False
        if self.is_word("not"):
            self.take()
            negate = True
        inner = self.primary()
        if negate:
            return lambda c: not inner(c)
        return inner

    def primary(self) -> Cond:
        tok = self.peek()
        if tok.kind == "punct" and tok.text == "(":
            self.take()
            inner = self.or_expr()
            self.expect_punct(")")
            return inner
        left = self.value()
        op_tok = self.peek()
        if op_tok.kind != "op":
            ends_term = op_tok.kind in ("end", "ident") or (
                op_tok.kind == "punct" and op_tok.text == ")"
            )
            if left[1] is bool and ends_term:
                const = left[0](())
                return lambda c: const
            if op_tok.kind == "math":
                raise self.fail(f"math expressions ({op_tok.text!r}) are not supported", op_tok)
            raise self.fail(
                "expected a comparison operator (==, !=, >, >=, <, <=), found "
                f"{op_tok.text or 'end of condition'!r}",
                op_tok,
            )
        self.take()
        right = self.value()
        get_a, get_b, op = left[0], right[0], op_tok.text
        return lambda c: compare(get_a(c), get_b(c), op)

    def value(self) -> tuple[Getter, type | None]:
        """(getter, static type for literals or None)."""
        tok = self.take()
        if tok.kind == "string":
            s = _unquote(tok, self.text)
            return (lambda c: s), str
        if tok.kind == "number":
            num: int | float
            if re.fullmatch(r"[+-]?\d+", tok.text):
                num = int(tok.text)
                if not -(2**63) <= num < 2**63:
                    raise self.fail("integer literal out of int64 range", tok)
            else:
                num = float(tok.text)
            return (lambda c: num), type(num)
        if tok.kind == "bytes":
            raise self.fail("byte literals (0x...) are not supported", tok)
        if tok.kind == "punct" and tok.text in "[{":
            raise self.fail("list and map literals are not supported", tok)
        if tok.kind == "math":
            raise self.fail(f"math expressions ({tok.text!r}) are not supported", tok)
        if tok.kind != "ident":
            raise self.fail(f"expected a value, found {tok.text or 'end of condition'!r}", tok)
        if tok.text in ("true", "false"):
            b = tok.text == "true"
            return (lambda c: b), bool
        if tok.text == "nil":
            return (lambda c: None), type(None)
        if tok.text in ("and", "or", "not"):
            raise self.fail(f"expected a value, found keyword {tok.text!r}", tok)
        nxt = self.peek()
        if nxt.kind == "punct" and nxt.text == "(":
            raise self.fail(
                f"functions/converters ({tok.text}(...)) are not supported in spansieve's "
                "OTTL subset",
                tok,
            )
        if tok.text.isupper() and not (nxt.kind == "punct" and nxt.text == "."):
            if tok.text not in ENUMS:
                raise self.fail(f"unknown enum {tok.text!r}; allowed: {', '.join(ENUMS)}", tok)
            e = ENUMS[tok.text]
            return (lambda c: e), int
        return self.path(tok), None

    def path(self, first: _Tok) -> Getter:
        parts = [first.text]
        while self.peek().kind == "punct" and self.peek().text == ".":
            self.take()
            tok = self.take()
            if tok.kind != "ident":
                raise self.fail("expected a name after '.'", tok)
            parts.append(tok.text)
        key: str | None = None
        if self.peek().kind == "punct" and self.peek().text == "[":
            self.take()
            ktok = self.take()
            if ktok.kind != "string":
                raise self.fail('expected a string key, as in attributes["http.route"]', ktok)
            key = _unquote(ktok, self.text)
            self.expect_punct("]")
            if self.peek().kind == "punct" and self.peek().text == "[":
                raise self.fail("nested indexing is not supported", self.peek())
        dotted = ".".join(parts)
        getter = self.resolve(dotted, key)
        if getter is None:
            shown = dotted + (f'["{key}"]' if key is not None else "")
            allowed = SPAN_FIELDS if self.context == "span" else EVENT_FIELDS
            raise self.fail(
                f"unsupported path {shown!r} in the {self.context} context; "
                f"supported: {', '.join(allowed)}",
                first,
            )
        return getter

    def resolve(self, dotted: str, key: str | None) -> Getter | None:
        if dotted == "resource.attributes" and key is not None:
            self.resource_keys.add(key)
            r = 2 if self.context == "span" else 3
            return lambda c: _attr(c[r], key)
        if self.context == "span":
            name = dotted.removeprefix("span.")
            if name == "attributes" and key is not None:
                self.span_keys.add(key)
                return lambda c: _attr(c[1], key)
            return None if key is not None else _span_getter(name, 0)
        # span-event context
        if dotted.startswith("span."):
            name = dotted.removeprefix("span.")
            if name == "attributes" and key is not None:
                self.span_keys.add(key)
                return lambda c: _attr(c[2], key)
            return None if key is not None else _span_getter(name, 1)
        name = dotted.removeprefix("spanevent.")
        if name == "attributes" and key is not None:
            return lambda c: _event_attr(c[0], key)
        if key is not None:
            return None
        if name == "name":
            return lambda c: c[0].name
        if name == "time_unix_nano":
            return lambda c: c[0].time_unix_nano
        return None


def compile_condition(text: str, context: str = "span") -> CompiledCondition:
    """Parse one condition for the "span" or "spanevent" context; OTTLError if unsupported."""
    if context not in ("span", "spanevent"):
        raise ValueError(f"unknown OTTL context {context!r}")
    parser = _Parser(text, context)
    test = parser.parse()
    return CompiledCondition(text, test, parser.span_keys, parser.resource_keys)
