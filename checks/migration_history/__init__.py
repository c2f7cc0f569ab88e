"""A subject's migration history (read-only) against the migrations on disk.

- :mod:`.model` — versions, applied rows, local migrations;
- :mod:`.tables` — one module per tool's history table (Flyway, golang-migrate/dbmate, drillbook,
  goose, Prisma, sqitch, Liquibase, Atlas, sqlx, Diesel) with the checksum each records;
- :mod:`.compare` — pending, out of order, missing, edited, failed.

Errors::

    DrillbookError
    └── HistoryUnreadable    no known history table, or it cannot be read
"""

from __future__ import annotations

from .compare import HistoryReport, checksums_of, compare_history, validate_history
from .model import (
    AppliedMigration,
    History,
    HistoryKind,
    HistoryUnreadable,
    LocalMigration,
    show_version,
    version_key,
)
from .tables import checksum_for, known_tables, read_history
from .tables.drillbook import sha256_checksum
from .tables.flyway import flyway_checksum

KNOWN_TABLES = known_tables()

__all__ = [
    "KNOWN_TABLES", "AppliedMigration", "History", "HistoryKind", "HistoryReport", "HistoryUnreadable",
    "LocalMigration", "checksum_for", "checksums_of", "compare_history", "flyway_checksum", "known_tables",
    "read_history", "sha256_checksum", "show_version", "validate_history", "version_key",
]
