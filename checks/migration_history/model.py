"""A migration history as the tools record it, and the migrations on disk it is compared with."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from ..errors import DrillbookError

_VERSION_PART = re.compile(r"\d+")


def version_key(text: str) -> tuple[int, ...]:
    """A version as the tools compare them: numeric parts, trailing zeros insignificant.

    ``"0003"`` → ``(3,)``; Flyway's ``"1.1"`` and ``"1_1"`` → ``(1, 1)``; ``"1.0"`` equals ``"1"``.
    Raises ValueError on text without digits.
    """
    parts = [int(p) for p in _VERSION_PART.findall(text)]
    if not parts:
        raise ValueError(f"version {text!r} has no digits")
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def show_version(key: tuple[int, ...]) -> str:
    """``(1, 1)`` → ``"1.1"``."""
    return ".".join(str(p) for p in key)


class HistoryKind(enum.StrEnum):
    """Which tool wrote a history table (each has a module in :mod:`.tables`)."""

    FLYWAY = "flyway"
    GOLANG_MIGRATE = "golang-migrate"
    DBMATE = "dbmate"
    DRILLBOOK = "drillbook"
    GOOSE = "goose"
    PRISMA = "prisma"
    SQITCH = "sqitch"
    LIQUIBASE = "liquibase"
    ATLAS = "atlas"
    SQLX = "sqlx"
    DIESEL = "diesel"
    CONFIGURED = "configured"


class HistoryUnreadable(DrillbookError):
    default_hint = (
        "name the history table (e.g. `flyway_schema_history`, `schema_migrations`) "
        "and check the subject's user may read it"
    )


@dataclass(frozen=True)
class AppliedMigration:
    """One row of the history as the tool recorded it."""

    version: str
    description: str = ""
    checksum: str | None = None
    success: bool = True
    # How the tool names the step when not by version (a sqitch change, Liquibase "id:author").
    history_id: str | None = None


@dataclass(frozen=True)
class History:
    """The applied migrations read from a subject, and where they came from."""

    kind: HistoryKind
    table: str
    applied: tuple[AppliedMigration, ...]
    # golang-migrate records only the current version: everything up to it counts as applied.
    current_only: bool = False


@dataclass(frozen=True)
class LocalMigration:
    """A migration on disk, as history validation needs it."""

    version: str
    description: str
    file: str
    # The bytes the tool's checksum covers (the up file, or a Liquibase changeset's text).
    content: bytes
    history_id: str | None = None

    @property
    def key(self) -> tuple[int, ...]:
        return version_key(self.version)

    def checksum(self, kind: HistoryKind) -> str | None:
        """The checksum the given tool would have recorded, or None when it records none."""
        from .tables import checksum_for

        return checksum_for(kind, self)
