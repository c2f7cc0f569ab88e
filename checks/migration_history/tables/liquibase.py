"""Liquibase's ``databasechangelog``: one row per changeset run, ``md5sum`` in the ``9:``/``8:`` form.

A row is identified by ``id`` and ``author`` (``history_id = "id:author"``; the recorded
``filename`` depends on how Liquibase was invoked, so it is not compared). ``exectype``
``EXECUTED``, ``MARK_RAN`` and ``RERAN`` (a ``runOnChange`` changeset run again, its
``md5sum`` updated) all mean applied; Liquibase writes no row for a failed changeset.

The checksum is computed as liquibase-core computes a formatted SQL changeset's
(``AbstractSQLChange.generateCheckSum`` and ``ChangeSet.generateCheckSum``):

* ``9:`` (Liquibase 4.24 and later): MD5 of the SQL's UTF-8 bytes with every space, tab,
  CR and LF removed gives the change's checksum ``9:<hex>``; the changeset's is the MD5 of
  that text followed by ``:``.
* ``8:`` (Liquibase 4.23 and older): the same two steps, but the change's MD5 covers
  ``<endDelimiter>:<splitStatements>:<stripComments>:`` (Java's ``null``/``true``/``false``)
  followed by the SQL with each run of white space made one space, leading and trailing
  white space dropped (``NormalizingStreamV8``).

Both were checked against the ``md5sum`` values Liquibase 4.28.0 and 4.4.0 wrote for the
changesets in ``tests/unit/test_layout_liquibase.py``. An ``md5sum`` of another version
(``1:`` … ``7:``) is upgraded by Liquibase without comparison, and so is not compared here.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from typing import Any

import psycopg
from psycopg import sql

from ..model import AppliedMigration, History, HistoryKind, HistoryUnreadable, LocalMigration
from .common import table_sql

KIND = HistoryKind.LIQUIBASE
TABLE = "databasechangelog"
_COLUMNS = {"id", "author", "filename", "md5sum", "orderexecuted", "exectype"}
_APPLIED = {"EXECUTED", "MARK_RAN", "RERAN"}


def recognises(name: str, columns: set[str]) -> bool:
    """``databasechangelog`` (any schema) with Liquibase's identifying columns."""
    return name.split(".")[-1].lower() == TABLE and {c.lower() for c in columns} >= _COLUMNS


def read(conn: psycopg.Connection[Any], name: str, columns: set[str]) -> History:
    """The changesets Liquibase recorded, in the order it ran them (read-only)."""
    table = table_sql(name)
    rows = conn.execute(sql.SQL(
        "SELECT id, author, md5sum, orderexecuted, exectype FROM {} ORDER BY orderexecuted, dateexecuted"
        if "dateexecuted" in columns else
        "SELECT id, author, md5sum, orderexecuted, exectype FROM {} ORDER BY orderexecuted").format(table)
    ).fetchall()
    applied = []
    for change_id, author, md5sum, order, exectype in rows:
        if str(exectype).upper() not in _APPLIED:
            raise HistoryUnreadable(f"{name}: changeset {change_id} by {author} has exectype "
                                    f"{exectype!r}, which Liquibase does not write", table=name,
                                    hint="expected EXECUTED, MARK_RAN or RERAN")
        applied.append(AppliedMigration(str(order), f"{change_id} by {author}",
                                        None if md5sum is None else str(md5sum),
                                        history_id=f"{change_id}:{author}"))
    return History(KIND, name, tuple(applied))


def changeset_checksum(sql_text: str, *, version: int = 9, end_delimiter: str | None = None,
                       split_statements: bool = True, strip_comments: bool = True) -> str:
    """The ``md5sum`` Liquibase records for a formatted SQL changeset of this SQL."""
    data = sql_text.encode("utf-8")
    if version == 9:
        change = hashlib.md5(re.sub(rb"[ \t\r\n]", b"", data), usedforsecurity=False).hexdigest()
    elif version == 8:
        header = ":".join(_java(v) for v in (end_delimiter, split_statements, strip_comments)) + ":"
        body = re.sub(rb"[ \t\r\n]+", b" ", data).strip(b" ")
        change = hashlib.md5(header.encode("utf-8") + body, usedforsecurity=False).hexdigest()
    else:
        raise ValueError(f"checksum version {version} is not computed (8 and 9 are)")
    outer = unicodedata.normalize("NFC", f"{version}:{change}:").replace("\ufffd", "")
    return f"{version}:" + hashlib.md5(outer.encode("utf-8"), usedforsecurity=False).hexdigest()


def _java(value: str | bool | None) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _changeset(local: LocalMigration) -> dict[str, Any]:
    """The layout's ``hashed`` document; plain bytes are taken as the SQL with default attributes."""
    try:
        found = json.loads(local.content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        found = None
    if isinstance(found, dict) and isinstance(found.get("sql"), str):
        return found
    return {"sql": local.content.decode("utf-8", errors="replace").strip()}


def checksum(local: LocalMigration) -> str | None:
    """The ``9:`` checksum Liquibase 4.24+ records for this changeset."""
    return changeset_checksum(_changeset(local)["sql"])


def matches(local: LocalMigration, recorded: str | None) -> bool:
    """Whether Liquibase would accept a recorded ``md5sum`` for this changeset as it is now.

    True for the checksum of the same version (``8:`` or ``9:``), a ``--validCheckSum`` value
    or ``ANY``, a ``runOnChange``/``runAlways`` changeset (Liquibase runs it again instead),
    a cleared (NULL) checksum and versions before 8 (Liquibase upgrades those unchecked).
    """
    if recorded is None:
        return True
    changeset = _changeset(local)
    valid = {str(v).lower() for v in changeset.get("validCheckSums", [])}
    if changeset.get("runOnChange") or "any" in valid or "1:any" in valid or recorded.lower() in valid:
        return True
    version = recorded.split(":", 1)[0]
    if version not in ("8", "9"):
        return True
    return recorded.lower() == changeset_checksum(
        changeset["sql"], version=int(version), end_delimiter=changeset.get("endDelimiter"),
        split_statements=bool(changeset.get("splitStatements", True)),
        strip_comments=bool(changeset.get("stripComments", True))).lower()
