"""WAL archive arithmetic for point-in-time recovery (pure; drills/physical/ does the I/O)."""

from __future__ import annotations

import re

# A WAL segment file name: timeline, log file and segment, 8 upper-case hex digits each.
SEGMENT = re.compile(r"[0-9A-F]{24}")


def first_missing(names: list[str], first: str, last: str, segment_bytes: int) -> str | None:
    """The first segment absent from ``names`` between ``first`` and ``last`` (one timeline)."""
    per_log = 0x100000000 // segment_bytes
    present = set(names)

    def number(name: str) -> int:
        return int(name[8:16], 16) * per_log + int(name[16:], 16)

    for n in range(number(first), number(last) + 1):
        name = f"{first[:8]}{n // per_log:08X}{n % per_log:08X}"
        if name not in present:
            return name
    return None
