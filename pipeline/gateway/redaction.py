"""PII redaction for the gateway, configured like the Collector's ``redaction`` processor.

The gateway builds a :class:`Redactor` only when a redaction file is configured (no file means
redaction is off).  :meth:`Redactor.redact_request` scrubs an OTLP
``ExportTraceServiceRequest`` in place before its spans leave the gateway: resource, scope,
span, span-event and span-link attributes.

Per attribute, in this order (the Collector's order):

1. key in ``ignored_keys``: left alone (counted as ignored);
2. key not in ``allowed_keys`` and ``allow_all_keys`` is false: attribute removed ("redacted");
3. a string value matching one of ``allowed_values``: left alone (counted as allowed);
4. key matching one of ``blocked_key_patterns``: the whole value masked;
5. otherwise every part of a string value (also strings inside array and kvlist values) that
   matches ``blocked_values`` or a built-in pattern is masked.

A masked part becomes ``****``, or the hex digest of the masked text when ``hash_function``
is set (``sha3`` is SHA3-256, as in the Collector).

Speed: the decision per key is cached; the user's ``blocked_values`` are one compiled
alternation; each built-in is searched only when a cheap substring test says it can match
(``@`` for e-mail, ``-`` for SSN, ``earer`` for bearer tokens); string values found clean
are remembered (bounded set, clean values only), since attribute values repeat a lot; and
a request is not walked at all when the configuration cannot change anything.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError

from pipeline.config.yaml_file import format_path

__all__ = [
    "BUILTIN_PATTERNS",
    "SUMMARY_KEYS",
    "RedactionConfig",
    "RedactionConfigError",
    "RedactionStats",
    "Redactor",
    "load_redaction_config",
]

MASK = "****"

# Diagnostic attributes (names as in the Collector).
REDACTED_KEYS = "redaction.redacted.keys"
REDACTED_COUNT = "redaction.redacted.count"
MASKED_KEYS = "redaction.masked.keys"
MASKED_COUNT = "redaction.masked.count"
ALLOWED_KEYS = "redaction.allowed.keys"
ALLOWED_COUNT = "redaction.allowed.count"
IGNORED_COUNT = "redaction.ignored.count"
SUMMARY_KEYS = frozenset(
    {
        REDACTED_KEYS,
        REDACTED_COUNT,
        MASKED_KEYS,
        MASKED_COUNT,
        ALLOWED_KEYS,
        ALLOWED_COUNT,
        IGNORED_COUNT,
    }
)

# ---------------------------------------------------------------------------------------------
# Regular expressions: Collector configs are written for Go's RE2; accept the common RE2-isms.
# ---------------------------------------------------------------------------------------------

_LEADING_FLAGS = re.compile(r"\(\?([aiLmsux]+)\)")
_NAMED_GROUP = re.compile(r"(?<!\\)((?:\\\\)*)\(\?P?<([A-Za-z_]\w*)>")
_END_OF_TEXT = re.compile(r"(?<!\\)((?:\\\\)*)\\z")
_BACKREFERENCE = re.compile(r"(?<!\\)(?:\\\\)*(?:\\[1-9]|\(\?P=|\(\?\()")


def _normalize_regex(pattern: str) -> str:
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


def _checked_regex(pattern: str) -> str:
    if _BACKREFERENCE.search(pattern):
        raise ValueError(
            f"regular expression {pattern!r} uses a backreference or conditional group, "
            "which is not supported (RE2, the Collector's syntax, has none either)"
        )
    try:
        re.compile(_normalize_regex(pattern))
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return pattern


def _checked_value_regex(pattern: str) -> str:
    _checked_regex(pattern)
    if re.fullmatch(_normalize_regex(pattern), ""):
        raise ValueError(
            f"regular expression {pattern!r} matches the empty string, so it would mask "
            "between every character; make it match at least one character"
        )
    return pattern


def _none_as_empty(value: Any) -> Any:
    """``key:`` with nothing under it (e.g. every item commented out) is an empty list."""
    return [] if value is None else value


def _combine(patterns: Iterable[str]) -> re.Pattern[str] | None:
    parts = [f"(?:{_normalize_regex(p)})" for p in patterns]
    return re.compile("|".join(parts)) if parts else None


# ---------------------------------------------------------------------------------------------
# Built-in value patterns.  Digits are [0-9] (``\d`` would accept every Unicode digit).
# ---------------------------------------------------------------------------------------------

_LOCAL = r"[A-Za-z0-9_.%+\-]"

# Each built-in starts with a character class, so a search skips ahead in C to where a match
# can begin; the "not preceded by" checks come right after that first character.
BUILTIN_PATTERNS: dict[str, str] = {
    # 13-19 digits, single spaces or dashes between them allowed, not part of a longer digit
    # run; masked only if the Luhn check holds (done in code).
    "credit_card": r"[0-9](?<![0-9].)(?:[ \-]?[0-9]){12,18}(?![0-9])",
    # A match starts only at the beginning of a run of local-part characters, which keeps
    # the search linear on long strings.
    "email": (
        rf"{_LOCAL}(?<!{_LOCAL}.){_LOCAL}*@"
        r"[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"
    ),
    # ddd-dd-dddd minus the never-issued forms: area 000, 666, 900-999; group 00; serial 0000.
    "us_ssn": (
        r"[0-8](?<![0-9].)[0-9]{2}(?<!000)(?<!666)-(?!00)[0-9]{2}-(?!0000)[0-9]{4}(?![0-9])"
    ),
    # The RFC 6750 b64token after the scheme word (Bearer, bearer or BEARER); group 1, the
    # token, is what gets masked.
    "bearer_token": r"[Bb](?<![A-Za-z0-9_].)(?:earer|EARER)[ \t]+([A-Za-z0-9\-._~+/]+=*)",
}
BuiltinName = Literal["credit_card", "email", "us_ssn", "bearer_token"]

# How a match of a value pattern is turned into a masked span.
_PLAIN, _CARD, _BEARER = range(3)
_BUILTIN_KIND = {"credit_card": _CARD, "email": _PLAIN, "us_ssn": _PLAIN, "bearer_token": _BEARER}
# Substrings a value must contain for the pattern to be worth searching (cheap `in` tests).
_BUILTIN_NEEDLES: dict[str, tuple[str, ...] | None] = {
    "credit_card": None,
    "email": ("@",),
    "us_ssn": ("-",),
    "bearer_token": ("earer", "EARER"),
}


# ASCII digit -> ASCII digit of the digit sum of twice it, for the doubled Luhn positions.
_LUHN_DOUBLE = bytes.maketrans(b"0123456789", b"0246813579")


def luhn_valid(digits: str) -> bool:
    """Luhn checksum of a string of ASCII digits."""
    data = digits.encode("ascii")[::-1]
    total = sum(data[0::2]) + sum(data[1::2].translate(_LUHN_DOUBLE)) - 48 * len(data)
    return total % 10 == 0


def _luhn_span(text: str) -> int:
    """Length of the longest prefix of a card candidate that is Luhn-valid, or 0.

    The candidate is cut only at a separator, so ``4111 1111 1111 1111 5`` still finds the
    card in front of the trailing group.
    """
    digits = text.replace(" ", "").replace("-", "")
    if luhn_valid(digits):
        return len(text)
    for cut in range(len(text) - 1, 0, -1):
        if text[cut] in " -":
            prefix = text[:cut]
            digits = prefix.replace(" ", "").replace("-", "")
            if len(digits) < 13:
                break
            if luhn_valid(digits):
                return cut
    return 0


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

_KeyList = Annotated[list[str], BeforeValidator(_none_as_empty)]
_RegexList = Annotated[
    list[Annotated[str, AfterValidator(_checked_regex)]], BeforeValidator(_none_as_empty)
]
_ValueRegexList = Annotated[
    list[Annotated[str, AfterValidator(_checked_value_regex)]], BeforeValidator(_none_as_empty)
]


class RedactionConfig(BaseModel):
    """The Collector ``redaction`` processor's keys, plus spansieve's ``builtin_patterns``."""

    model_config = ConfigDict(extra="forbid")

    allow_all_keys: bool = False
    allowed_keys: _KeyList = []
    ignored_keys: _KeyList = []
    blocked_key_patterns: _RegexList = []
    blocked_values: _ValueRegexList = []
    allowed_values: _RegexList = []
    hash_function: Literal["none", "md5", "sha1", "sha3"] = "none"
    # The Collector's default (an empty summary) adds no attributes, i.e. "silent".
    summary: Literal["debug", "info", "silent"] = "silent"
    builtin_patterns: Annotated[list[BuiltinName], BeforeValidator(_none_as_empty)] = []


_FIELD_HINTS = {
    "allow_all_keys": "true or false",
    "allowed_keys": "a list of attribute keys (strings)",
    "ignored_keys": "a list of attribute keys (strings)",
    "blocked_key_patterns": "a list of regular expressions matched against attribute keys",
    "blocked_values": "a list of regular expressions matched against string values",
    "allowed_values": "a list of regular expressions matched against string values",
    "hash_function": "one of none, md5, sha1, sha3",
    "summary": "one of debug, info, silent",
    "builtin_patterns": "a list of: " + ", ".join(BUILTIN_PATTERNS),
}
_REGEX_NOTE = " (Python re syntax; RE2 habits like a leading (?i), (?<name>...) and \\z work)"
for _field in ("blocked_key_patterns", "blocked_values", "allowed_values"):
    _FIELD_HINTS[_field] += _REGEX_NOTE
_KEYS_HINT = "the keys " + ", ".join(RedactionConfig.model_fields)


@dataclass(frozen=True)
class ConfigProblem:
    line: int | None
    field: str
    message: str
    allowed: str


class RedactionConfigError(ValueError):
    """A redaction file that cannot be used; the message names file, line, field and fix."""

    def __init__(self, path: Path | str, problems: Sequence[ConfigProblem]):
        self.path = str(path)
        self.problems = list(problems)
        first = self.problems[0]
        self.line = first.line
        self.field = first.field
        lines = []
        for problem in self.problems:
            where = f"{self.path}, line {problem.line}" if problem.line else self.path
            field = f": field '{problem.field}'" if problem.field else ""
            lines.append(f"{where}{field}: {problem.message}. Allowed: {problem.allowed}.")
        header = (
            "invalid redaction config"
            if len(lines) == 1
            else (f"invalid redaction config ({len(lines)} problems)")
        )
        super().__init__(header + ": " + "\n".join(lines))


def _mapping_get(node: yaml.Node, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                return key_node, value_node
    return None


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _node_for(root: yaml.Node, loc: Sequence[int | str], key_wanted: bool) -> yaml.Node:
    """Deepest YAML node on the path ``loc`` (a pydantic error location)."""
    node = root
    for step in loc:
        if isinstance(step, int) and isinstance(node, yaml.SequenceNode):
            if 0 <= step < len(node.value):
                node = node.value[step]
                continue
            break
        found = _mapping_get(node, str(step))
        if found is None:
            break
        key_node, value_node = found
        node = key_node if key_wanted and step == loc[-1] else value_node
    return node


def _problems_from(exc: ValidationError, root: yaml.Node) -> list[ConfigProblem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        if error["type"] == "extra_forbidden":
            node = _node_for(root, loc, key_wanted=True)
            problems.append(
                ConfigProblem(_line(node), format_path(loc), f"unknown key {loc[-1]!r}", _KEYS_HINT)
            )
            continue
        node = _node_for(root, loc, key_wanted=False)
        message = error["msg"].removeprefix("Value error, ")
        hint = _FIELD_HINTS.get(str(loc[0]) if loc else "", _KEYS_HINT)
        problems.append(ConfigProblem(_line(node), format_path(loc), message, hint))
    return problems


def _redaction_section(path: Path, root: yaml.Node) -> tuple[yaml.Node, str]:
    """The node holding the redaction keys, and a prefix for field names."""
    found = _mapping_get(root, "processors")
    if found is None:
        return root, ""
    key_node, processors = found
    if isinstance(processors, yaml.MappingNode):
        for name_node, value_node in processors.value:
            name = name_node.value if isinstance(name_node, yaml.ScalarNode) else ""
            if name == "redaction" or name.startswith("redaction/"):
                return value_node, f"processors.{name}."
    raise RedactionConfigError(
        path,
        [
            ConfigProblem(
                _line(key_node),
                "processors",
                "a collector config needs a processor named 'redaction' or 'redaction/<name>'",
                "a bare mapping of redaction keys, or a collector config with processors.redaction",
            )
        ],
    )


def load_redaction_config(path: Path) -> RedactionConfig:
    """Read a redaction YAML file: a bare mapping of the keys, or a Collector config.

    In a Collector config the first processor named ``redaction`` or ``redaction/<name>``
    is used.  Every problem raises :class:`RedactionConfigError` naming file, line and field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RedactionConfigError(
            path,
            [
                ConfigProblem(
                    None, "", f"cannot read the file ({exc})", "a readable UTF-8 YAML file"
                )
            ],
        ) from exc
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise RedactionConfigError(
                path,
                [
                    ConfigProblem(
                        None,
                        "",
                        "the file is empty (to turn redaction off, configure no file)",
                        "a mapping of redaction keys",
                    )
                ],
            )
        section, prefix = _redaction_section(path, root)
        data = loader.construct_document(section)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise RedactionConfigError(
            path, [ConfigProblem(line, "", f"YAML syntax error: {exc.problem}", "valid YAML")]
        ) from exc
    except yaml.YAMLError as exc:
        raise RedactionConfigError(
            path, [ConfigProblem(None, "", f"YAML error: {exc}", "valid YAML")]
        ) from exc
    finally:
        loader.dispose()

    if data is None:  # `redaction:` with no keys: the Collector's defaults
        data = {}
    if not isinstance(data, dict):
        raise RedactionConfigError(
            path,
            [
                ConfigProblem(
                    _line(section),
                    prefix.rstrip(".") or "(top level)",
                    f"expected a mapping of redaction keys, got {type(data).__name__}",
                    _KEYS_HINT,
                )
            ],
        )
    duplicates = _duplicate_keys(section)
    if duplicates:
        raise RedactionConfigError(
            path,
            [
                ConfigProblem(line, prefix + key, "key given more than once", "each key once")
                for key, line in duplicates
            ],
        )
    try:
        return RedactionConfig.model_validate(data)
    except ValidationError as exc:
        problems = _problems_from(exc, section)
        if prefix:
            problems = [
                ConfigProblem(p.line, prefix + p.field, p.message, p.allowed) for p in problems
            ]
        raise RedactionConfigError(path, problems) from None


def _duplicate_keys(node: yaml.Node) -> list[tuple[str, int]]:
    if not isinstance(node, yaml.MappingNode):
        return []
    seen: set[str] = set()
    duplicates = []
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            if key_node.value in seen:
                duplicates.append((key_node.value, _line(key_node)))
            seen.add(key_node.value)
    return duplicates


# ---------------------------------------------------------------------------------------------
# The redactor
# ---------------------------------------------------------------------------------------------


@dataclass
class RedactionStats:
    """Totals of one request, for metrics."""

    redacted_keys: int = 0  # attributes removed because their key is not allowed
    masked_values: int = 0  # attributes whose value was (partly) masked


# Key decisions, cached per key.
_KEEP, _IGNORE, _REMOVE, _MASK_KEY, _VALUES = range(5)
_KEY_CACHE_LIMIT = 8192
_CLEAN_CACHE_LIMIT = 16384
_CLEAN_TEXT_LIMIT = 256
_ALLOWED = object()  # "value matched allowed_values" marker


def _value_text(value: Any) -> str:
    """Text form of a non-string AnyValue (what a hash of a masked value is taken over)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return repr(value.double_value)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return json.dumps(_plain(value), separators=(",", ":"), sort_keys=False)


def _plain(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_plain(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    if kind in ("bool_value", "int_value", "double_value", "string_value"):
        return getattr(value, kind)
    return _value_text(value)


class Redactor:
    """Applies one :class:`RedactionConfig` to OTLP trace requests, in place."""

    def __init__(self, config: RedactionConfig):
        self.config = config
        self._allow_all = config.allow_all_keys
        self._allowed_keys = frozenset(config.allowed_keys) | SUMMARY_KEYS
        self._ignored_keys = frozenset(config.ignored_keys)
        self._key_rx = _combine(config.blocked_key_patterns)
        self._allowed_rx = _combine(config.allowed_values)
        self._summary = config.summary
        self._debug = config.summary == "debug"
        # With a summary on, check allowed_values before anything else like the Collector,
        # so redaction.allowed.count means the same; silent, check it only on a hit.
        self._allowed_first = self._allowed_rx is not None and config.summary != "silent"

        # Value matchers in priority order: the user's blocked_values (one alternation), then
        # the built-ins.  Each is searched separately (keeping the regex engine's fast scan
        # for a pattern's first character) and the leftmost match wins, ties going to the
        # earlier matcher: the same result as one big alternation, without its per-character
        # cost, and a card candidate failing the Luhn check simply does not count.
        self._user_rx = _combine(config.blocked_values)
        self._builtins: list[tuple[re.Pattern[str], int, tuple[str, ...] | None]] = [
            (re.compile(BUILTIN_PATTERNS[name]), _BUILTIN_KIND[name], _BUILTIN_NEEDLES[name])
            for name in dict.fromkeys(config.builtin_patterns)  # de-duplicated, in order
        ]

        hash_name = config.hash_function
        self._hash: Callable[[bytes], Any] | None = {
            "none": None,
            "md5": hashlib.md5,
            "sha1": hashlib.sha1,
            "sha3": hashlib.sha3_256,
        }[hash_name]

        self._values_matter = (
            self._user_rx is not None or bool(self._builtins) or self._allowed_first
        )
        self._noop = (
            self._allow_all
            and not self._ignored_keys
            and self._key_rx is None
            and not self._values_matter
        )
        self._key_cache: dict[str, int] = {}
        # String values seen to need no masking.  Attribute values repeat a lot across spans
        # (methods, routes, peers, statements), so this skips most regex work.  Only clean
        # values are kept, never one that contained something to mask.
        self._clean: set[str] = set()

    # -- masking ---------------------------------------------------------------------------

    def _replacement(self, text: str) -> str:
        if self._hash is None:
            return MASK
        return self._hash(text.encode("utf-8", "surrogatepass")).hexdigest()

    def _mask_text(self, text: str) -> Any:
        """``text`` with blocked parts masked; None if unchanged, _ALLOWED if allowed."""
        allowed_rx = self._allowed_rx
        if self._allowed_first and allowed_rx.search(text):  # type: ignore[union-attr]
            return _ALLOWED
        found = None
        if self._user_rx is not None:
            match = self._user_rx.search(text)
            if match is not None:
                found = [(self._user_rx, _PLAIN, match)]
        for rx, kind, needles in self._builtins:
            if needles is not None:
                for needle in needles:
                    if needle in text:
                        break
                else:
                    continue
            match = rx.search(text)
            if match is not None:
                if found is None:
                    found = [(rx, kind, match)]
                else:
                    found.append((rx, kind, match))
        if found is None:
            return None
        if allowed_rx is not None and not self._allowed_first and allowed_rx.search(text):
            return _ALLOWED
        return self._rewrite(text, found)

    def _rewrite(
        self, text: str, found: list[tuple[re.Pattern[str], int, re.Match[str]]]
    ) -> str | None:
        """Mask the matches of the matchers in ``found`` (each with its first match)."""
        active = [entry[0] for entry in found]
        kinds = [entry[1] for entry in found]
        nexts: list[re.Match[str] | None] = [entry[2] for entry in found]
        pieces: list[str] = []
        done = 0  # text[:done] is already in pieces
        pos = 0  # matches must start here or later
        count = len(nexts)
        while True:
            best = None
            best_index = 0
            for index in range(count):
                match = nexts[index]
                if match is None:
                    continue
                if match.start() < pos:
                    match = nexts[index] = active[index].search(text, pos)
                    if match is None:
                        continue
                if best is None or match.start() < best.start():
                    best = match
                    best_index = index
            if best is None:
                break
            start, end = best.span()
            kind = kinds[best_index]
            if kind == _CARD:
                end = start + _luhn_span(best.group())
            if end == start:
                # An empty match, or a card number failing Luhn: no match at this position.
                nexts[best_index] = active[best_index].search(text, start + 1)
                continue
            pos = best.end() if kind != _CARD else end
            if kind == _BEARER:
                start, end = best.span(1)
            pieces.append(text[done:start])
            pieces.append(self._replacement(text[start:end]))
            done = end
        if not pieces:
            return None
        pieces.append(text[done:])
        return "".join(pieces)

    def _mask_nested(self, values: Any) -> tuple[bool, bool]:
        """Mask strings inside an array's AnyValues; (anything masked, anything allowed)."""
        masked = allowed = False
        for item in values:
            kind = item.WhichOneof("value")
            if kind == "string_value":
                result = self._mask_text(item.string_value)
                if result is None:
                    continue
                if result is _ALLOWED:
                    allowed = True
                else:
                    item.string_value = result
                    masked = True
            elif kind == "array_value":
                inner_masked, inner_allowed = self._mask_nested(item.array_value.values)
                masked |= inner_masked
                allowed |= inner_allowed
            elif kind == "kvlist_value":
                inner_masked, inner_allowed = self._mask_nested(
                    entry.value for entry in item.kvlist_value.values
                )
                masked |= inner_masked
                allowed |= inner_allowed
        return masked, allowed

    # -- keys ------------------------------------------------------------------------------

    def _classify(self, key: str) -> int:
        if key in self._ignored_keys:
            action = _IGNORE
        elif not self._allow_all and key not in self._allowed_keys:
            action = _REMOVE
        elif self._key_rx is not None and self._key_rx.search(key):
            action = _MASK_KEY
        elif self._values_matter:
            action = _VALUES
        else:
            action = _KEEP
        cache = self._key_cache
        if len(cache) >= _KEY_CACHE_LIMIT:
            cache.clear()
        cache[key] = action
        return action

    # -- attribute maps --------------------------------------------------------------------

    def _redact_attributes(self, attributes: Any, stats: RedactionStats) -> None:
        if not attributes:
            return
        cache = self._key_cache
        clean = self._clean
        removed: list[int] | None = None
        removed_keys: list[str] = []
        masked_keys: list[str] = []
        allowed_keys: list[str] = []
        ignored = 0
        for index, kv in enumerate(attributes):
            key = kv.key
            action = cache.get(key)
            if action is None:
                action = self._classify(key)
            if action == _KEEP:
                continue
            if action == _VALUES:
                value = kv.value
                text = value.string_value  # "" unless the value is a (non-empty) string
                if text:
                    if text in clean:
                        continue
                    result = self._mask_text(text)
                    if result is None:
                        if len(text) <= _CLEAN_TEXT_LIMIT:
                            if len(clean) >= _CLEAN_CACHE_LIMIT:
                                clean.clear()
                            clean.add(text)
                    elif result is _ALLOWED:
                        allowed_keys.append(key)
                    else:
                        value.string_value = result
                        masked_keys.append(key)
                    continue
                kind = value.WhichOneof("value")
                if kind == "array_value":
                    masked, allowed = self._mask_nested(value.array_value.values)
                    if masked:
                        masked_keys.append(key)
                    elif allowed:
                        allowed_keys.append(key)
                elif kind == "kvlist_value":
                    masked, allowed = self._mask_nested(
                        entry.value for entry in value.kvlist_value.values
                    )
                    if masked:
                        masked_keys.append(key)
                    elif allowed:
                        allowed_keys.append(key)
            elif action == _REMOVE:
                if removed is None:
                    removed = []
                removed.append(index)
                removed_keys.append(key)
            elif action == _MASK_KEY:
                value = kv.value
                if value.WhichOneof("value") == "string_value":
                    text = value.string_value
                    if self._allowed_rx is not None and self._allowed_rx.search(text):
                        allowed_keys.append(key)
                        continue
                else:
                    text = _value_text(value) if self._hash is not None else ""
                value.string_value = self._replacement(text)
                masked_keys.append(key)
            else:  # _IGNORE
                ignored += 1
        if removed is not None:
            for index in reversed(removed):
                del attributes[index]
        stats.redacted_keys += len(removed_keys)
        stats.masked_values += len(masked_keys)
        if self._summary != "silent" and (removed_keys or masked_keys or allowed_keys or ignored):
            self._add_summary(attributes, removed_keys, masked_keys, allowed_keys, ignored)

    def _add_summary(
        self,
        attributes: Any,
        removed_keys: list[str],
        masked_keys: list[str],
        allowed_keys: list[str],
        ignored: int,
    ) -> None:
        """Add (or merge into existing) diagnostic attributes, like the Collector."""
        existing = {kv.key: kv for kv in attributes if kv.key in SUMMARY_KEYS}

        def put_keys(name: str, keys: list[str]) -> None:
            kv = existing.get(name)
            if kv is None:
                kv = attributes.add(key=name)
            elif kv.value.string_value:
                keys = keys + kv.value.string_value.split(",")
            kv.value.string_value = ",".join(sorted(keys))

        def put_count(name: str, count: int) -> None:
            kv = existing.get(name)
            if kv is None:
                kv = attributes.add(key=name)
            else:
                count += kv.value.int_value
            kv.value.int_value = count

        for keys, keys_name, count_name in (
            (removed_keys, REDACTED_KEYS, REDACTED_COUNT),
            (masked_keys, MASKED_KEYS, MASKED_COUNT),
            (allowed_keys, ALLOWED_KEYS, ALLOWED_COUNT),
        ):
            if keys:
                if self._debug:
                    put_keys(keys_name, keys)
                put_count(count_name, len(keys))
        if ignored:
            put_count(IGNORED_COUNT, ignored)

    # -- requests --------------------------------------------------------------------------

    def redact_request(self, request: Any) -> RedactionStats:
        """Scrub an ``ExportTraceServiceRequest`` (or ``TracesData``) in place."""
        stats = RedactionStats(0, 0)
        if self._noop:
            return stats
        redact = self._redact_attributes
        for resource_spans in request.resource_spans:
            redact(resource_spans.resource.attributes, stats)
            for scope_spans in resource_spans.scope_spans:
                redact(scope_spans.scope.attributes, stats)
                for span in scope_spans.spans:
                    redact(span.attributes, stats)
                    for event in span.events:
                        redact(event.attributes, stats)
                    for link in span.links:
                        redact(link.attributes, stats)
        return stats
