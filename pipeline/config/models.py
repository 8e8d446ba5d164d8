"""The pydantic building blocks of spansieve's YAML files (policies, topologies, redaction).

* ``StrictModel``: frozen, strict, no unknown keys; an unknown key's error names the keys
  that are allowed, and a non-mapping is refused with the same list;
* ``Duration``: seconds (float) from a Go duration ("30s", "1m30s") or a plain number of
  SECONDS, which is the config files' rule (``parse_duration``); the grammar itself is
  ``pipeline.config.durations``;
* ``custom_error``: the error a model validator raises, pointing at a field below it;
* ``describe_value``: how a YAML value is named in a message ("a list", "'fast'").

``pipeline.config.yaml_file`` turns the validation errors of these models into
``file:line:col: field.path: message`` (and re-exports these names).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pipeline.config.durations import parse_go_duration, to_seconds

__all__ = [
    "Duration",
    "NonEmptyStr",
    "StrictModel",
    "custom_error",
    "describe_value",
    "parse_duration",
]


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

_DURATION_HELP = 'a Go duration like "30s", "500ms", "1m30s" or a number of seconds'


def _duration_error(text: str) -> PydanticCustomError:
    # The whole text goes in through one placeholder, so braces in the value are kept as is.
    return PydanticCustomError("duration", "{text}", {"text": text})


def parse_duration(value: Any, *, signed: bool = False) -> float:
    """Seconds from a Go duration string or a plain number of SECONDS (config files' rule).

    A duration must not be negative unless ``signed`` (the topologies' clock skews).
    Raises ``PydanticCustomError`` (a ``ValueError``) for anything else.
    """
    if isinstance(value, str):
        if not value.strip():
            raise _duration_error(f"expected {_DURATION_HELP}, got an empty string")
        try:
            seconds = to_seconds(parse_go_duration(value))
        except ValueError as exc:
            raise _duration_error(f"{exc}; expected {_DURATION_HELP}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an integer beyond a float's range
            seconds = math.inf
    else:
        raise _duration_error(f"expected {_DURATION_HELP}, got {value!r}")
    if not math.isfinite(seconds) or (seconds < 0 and not signed):
        wanted = "a finite value" if signed else "a finite value >= 0"
        raise _duration_error(f"duration must be {wanted}, got {value!r}")
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
