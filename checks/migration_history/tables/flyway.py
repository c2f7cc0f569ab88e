"""Flyway's ``flyway_schema_history``: one row per migration, CRC32 checksum, success flag."""

from __future__ import annotations

import re
import zlib
from typing import Any

import psycopg
from psycopg import sql

from ..model import AppliedMigration, History, HistoryKind, LocalMigration
from .common import base_name, table_sql

KIND = HistoryKind.FLYWAY
TABLE = "flyway_schema_history"


def flyway_checksum(content: bytes) -> int:
    """Flyway's checksum: CRC32 over the file's lines without line breaks (BOM dropped), signed."""
    text = content.decode("utf-8", errors="replace")
    text = text.removeprefix("\ufeff")
    crc = 0
    # Java's BufferedReader.readLine splits on \n, \r and \r\n alike.
    # A trailing break yields an empty last piece, which (like readLine) adds nothing.
    for line in re.split(r"\r\n|\r|\n", text):
        crc = zlib.crc32(line.encode("utf-8"), crc)
    return crc - (1 << 32) if crc >= (1 << 31) else crc


def recognises(name: str, columns: set[str]) -> bool:
    return base_name(name) == TABLE and {"version", "checksum", "success"} <= columns


def read(conn: psycopg.Connection[Any], name: str, columns: set[str]) -> History:
    rows = conn.execute(sql.SQL(
        "SELECT version, description, checksum, success, type FROM {} ORDER BY installed_rank"
    ).format(table_sql(name))).fetchall()
    applied = []
    for version, description, checksum, success, kind in rows:
        # Baseline and schema-creation rows mark a state, not a file to compare with.
        if version is None or kind in ("SCHEMA", "BASELINE", "DELETE", "UNDO_SQL"):
            continue
        applied.append(AppliedMigration(str(version), str(description or ""),
                                        None if checksum is None else str(checksum), bool(success)))
    return History(KIND, name, tuple(applied))


def checksum(local: LocalMigration) -> str | None:
    return str(flyway_checksum(local.content))
