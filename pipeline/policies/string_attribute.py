"""string_attribute: exact or regex match of a string attribute (span or resource).

As the collector: a span attribute is only tested when its string value is non-empty
(``Str()`` of a non-string value is ""), a resource attribute always (so a regex that
matches "" matches a non-string resource attribute). Regexes are unanchored searches
(Go ``MatchString``) compiled with Python ``re``; RE2-only syntax is not available and
Python-only syntax (look-around, back-references) is accepted. Exact values that are ""
are ignored, as the collector does. Regex results are cached per attribute value
(``cache_max_size`` entries, default 128).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from pipeline.policies.base import AttributePolicy

DEFAULT_CACHE_SIZE = 128


class StringAttribute(AttributePolicy):
    def __init__(
        self,
        name: str,
        key: str,
        values: Iterable[str],
        enabled_regex_matching: bool = False,
        cache_max_size: int = 0,
        invert_match: bool = False,
    ) -> None:
        super().__init__(name, key, invert_match)
        values = list(values)
        self.regex = enabled_regex_matching
        if enabled_regex_matching:
            self._patterns = [re.compile(v) for v in values]
            self._cache: dict[str, bool] = {}
            self._cache_size = cache_max_size if cache_max_size > 0 else DEFAULT_CACHE_SIZE
            self.matches = self._regex_match
        else:
            self._values = frozenset(v for v in values if v)
            self.matches = self._values.__contains__
            # an exact match needs one of the values' bytes in the trace (not just the key)
            self.needles = tuple(v.encode() for v in self._values)

    def _regex_match(self, text: str) -> bool:
        hit = self._cache.get(text)
        if hit is None:
            hit = any(p.search(text) for p in self._patterns)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[text] = hit
        return hit

    def on_resource(self, value: AnyValue) -> bool:
        return self.matches(value.string_value)

    def on_span(self, value: AnyValue) -> bool:
        text = value.string_value
        return bool(text) and self.matches(text)
