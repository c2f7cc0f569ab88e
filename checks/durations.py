"""Durations as runbooks write them: ``26h``, ``30 minutes``, ``1h30m``, ``35 days``, ``500 ms``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {
    # Latency limits are written in milliseconds ("answers within 500 ms").
    "ms": 0.001, "msec": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_WHOLE = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*[a-z]+\s*)+$")


def parse_duration(text: str) -> timedelta:
    """Parse ``26h``, ``1h 30m``, ``35 days``; raise ValueError naming the text otherwise."""
    lowered = text.strip().lower()
    if not lowered or not _WHOLE.match(lowered):
        raise ValueError(f"not a duration: {text!r} (write e.g. 26h, 30m, 7d, 1h30m)")
    seconds = 0.0
    for number, unit in _PART.findall(lowered):
        if unit not in _UNITS:
            raise ValueError(f"unknown unit {unit!r} in duration {text!r} (use ms, s, m, h, d or w)")
        seconds += float(number) * _UNITS[unit]
    return timedelta(seconds=seconds)
