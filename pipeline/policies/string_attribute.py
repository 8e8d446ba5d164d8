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
from typing import Literal

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from pydantic import Field, ValidationInfo, field_validator

from pipeline.config.models import NonEmptyStr, StrictModel, custom_error
from pipeline.policies.base import AttributePolicy
from pipeline.policies.registry import BuildContext, PolicyModel, register

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


class StringAttributeCfg(StrictModel):
    key: NonEmptyStr
    enabled_regex_matching: bool = False
    values: list[str] = Field(min_length=1)
    cache_max_size: int = Field(0, ge=0, description="regex result cache; 0 = 128")
    invert_match: bool = False

    @field_validator("values")
    @classmethod
    def _regexes_compile(cls, values: list[str], info: ValidationInfo) -> list[str]:
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


class StringAttributePolicy(PolicyModel):
    type: Literal["string_attribute"]
    string_attribute: StringAttributeCfg


def build(config: StringAttributePolicy, context: BuildContext) -> StringAttribute:
    c = config.string_attribute
    return StringAttribute(
        config.name, c.key, c.values, c.enabled_regex_matching, c.cache_max_size, c.invert_match
    )


register(StringAttributePolicy, build)
