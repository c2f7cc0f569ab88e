"""drillbook's own runner (and the sandbox product): ``drillbook_schema_version`` — id, name, SHA-256."""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg

from ..model import AppliedMigration, History, HistoryKind, LocalMigration
from .common import base_name, select

KIND = HistoryKind.DRILLBOOK
TABLE = "drillbook_schema_version"


def sha256_checksum(content: bytes) -> str:
    """drillbook's own runner records the SHA-256 of the file's bytes."""
    return hashlib.sha256(content).hexdigest()


def recognises(name: str, columns: set[str]) -> bool:
    return base_name(name) == TABLE and {"id", "sha256"} <= columns


def read(conn: psycopg.Connection[Any], name: str, columns: set[str]) -> History:
    rows = select(conn, name, ["id", "name", "sha256"], order="id")
    return History(KIND, name, tuple(AppliedMigration(str(r[0]), str(r[1]), str(r[2])) for r in rows))


def checksum(local: LocalMigration) -> str | None:
    return sha256_checksum(local.content)
