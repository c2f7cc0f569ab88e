"""Atlas's history: ``atlas_schema_revisions``.

The table (ariga/atlas ``cmd/atlas/internal/migrate/ent/schema/revision.go``): ``version``
(primary key), ``description``, ``type`` (bit flags: 1 baseline, 2 executed, 4 resolved by
``atlas migrate set``), ``applied`` and ``total`` (statements run / in the file),
``executed_at``, ``execution_time``, ``error``, ``error_stmt``, ``hash``, ``partial_hashes``,
``operator_version``. By default Atlas keeps it in a schema of the same name
(``atlas_schema_revisions.atlas_schema_revisions``); with a schema in the URL, in that schema.

A row with an ``error``, or with fewer statements ``applied`` than its ``total``, is a
failed (partial) migration. ``hash`` is what ``Executor.ExecuteFile`` takes from the
directory's checksum (``HashFile.SumByName``): the file's *cumulative* atlas.sum hash,
without ``h1:``. A file's own bytes cannot give it, so the atlas layout hands it over in
:attr:`Migration.hashed` as ``b"h1:<hash>"`` (:mod:`drills.migrations.layouts.atlas`).
Baseline and resolved rows record no hash of a run file: compared by version only.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ..model import AppliedMigration, History, HistoryKind, LocalMigration
from .common import base_name, table_sql

KIND = HistoryKind.ATLAS
_NAME = "atlas_schema_revisions"
# Atlas's default: a schema of its own (named in the URL's search_path otherwise, then found by
# naming the table); recognised qualified or not.
TABLE = f"{_NAME}.{_NAME}"
_COLUMNS = {"version", "description", "type", "applied", "total", "error", "hash"}
_EXECUTED = 2
_PREFIX = b"h1:"
_HASH_LEN = 44   # base64 of a SHA-256 digest


def recognises(name: str, columns: set[str]) -> bool:
    """Atlas's table name and its revision columns."""
    return base_name(name) == _NAME and columns >= _COLUMNS


def read(conn: psycopg.Connection[Any], name: str, columns: set[str]) -> History:
    """Every revision by version; partial or errored ones are failed."""
    rows = conn.execute(sql.SQL(
        "SELECT version, description, type, applied, total, error, hash FROM {} ORDER BY version"
    ).format(table_sql(name))).fetchall()
    applied = []
    for version, description, kind, done, total, error, recorded in rows:
        failed = bool(error) or (done is not None and total is not None and done < total)
        executed = kind is not None and int(kind) & _EXECUTED
        applied.append(AppliedMigration(
            str(version), str(description or ""),
            str(recorded) if executed and recorded else None, success=not failed))
    return History(KIND, name, tuple(applied))


def checksum(local: LocalMigration) -> str | None:
    """The cumulative atlas.sum hash Atlas records, when the atlas layout computed it."""
    content = local.content
    if content.startswith(_PREFIX) and len(content) == len(_PREFIX) + _HASH_LEN:
        return content[len(_PREFIX):].decode("ascii")
    return None   # not from an atlas folder: one file's bytes cannot give a cumulative hash
