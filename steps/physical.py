"""Physical backup steps: a ``kind = "basebackup"`` store restored and recovered (drills/physical/).

The restore sentence is shared with dump stores (steps/backup.py hands a physical store here); the
recovered cluster then answers the same row-count, query and content steps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pytest_bdd import parsers, when

from checks.verdict import Verdict, format_duration
from drills.deadlines import Limit
from drills.physical import PhysicalRestore, is_physical

from .context import ScenarioState
from .guard import guarded


def recover(drill_state: ScenarioState, limit: Limit, *, target: datetime | None = None) -> None:
    """Restore the newest base backup (taken by ``target``), recover it, keep it for later steps."""
    store = drill_state.store
    if store is None or not is_physical(store.kind):
        raise LookupError('name a physical backup store (e.g. `kind = "basebackup"`) first: '
                          '`Given the backups in "NAME"`')

    def run() -> Verdict:
        drill = PhysicalRestore(store, target=target, limit=limit, database=drill_state.database)
        drill_state.drill = drill
        result = drill.run()
        drill_state.restored = result
        drill_state.backup_time = result.backup_time
        to = f"to {target.isoformat()}" if target else "to the end of its WAL archive"
        return Verdict.passed(
            "restore.completed",
            f"{_noun(result.source_format)} {result.backup.key} restored and recovered {to} "
            f"({result.recovery.get('state')}) in {format_duration(timedelta(seconds=result.rto_s))}",
            measured=round(result.rto_s, 3), expected="recovers without error",
            evidence=result.evidence(),
        )

    guarded("restore.completed", run)


def _noun(source_format: str) -> str:
    return "base backup" if source_format == "pg_basebackup" else f"{source_format} backup"


def parse_target(text: str) -> datetime:
    """An ISO 8601 moment; one without an offset is UTC (said in the docs)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"recovery target {text!r} is not an ISO 8601 time "
                         "(e.g. 2026-12-03 17:29:51+00:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@when(parsers.parse('the database is recovered to "{moment}"'))
def recovered_to(moment: str, drillbook_env: Any, drill_state: ScenarioState,
                 request: pytest.FixtureRequest) -> None:
    """Point in time: the newest base backup taken by the target, recovered to it and paused there."""
    from .backup import restore_limit

    try:
        target = parse_target(moment)
    except ValueError as exc:
        message = str(exc)
        guarded("restore.completed", lambda: Verdict.error("restore.completed", message))
        return
    recover(drill_state, restore_limit(request), target=target)
