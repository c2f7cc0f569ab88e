"""Run ``pg_waldump`` on archived WAL to find commit times (design study A4: ~50 ms a segment).

A WAL file from an archive is untrusted input to a C parser: pg_waldump runs without a shell,
as the server user when drillbook runs as root, with an environment of its own (``TZ=UTC``: its
frontend prints commit times in the local zone), a timeout, one segment at a time (``ENDSEG`` =
``STARTSEG``), only the Transaction resource manager's records, and an output read in bounded
chunks (a huge line or too much output stops it). It reads a copy: each segment is fetched by the
archive's source into a private scratch directory first (the server user needs no access to the
archive, and a local archive's files are never read in place). The parsing is pure: checks/pitr.py.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from checks.errors import UnusableAnswer
from checks.pitr import MAX_LINE, SEGMENT, commit_time
from checks.redact import redact

from . import pgtools
from .processes import hand_to_server_user, server_user_kwargs

TIMEOUT_S = 30.0
# -r Transaction prints one line per commit/abort: a 16 MB segment holds at most a few hundred
# thousand of them (~150 bytes each); anything beyond this is not pg_waldump reading one segment.
MAX_OUTPUT = 128 * 1024 * 1024
# How far back from a segment without a commit the search goes (each costs one pg_waldump).
MAX_SEGMENTS_BACK = 16


@dataclass(frozen=True)
class CommitFound:
    """The newest commit at or before a segment, and which segment held it."""

    time: datetime
    segment: str
    segments_read: int


def last_commit_in(wal_dir: Path, segment: str, *, bindir: Path | None = None,
                   timeout_s: float = TIMEOUT_S, where: str | None = None) -> datetime | None:
    """The newest commit time recorded in one segment in ``wal_dir``, or None when it holds no commit.

    ``where`` names the archive in messages (default ``wal_dir``).
    """
    if not SEGMENT.fullmatch(segment):
        raise ValueError(f"not a WAL segment name: {segment!r}")
    binary = (bindir or pgtools.bindir()) / "pg_waldump"
    where = where or str(wal_dir)
    argv = [str(binary), "--path", str(wal_dir), "--rmgr", "Transaction", segment, segment]
    env = {"TZ": "UTC", "LC_ALL": "C", "PATH": "/usr/bin:/bin"}
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed in finally; a file, not a pipe: a full
    # stderr pipe would stall pg_waldump while drillbook reads its stdout
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL,
                            env=env, cwd="/", **server_user_kwargs())
    newest: datetime | None = None
    total = 0
    # A watchdog, not a loop check: a pg_waldump that prints nothing would block readline forever.
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        proc.kill()

    watchdog = threading.Timer(timeout_s, stop)
    watchdog.start()
    assert proc.stdout is not None
    try:
        while line := proc.stdout.readline(MAX_LINE + 1):
            total += len(line)
            if total > MAX_OUTPUT or (len(line) > MAX_LINE and not line.endswith(b"\n")):
                raise UnusableAnswer(f"pg_waldump on {segment} in {where} printed more than any WAL "
                                     "segment holds: stopped", segment=segment,
                                     hint="inspect that file: it is no WAL segment pg_waldump reads sanely")
            moment = commit_time(line.decode("utf-8", "replace"))
            if moment is not None and (newest is None or moment > newest):
                newest = moment
        # pg_waldump exits 1 at a segment's end when the last record continues into the next one
        # ("could not find file"/"invalid record length"): what it printed before is still true.
        code = proc.wait()
        errors.seek(0)
        stderr = errors.read(MAX_LINE).decode("utf-8", "replace")
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        errors.close()
    if timed_out.is_set():
        raise UnusableAnswer(f"pg_waldump on {segment} in {where} ran past {timeout_s:.0f} s: killed",
                             segment=segment, hint="is the file a WAL segment?")
    if code != 0 and newest is None:
        # Not "no commit here": a file pg_waldump cannot read (short, not WAL, not readable by the
        # server user). Commits printed before a failure are kept: the newest can only be under-read,
        # which shortens a sampling window and widens a gap's range: never the reverse.
        raise UnusableAnswer(f"pg_waldump cannot read {segment} in {where}: "
                             f"{redact(stderr.strip())[:300] or f'exit {code}'}", segment=segment,
                             hint="is the archived file a WAL segment of this cluster?")
    return newest


def newest_commit_at_or_before(fetch: Callable[[str, Path], None], where: str, segment: str,
                               present: set[str], *, segment_bytes: int, stop_at: str | None = None,
                               bindir: Path | None = None, skip_missing: bool = False,
                               max_back: int = MAX_SEGMENTS_BACK) -> CommitFound | None:
    """Walk back from ``segment`` through archived segments until one holds a commit (bounded).

    Each segment is copied by ``fetch(name, directory)`` into a private scratch directory and read
    there (``where`` names the archive in messages). Stops below ``stop_at``, after ``max_back``
    segments read, and at a segment missing from ``present`` — unless ``skip_missing`` (the
    archive's newest commit may lie before a gap).
    """
    from checks.pitr import segment_name, segment_number

    number = segment_number(segment, segment_bytes)
    floor = segment_number(stop_at, segment_bytes) if stop_at else 0
    oldest = min((segment_number(s, segment_bytes) for s in present if s[:8] == segment[:8]), default=0)
    read = 0
    scratch = Path(tempfile.mkdtemp(prefix="drillbook-waldump-"))
    try:
        hand_to_server_user(scratch)  # pg_waldump runs as the server user
        while read < max_back and number >= max(floor, oldest):
            name = segment_name(segment[:8], number, segment_bytes)
            number -= 1
            if name not in present:
                if skip_missing:
                    continue
                return None
            read += 1
            fetch(name, scratch)
            (scratch / name).chmod(0o644)  # whatever drillbook's umask: the server user reads it
            try:
                moment = last_commit_in(scratch, name, bindir=bindir, where=where)
            finally:
                (scratch / name).unlink(missing_ok=True)
            if moment is not None:
                return CommitFound(time=moment, segment=name, segments_read=read)
        return None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
