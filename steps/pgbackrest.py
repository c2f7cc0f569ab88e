"""pgBackRest freshness and verification from the tool's own metadata (issue 16 item 4).

``Then the newest backup is at most {age} old`` (steps/backup.py) reads a pgbackrest store's newest
set's *stop* time through :func:`pgbackrest_freshness`; the sentences here add the per-type ages
and ``pgbackrest verify``. A diff holds everything since the last full, so "the newest diff"
counts a newer full as well; "the newest incr" counts every set (pgBackRest's own types).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from pytest_bdd import parsers, then

from checks.backups import backup_freshness
from checks.errors import DrillbookError
from checks.pgbackrest_info import COUNTS_AS, TYPES, newest_of
from checks.pgbackrest_verify import CHECK_ID, verify_verdict
from checks.verdict import Verdict, record, verdict_from_error
from drills import deadlines
from drills.physical import pgbackrest
from drills.targets import StoreSpec

from .context import PARSE_TYPES, ScenarioState
from .guard import guarded

VERIFY_TIMEOUT_S = deadlines.DEFAULT_RESTORE_TIMEOUT_S


def pgbackrest_freshness(spec: StoreSpec, max_age: timedelta, *, kind: str | None = None,
                         now: datetime | None = None) -> Verdict:
    """The newest set (of ``kind``: full, diff or incr, see COUNTS_AS) ended at most ``max_age`` ago."""
    repo = spec.repo or 1
    info = pgbackrest.read_info(spec)
    newest = newest_of(info, repo, kind)
    what = f"{kind} backup" if kind else "backup"
    if newest is None:
        return Verdict.failed("backup.freshness", f"no {what} set in stanza `{info.name}` repo{repo} of "
                              f"`{spec.name}`", evidence={"stanza": info.name, "repo": repo, "type": kind})
    verdict = backup_freshness(newest.stop, now=now or datetime.now(UTC), max_age=max_age)
    counted = f" (a {kind} counts {', '.join(COUNTS_AS[kind])})" if kind and kind != "full" else ""
    return dataclasses.replace(
        verdict, message=f"pgbackrest set {newest.label} ({newest.type}, ended {newest.stop.isoformat()}): "
        f"{verdict.message.replace('newest backup', f'newest {what}')}{counted}",
        evidence={**verdict.evidence, "stanza": info.name, "repo": repo, "set": newest.label,
                  "type": newest.type, "counted_types": list(COUNTS_AS[kind] if kind else TYPES)})


@then(parsers.parse("the newest {kind:w} backup is at most {max_age:Duration} old", extra_types=PARSE_TYPES))
def newest_typed_backup_age(kind: str, max_age: timedelta, drill_state: ScenarioState) -> None:
    """RPO per backup type, from ``pgbackrest info``: full, diff (full or diff) or incr (any set)."""
    def check() -> Verdict:
        spec = drill_state.store
        if spec is None or spec.kind != "pgbackrest":
            return Verdict.error("backup.freshness", 'per-type ages need a `kind = "pgbackrest"` store: '
                                 '`Given the backups in "NAME"` first')
        if kind not in TYPES:
            return Verdict.error("backup.freshness", f"backup type {kind!r} is not one of {', '.join(TYPES)}")
        return pgbackrest_freshness(spec, max_age, kind=kind)

    guarded("backup.freshness", check)


@then(parsers.parse('the backups in "{store}" pass the tool\'s own verification'))
def tool_verification(store: str, drillbook_env: Any) -> None:
    """``pgbackrest verify``: one verdict naming each invalid set, each bad file and each WAL gap."""
    try:
        spec = drillbook_env.store(store)
    except DrillbookError as exc:
        record(verdict_from_error(CHECK_ID, exc))
        return

    def check() -> Verdict:
        if spec.kind != "pgbackrest":
            return Verdict.error(CHECK_ID, f"store `{store}` is of kind {spec.kind!r}: the tool's own "
                                 'verification exists for `kind = "pgbackrest"` stores')
        pgbackrest.read_info(spec)  # a missing stanza or unreadable repo: named, not "no summary"
        return verify_verdict(pgbackrest.verify(spec, timeout_s=VERIFY_TIMEOUT_S), store=spec.name,
                              repo=spec.repo or 1)

    guarded(CHECK_ID, check)
