"""A source cluster whose WAL is archived, for the physical-backup tests (shared by their modules)."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from checks.errors import EnvironmentError_
from drills import pgtools
from drills.processes import PostgresServer, hand_to_server_user, initdb


def server_bindir() -> Path:
    """The PostgreSQL server binaries; the test skips, naming why, when they are missing."""
    try:
        return pgtools.bindir()
    except EnvironmentError_ as exc:
        pytest.skip(reason=f"PostgreSQL server binaries are not installed: {exc}")


def temp_root(prefix: str) -> Path:
    """A temporary root the server user can traverse (it owns what is created inside)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o711)
    return root


def wal_dir(root: Path) -> Path:
    """``root/wal``: a WAL archive directory the server user writes and others read."""
    wal = root / "wal"
    wal.mkdir()
    hand_to_server_user(wal, mode=0o755)
    return wal


def readable_copy(wal: Path, root: Path) -> Path:
    """A copy of an archive as ``root/wal`` that the server user owns (pg_waldump runs as that user)."""
    shutil.copytree(wal, root / "wal")
    hand_to_server_user(root / "wal", mode=0o755)
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        for path in (root / "wal").iterdir():
            os.chown(path, entry.pw_uid, entry.pw_gid)
    return root / "wal"


def markers_dir(root: Path) -> Path:
    """``root/markers``: where a hostile setting's command would leave a file (anyone may write)."""
    markers = root / "markers"
    markers.mkdir()
    markers.chmod(0o777)
    return markers


def set_hostile_settings(conn: psycopg.Connection[Any], markers: Path, *more: tuple[str, str]) -> None:
    """Hostile lines in ``postgresql.auto.conf`` (no reload: the running source keeps its own settings):
    commands that would touch a marker, a library that does not exist, and ``more``."""
    for setting, value in (("archive_command", f"touch {markers}/archived"),
                           ("recovery_end_command", f"touch {markers}/recovery_end"),
                           ("shared_preload_libraries", "nonexistent"), *more):
        conn.execute(f"ALTER SYSTEM SET {setting} = '{value}'")


def copy_into(wal: Path) -> str:
    """An ``archive_command`` copying each segment into the directory ``wal`` (never over one)."""
    return f"test ! -f {wal}/%f && cp %p {wal}/%f"


def archiving_source(root: Path, name: str, *, bindir: Path, archive_command: str,
                     **settings: str) -> PostgresServer:
    """An initdb'd cluster under ``root/src`` archiving with ``archive_command`` (not started)."""
    initdb(root / "src", bindir=bindir, log_path=root / "initdb.log")
    return PostgresServer(name, root / "src", bindir=bindir, settings={
        "wal_level": "replica", "archive_mode": "on", "archive_timeout": "0",
        "archive_command": archive_command, **settings})


def query(dsn: str, sql: str) -> tuple[object, ...]:
    """One row of ``sql`` on ``dsn`` (a recovered server), which must return one."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return tuple(row)


def batch_then_moment(conn: psycopg.Connection[Any], batch: int) -> Any:
    """Commit 50 rows of ``batch`` into ``ticks`` in a segment of their own, then a moment 0.3 s after
    them and 0.3 s before anything later (a recovery target between this batch and the next)."""
    conn.execute(f"INSERT INTO ticks (batch) SELECT {int(batch)} FROM generate_series(1, 50)")
    conn.execute("SELECT pg_switch_wal()")
    time.sleep(0.3)
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    time.sleep(0.3)
    return row[0]


def wait_archived(conn: psycopg.Connection[Any], *, timeout_s: float = 30.0) -> None:
    """Until every finished segment is archived (none left `.ready`); fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = conn.execute("SELECT count(*) FROM pg_catalog.pg_ls_archive_statusdir() "
                           "WHERE name LIKE '%.ready'").fetchone()
        if row is not None and row[0] == 0:
            return
        time.sleep(0.1)
    failed = conn.execute("SELECT last_failed_wal, last_archived_wal FROM pg_stat_archiver").fetchone()
    pytest.fail(f"the source's WAL was not archived within {timeout_s:.0f} s (last failed, last archived: "
                f"{failed})")
