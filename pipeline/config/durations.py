"""Go durations ("1.5s", "100ms", "1h30m", "-250us"): one exact parser, one formatter.

The grammar is Go's ``time.ParseDuration``: an optional sign, then one or more decimal
numbers each followed by a unit (ns, us, µs, μs, ms, s, m, h), e.g. "1h2m3.5s"; "0" alone
needs no unit. Surrounding whitespace is ignored (every caller strips it anyway).

Values are integer nanoseconds, exact: "1.2s" is 1 200 000 000 ns, never 1 199 999 999 as
float arithmetic would give; digits below a nanosecond are dropped (toward zero) once the
whole duration is added up. As in Go, a duration longer than an int64 of nanoseconds
(~292 years) is an error.

What a caller accepts around the grammar stays with the caller: plain numbers meaning
seconds in config files (``pipeline.config.models.parse_duration``), negative clock skews in
topologies, non-negative query parameters (``pipeline.query.params.duration_param``).
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = [
    "MAX_NANOS",
    "NANOS_PER_HOUR",
    "NANOS_PER_MICRO",
    "NANOS_PER_MILLI",
    "NANOS_PER_MINUTE",
    "NANOS_PER_SECOND",
    "UNITS",
    "format_go_duration",
    "nanos_from_seconds",
    "parse_go_duration",
    "to_micros",
    "to_seconds",
]

NANOS_PER_MICRO = 1_000
NANOS_PER_MILLI = 1_000_000
NANOS_PER_SECOND = 1_000_000_000
NANOS_PER_MINUTE = 60 * NANOS_PER_SECOND
NANOS_PER_HOUR = 60 * NANOS_PER_MINUTE
MAX_NANOS = 2**63 - 1  # Go's time.Duration is an int64 of nanoseconds

# Both micro signs (U+00B5 MICRO SIGN and U+03BC GREEK SMALL LETTER MU) are accepted, as in Go.
UNITS: dict[str, int] = {
    "ns": 1,
    "us": NANOS_PER_MICRO,
    "\u00b5s": NANOS_PER_MICRO,
    "\u03bcs": NANOS_PER_MICRO,
    "ms": NANOS_PER_MILLI,
    "s": NANOS_PER_SECOND,
    "m": NANOS_PER_MINUTE,
    "h": NANOS_PER_HOUR,
}
_UNIT_NAMES = "units: ns, us, \u00b5s, ms, s, m, h"
_MAX_DIGITS = 100  # per number; Python's int() refuses very long digit strings anyway

# A number ("12", "1.5", "1.", ".5"; ASCII digits only) and then, as in Go, everything up to
# the next digit or dot is the unit.
_COMPONENT = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")


def parse_go_duration(text: str) -> int:
    """Nanoseconds (signed) of a Go duration string; ``ValueError`` "invalid duration ...".

    >>> parse_go_duration("1h2m3.5s"), parse_go_duration("-100ms"), parse_go_duration("0")
    (3723500000000, -100000000, 0)
    """
    rest = text.strip()
    negative = rest[:1] == "-"
    if rest[:1] in ("+", "-"):
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(f"invalid duration {text!r}: no number and unit")
    whole_nanos = 0  # sum of the integer parts times their units
    fraction_nanos = 0  # sum of the fractional parts, over a common denominator
    denominator = 1
    position = 0
    while position < len(rest):
        match = _COMPONENT.match(rest, position)
        assert match is not None  # every part of the pattern may be empty
        whole, fraction, unit = match.groups()
        if not whole and not fraction:
            where = rest[position:] or rest
            raise ValueError(f"invalid duration {text!r}: no number before {where!r}")
        if not unit:
            number = rest[position : match.end()]
            raise ValueError(
                f"invalid duration {text!r}: missing unit after {number!r} ({_UNIT_NAMES})"
            )
        if len(whole) + len(fraction or "") > _MAX_DIGITS:
            raise ValueError(
                f"invalid duration {text!r}: a number of more than {_MAX_DIGITS} digits"
            )
        scale = UNITS.get(unit)
        if scale is None:
            raise ValueError(f"invalid duration {text!r}: unknown unit {unit!r} ({_UNIT_NAMES})")
        whole_nanos += int(whole or "0") * scale
        if fraction:
            digits = 10 ** len(fraction)
            if digits > denominator:
                fraction_nanos *= digits // denominator
                denominator = digits
            fraction_nanos += int(fraction) * scale * (denominator // digits)
        position = match.end()
    nanos = whole_nanos + fraction_nanos // denominator  # exact, then truncated (all >= 0)
    if nanos > MAX_NANOS:
        raise ValueError(
            f"invalid duration {text!r}: longer than Go's longest duration "
            f"({format_go_duration(MAX_NANOS)}, about 292 years)"
        )
    return -nanos if negative else nanos


def format_go_duration(nanos: int) -> str:
    """The text Go's ``Duration.String()`` gives: "1h2m3.5s", "1m30s", "100ms", "1.5µs", "0s".

    ``parse_go_duration`` reads every such text back to the same number.
    """
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    size = abs(nanos)
    if size < NANOS_PER_MICRO:
        return f"{sign}{size}ns"
    if size < NANOS_PER_MILLI:
        return f"{sign}{_decimal(size, NANOS_PER_MICRO)}\u00b5s"
    if size < NANOS_PER_SECOND:
        return f"{sign}{_decimal(size, NANOS_PER_MILLI)}ms"
    hours, size = divmod(size, NANOS_PER_HOUR)
    minutes, size = divmod(size, NANOS_PER_MINUTE)
    seconds = f"{_decimal(size, NANOS_PER_SECOND)}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return f"{sign}{seconds}"


def _decimal(value: int, scale: int) -> str:
    """``value / scale`` as a decimal without trailing zeros ("1.5", "2"); scale is 10**k."""
    whole, fraction = divmod(value, scale)
    if not fraction:
        return str(whole)
    digits = f"{fraction:0{len(str(scale)) - 1}d}".rstrip("0")
    return f"{whole}.{digits}"


def to_seconds(nanos: int) -> float:
    """Seconds as a float, correctly rounded (``100_000_000`` -> ``0.1``)."""
    return nanos / NANOS_PER_SECOND


def to_micros(nanos: int) -> int:
    """Whole microseconds, truncated toward zero (Go's ``Duration.Microseconds()``)."""
    micros = abs(nanos) // NANOS_PER_MICRO
    return -micros if nanos < 0 else micros


def nanos_from_seconds(seconds: float) -> int:
    """The nearest whole nanosecond to a number of seconds (``0.1`` -> ``100_000_000``).

    Exact: the float's own value is rounded, half to even; ``ValueError`` or
    ``OverflowError`` for NaN and infinities.
    """
    return round(Fraction(seconds) * NANOS_PER_SECOND)
