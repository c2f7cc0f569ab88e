"""Thresholds as runbooks write them: comparison words and sizes.

Comparison words are the ones the existing ``the query ... returns {comparison} {value}``
step uses: ``more than``, ``at least``, ``exactly``, ``at most``, ``less than``.

Sizes follow PostgreSQL's ``pg_size_pretty`` / ``pg_size_bytes``: ``kB``, ``MB``, ``GB``
and ``TB`` are multiples of 1024, so "smaller than 50 GB" means what a DBA reading
``pg_size_pretty(pg_database_size(...))`` sees. ``KiB``/``MiB``/``GiB``/``TiB`` are
accepted as the same units.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from .postgres import COMPARATORS

COMPARISON_WORDS: tuple[str, ...] = tuple(COMPARATORS)
# For sentence regexes: `(?P<comparison>more than|at least|...)`.
COMPARISON_PATTERN = "|".join(re.escape(w) for w in COMPARISON_WORDS)

_SIZE_UNITS = {
    "b": 0, "byte": 0, "bytes": 0,
    "kb": 1, "kib": 1,
    "mb": 2, "mib": 2,
    "gb": 3, "gib": 3,
    "tb": 4, "tib": 4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*$")


def comparator(comparison: str) -> Callable[[float, float], bool]:
    """The operator behind a comparison word; ValueError naming the valid words otherwise."""
    compare = COMPARATORS.get(comparison.strip())
    if compare is None:
        raise ValueError(f"unknown comparison {comparison!r}; use one of: {', '.join(COMPARISON_WORDS)}")
    return compare


def compare(measured: float, comparison: str, value: float) -> bool:
    """``measured <comparison> value``; NaN never holds."""
    if math.isnan(measured):
        return False
    return comparator(comparison)(measured, value)


def parse_size(text: str) -> int:
    """``50 GB`` → bytes (1024-based, as PostgreSQL prints sizes); ValueError naming the text otherwise."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (write e.g. 500 MB, 50 GB, 2 TB)")
    number, unit = match.groups()
    power = _SIZE_UNITS.get(unit.lower())
    if power is None:
        raise ValueError(f"unknown unit {unit!r} in size {text!r} (use B, kB, MB, GB or TB)")
    return int(float(number) * 1024**power)


def format_size(size: int) -> str:
    """Bytes as ``pg_size_pretty`` would show them, roughly: ``12 MB``, ``3.5 GB``."""
    value = float(size)
    for unit in ("bytes", "kB", "MB", "GB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "bytes" or value >= 10 else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB" if value < 10 else f"{value:.0f} TB"


