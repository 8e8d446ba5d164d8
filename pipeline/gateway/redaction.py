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

The configuration file (the model, its loading and its errors, the RE2-style expressions)
is ``pipeline.gateway.redaction_config``; its names are re-exported here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.gateway.redaction_config import (
    RedactionConfig,
    RedactionConfigError,
    load_redaction_config,
    normalize_regex,
)
from pipeline.wire.otlp import any_value_text

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


def _combine(patterns: Iterable[str]) -> re.Pattern[str] | None:
    parts = [f"(?:{normalize_regex(p)})" for p in patterns]
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
                    text = any_value_text(value) if self._hash is not None else ""
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
