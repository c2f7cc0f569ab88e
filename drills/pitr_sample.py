"""What point-in-time steps read besides a restore: a WAL archive's listing, its recoverable window,
the range a gap makes unrecoverable, and the recovered point of a scratch server.

The archive is any physical source's (drills/physical/source.py ``archive_listing``): a directory
(:func:`list_wal`), an S3 prefix, a pgBackRest repo, a barman ``wals/`` prefix. Everything in it is
untrusted: names are filtered by pattern, history files read bounded, WAL only through pg_waldump
(drills/waldump.py) on a copy the source fetched into scratch.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from checks.errors import StoreUnreachable, UnusableAnswer
from checks.pitr import (
    SEGMENT,
    BackupHistory,
    first_missing,
    next_backup_end,
    parse_backup_history,
    segment_name,
    segment_number,
    unrecoverable,
)

from .waldump import newest_commit_at_or_before

_HISTORY_BYTES = 65536  # a backup history file is a few lines: never read a huge one whole


# Copies one archived segment (by name) into a scratch directory, as the file pg_waldump reads.
Fetch = Callable[[str, Path], None]


@dataclass(frozen=True)
class WalListing:
    """A WAL archive: its segments (sorted), the backups it knows of, segment size, how to fetch one."""

    where: str  # for messages: a directory, URL or stanza (never a secret)
    segments: list[str]
    backups: list[BackupHistory]
    segment_bytes: int
    fetch: Fetch = field(compare=False, repr=False)

    @property
    def present(self) -> set[str]:
        return set(self.segments)

    def recoverable_backups(self) -> list[BackupHistory]:
        """Backups whose start segment is still archived (a pruned archive cannot recover the others)."""
        return sorted((b for b in self.backups if b.start_segment in self.present), key=lambda b: b.stop_time)


def list_wal(wal_dir: Path) -> WalListing:
    """Read the directory's listing and its ``.backup`` history files (no WAL content)."""
    try:
        entries = sorted(p for p in wal_dir.iterdir() if p.is_file() and not p.is_symlink())
    except OSError as exc:
        raise StoreUnreachable(f"cannot list the WAL archive {wal_dir}: {exc.strerror or exc}",
                               path=str(wal_dir)) from exc
    segments = [p.name for p in entries if SEGMENT.fullmatch(p.name)]
    backups = []
    for path in entries:
        if path.name.endswith(".backup"):
            with path.open("rb") as file:
                found = parse_backup_history(path.name, file.read(_HISTORY_BYTES).decode("utf-8", "replace"))
            if found is not None:
                backups.append(found)
    size = (wal_dir / segments[-1]).stat().st_size if segments else 16 * 1024 * 1024
    check_segment_size(size, segments[-1] if segments else "", str(wal_dir))

    def fetch(name: str, dest: Path) -> None:
        shutil.copyfile(wal_dir / name, dest / name)

    return WalListing(where=str(wal_dir), segments=segments, backups=backups, segment_bytes=size, fetch=fetch)


def check_segment_size(size: int, segment: str, where: str) -> None:
    """PostgreSQL's segment sizes are powers of two from 1 MB to 1 GB: anything else is no WAL."""
    if size < (1 << 20) or size > (1 << 30) or size & (size - 1):
        raise UnusableAnswer(f"the segment {segment} in {where} is {size} bytes: not a WAL segment size",
                             path=where, segment=segment,
                             hint="a WAL segment is a power of two from 1 MB to 1 GB: inspect that file")


@dataclass(frozen=True)
class Gap:
    """The first missing segment after the oldest recoverable backup, and what it costs."""

    first: str
    last: str
    missing: str | None
    count: int
    last_commit_before: datetime | None
    next_backup_end: datetime | None

    @property
    def range_text(self) -> str:
        return unrecoverable(self.last_commit_before, self.next_backup_end)


def find_gap(listing: WalListing, *, since: str | None = None, bindir: Path | None = None) -> Gap:
    """Continuity from ``since`` (default: the oldest recoverable backup's start) to the newest segment."""
    backups = listing.recoverable_backups()
    if since is None:
        if not backups:
            raise UnusableAnswer(f"the WAL archive {listing.where} names no base backup whose start segment "
                                 "it still holds (no `.backup` history file)", path=listing.where,
                                 hint="archive_command must copy every file PostgreSQL archives, "
                                 "`.backup` files included")
        since = min(backups, key=lambda b: b.start_segment).start_segment
    same = [s for s in listing.segments if s[:8] == since[:8] and s >= since]
    if not same:
        raise UnusableAnswer(f"the WAL archive {listing.where} holds no segment from {since} on",
                             segment=since, path=listing.where,
                             hint="the archive must keep every segment from the oldest base backup's "
                             "start on")
    missing = first_missing(same, since, same[-1], listing.segment_bytes)
    if missing is None:
        return Gap(since, same[-1], None, len(same), None, None)
    return gap_at(listing, missing, first=since, last=same[-1], count=len(same), bindir=bindir)


def gap_at(listing: WalListing, missing: str, *, first: str | None = None, last: str | None = None,
           count: int = 0, bindir: Path | None = None) -> Gap:
    """The range a missing segment makes unrecoverable: last commit before it → next backup's end."""
    size = listing.segment_bytes
    before = segment_name(missing[:8], segment_number(missing, size) - 1, size)
    found = newest_commit_at_or_before(listing.fetch, listing.where, before, listing.present,
                                       segment_bytes=listing.segment_bytes, bindir=bindir)
    return Gap(first or missing, last or missing, missing, count, found.time if found else None,
               next_backup_end(listing.recoverable_backups(), missing, listing.segment_bytes))


@dataclass(frozen=True)
class Window:
    """The moments a sampling step may pick, and how each bound was found."""

    low: datetime
    high: datetime
    low_from: str
    high_from: str


def recoverable_window(listing: WalListing, *, now: datetime, window: timedelta,
                       bindir: Path | None = None) -> Window:
    """[max(now − window, the oldest recoverable backup's end), the archive's newest commit].

    When a segment is missing after that commit (the archive's tail is lost, so later commits
    cannot be read), the window runs to ``now``: the moments after the gap are unrecoverable and
    the sample must be able to land on them.
    """
    backups = listing.recoverable_backups()
    if not backups:
        raise UnusableAnswer(f"the WAL archive {listing.where} names no base backup whose start segment it "
                             "still holds: no moment is recoverable", path=listing.where,
                             hint="archive_command must copy every file PostgreSQL archives, `.backup` files "
                             "included")
    oldest = backups[0]
    newest = newest_commit_at_or_before(listing.fetch, listing.where, listing.segments[-1], listing.present,
                                        segment_bytes=listing.segment_bytes, bindir=bindir,
                                        stop_at=oldest.start_segment, skip_missing=True)
    if newest is None:
        raise UnusableAnswer(f"no commit in the newest segments of {listing.where} (from "
                             f"{listing.segments[-1]} back): the archive's end cannot be told",
                             path=listing.where, hint="a sampling window ends at the archive's newest "
                             "commit: commit something on the subject, or check that its WAL is archived")
    since = now - window
    low, low_from = ((since, f"now − {window}") if since >= oldest.ended_by
                     else (oldest.ended_by, f"end of the oldest backup ({oldest.name}, STOP TIME + 1 s: "
                           "it has whole seconds)"))
    tail = [s for s in listing.segments if s[:8] == newest.segment[:8] and s >= newest.segment]
    lost = first_missing(tail, newest.segment, tail[-1], listing.segment_bytes) if tail else None
    if lost is not None and now > newest.time:
        return Window(low=low, high=now, low_from=low_from,
                      high_from=f"now: segment {lost} is missing after the newest readable commit (segment "
                      f"{newest.segment}), so what followed it cannot be read")
    return Window(low=low, high=newest.time, low_from=low_from,
                  high_from=f"newest commit in the archive (segment {newest.segment}, pg_waldump)")


def measure_point(dsn: str, column: tuple[str, str, str] | None) -> tuple[datetime | None, datetime | None]:
    """``pg_last_xact_replay_timestamp()`` and the newest value of ``column`` on a recovered server.

    The column is read only from a base table (never a view: B4) of a built-in date/time type, its
    names quoted by psycopg; the session's search_path is pg_catalog only.
    """
    with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
        conn.execute("SET search_path = pg_catalog, pg_temp")
        row = conn.execute("SELECT pg_catalog.pg_last_xact_replay_timestamp()").fetchone()
        replayed = row[0] if row else None
        if column is None:
            return replayed, None
        schema, table, name = column
        kind = conn.execute(
            "SELECT c.relkind, t.typname FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_catalog.pg_attribute a "
            "  ON a.attrelid = c.oid AND a.attname = %s AND NOT a.attisdropped "
            "LEFT JOIN pg_catalog.pg_type t "
            "  ON t.oid = a.atttypid AND t.typnamespace = 'pg_catalog'::regnamespace "
            "WHERE n.nspname = %s AND c.relname = %s", (name, schema, table)).fetchone()
        where = ".".join(column)
        if kind is None or kind[0] not in ("r", "p"):
            raise UnusableAnswer(f"pitr_column {where}: no such table in the recovered database"
                                 + (" (it is not a base table)" if kind else ""), column=where,
                                 hint="name schema.table.column of a base table (never a view) in the "
                                 "store's `pitr_column`")
        if kind[1] not in ("timestamptz", "timestamp"):
            raise UnusableAnswer(f"pitr_column {where}: no such column of a built-in date/time type",
                                 column=where, hint="name a timestamptz column in the store's `pitr_column`")
        query = sql.SQL("SELECT max({}) FROM {}.{}").format(sql.Identifier(name), sql.Identifier(schema),
                                                           sql.Identifier(table))
        newest = conn.execute(query).fetchone()
    value = newest[0] if newest else None
    if value is not None and not isinstance(value, datetime):
        raise UnusableAnswer(f"pitr_column {where}: max() is {value!r}, not a time", column=where,
                             hint="name a timestamptz column in the store's `pitr_column`")
    if value is not None and value.tzinfo is None:  # timestamp without time zone: read as UTC (docs)
        value = value.replace(tzinfo=UTC)
    return replayed, value
