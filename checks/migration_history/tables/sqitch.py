"""sqitch's registry table ``sqitch.changes``: the changes deployed now, each with its change ID.

sqitch deletes a change's row when it reverts it, so the table alone says what is deployed
(``sqitch.events`` keeps the log of deploys, reverts and failures; it is not needed here).
Rows are matched to the plan by ``change_id`` (``history_id``; the sqitch layout computes the
same ID from the plan), which tells the two deployed instances of a reworked change apart and
one project's changes from another's in a registry shared by several projects.

``script_hash`` is the SHA-1 of the deploy script's bytes, as ``App::Sqitch::Plan::Change``
computes it (``Digest::SHA->new(1)`` over the file read raw); a registry upgraded from
before sqitch 1.0 holds the change ID there until sqitch rehashes it, which is not a
checksum to compare.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
from psycopg import sql

from ..model import AppliedMigration, History, HistoryKind, LocalMigration
from .common import table_sql

KIND = HistoryKind.SQITCH
TABLE = "sqitch.changes"
_COLUMNS = {"change_id", "script_hash", "change", "project", "committed_at"}


def recognises(name: str, columns: set[str]) -> bool:
    """A ``changes`` table (sqitch's registry schema may be renamed) with sqitch's columns."""
    return name.split(".")[-1] == "changes" and columns >= _COLUMNS


def read(conn: psycopg.Connection[Any], name: str, columns: set[str]) -> History:
    """The deployed changes in deploy order (read-only)."""
    table = table_sql(name)
    rows = conn.execute(sql.SQL(
        "SELECT change_id, change, project, script_hash FROM {} ORDER BY committed_at, change_id"
    ).format(table)).fetchall()
    applied = []
    for position, (change_id, change, project, script_hash) in enumerate(rows, 1):
        recorded = None if script_hash is None or script_hash == change_id else str(script_hash)
        applied.append(AppliedMigration(str(position), f"{project}:{change}", recorded,
                                        history_id=str(change_id)))
    return History(KIND, name, tuple(applied))


def checksum(local: LocalMigration) -> str | None:
    """``script_hash``: the SHA-1 of the deploy script's bytes."""
    return hashlib.sha1(local.content, usedforsecurity=False).hexdigest()
