"""What a restored cluster's ``pg_control`` asks of a hot standby (``pg_controldata``'s output).

A standby that replays WAL with hot_standby on needs at least the primary's
``max_connections``, ``max_worker_processes``, ``max_wal_senders``,
``max_prepared_transactions`` and ``max_locks_per_transaction``; with less,
PostgreSQL aborts recovery ("insufficient parameter settings"). The values come
from an untrusted backup, so each is bounded: a huge one would make drillbook's
scratch server ask the host for gigabytes of shared memory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# pg_controldata's label → the server setting it constrains, PostgreSQL's default, and the most
# drillbook grants an untrusted backup (far above any real cluster's, far below a host's memory).
STANDBY_SETTINGS: dict[str, tuple[str, int, int]] = {
    "max_connections setting": ("max_connections", 100, 10_000),
    "max_worker_processes setting": ("max_worker_processes", 8, 1_024),
    "max_wal_senders setting": ("max_wal_senders", 10, 1_024),
    "max_prepared_xacts setting": ("max_prepared_transactions", 0, 10_000),
    "max_locks_per_xact setting": ("max_locks_per_transaction", 64, 10_000),
}
_LINE = re.compile(r"^([^:\n]{1,80}):[ \t]*(.*)$")
MAX_OUTPUT = 64 * 1024  # pg_controldata prints ~3 KB


def parse(text: str) -> dict[str, str]:
    """``label: value`` lines of pg_controldata's output (labels as printed, values stripped)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            fields[match.group(1).strip()] = match.group(2).strip()
    return fields


class TooLarge(ValueError):
    """A setting the backup needs is above what drillbook grants an untrusted backup."""

    def __init__(self, setting: str, value: int, limit: int) -> None:
        super().__init__(f"{setting} = {value} (drillbook allows at most {limit})")
        self.setting, self.value, self.limit = setting, value, limit


def standby_settings(fields: Mapping[str, str]) -> dict[str, str]:
    """The settings to raise above PostgreSQL's defaults so recovery of this cluster can run.

    Only settings the cluster needs above the default are returned; a missing or unreadable
    field returns nothing for it (the server then says what it lacks). Raises
    :class:`TooLarge` for a value beyond drillbook's bound.
    """
    raised: dict[str, str] = {}
    for label, (setting, default, limit) in STANDBY_SETTINGS.items():
        value = fields.get(label, "")
        if not value.isdigit() or len(value) > 12:
            continue
        number = int(value)
        if number > limit:
            raise TooLarge(setting, number, limit)
        if number > default:
            raised[setting] = str(number)
    return raised
